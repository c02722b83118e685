// What the host charges for what a new QEMU does first: memory it touches for
// the first time (a restore writes the guest's RAM, and on a host without a
// shared zero page even reading untouched RAM takes memory), and a process
// start. A restore's cost here is mostly these, not emulation; on another
// host the same figures explain why its restores cost what they do.
// Used by `npm run bench` ("What this host charges"); on its own:
//   node dist/scripts/host-costs.js
// Prints figures; asserts nothing.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { resolve } from 'node:path';

export interface HostCost {
  what: string;
  /** The figure, formatted with its unit. */
  figure: string;
  note: string;
}

const PAGE = 4096;
const MIB = 1 << 20;

/** This process's resident memory, bytes (VmRSS). */
function rssBytes(): number {
  const kb = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
  return Number(kb ?? 0) * 1024;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/**
 * Touches size bytes of memory this process never had, one byte per 4 KiB
 * page (writing, or reading): the time it took and how much more memory the
 * process holds after it. A large buffer from allocUnsafeSlow is fresh
 * memory from the kernel, not yet touched.
 */
function touchFresh(size: number, write: boolean): { ms: number; grewBytes: number } {
  const buf = Buffer.allocUnsafeSlow(size);
  const before = rssBytes();
  const t0 = process.hrtime.bigint();
  let sum = 0;
  if (write) for (let i = 0; i < size; i += PAGE) buf[i] = 1;
  else for (let i = 0; i < size; i += PAGE) sum += buf[i]!;
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const grewBytes = rssBytes() - before;
  // Keeps the reads from being optimised away.
  if (sum < 0) process.stdout.write('');
  return { ms, grewBytes };
}

/** touchFresh in a node process of its own: no buffer of an earlier try is freed (and counted) meanwhile. */
function touchInChild(size: number, write: boolean): { ms: number; grewBytes: number } {
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--touch', write ? 'write' : 'read', String(size)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`host-costs: the probe failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as { ms: number; grewBytes: number };
}

/** The host's charges, each a median of a few tries. */
export function hostCosts(sizeMiB = 256, tries = 3): HostCost[] {
  const size = sizeMiB * MIB;
  const pages = size / PAGE;
  const writes = Array.from({ length: tries }, () => touchInChild(size, true));
  const reads = Array.from({ length: tries }, () => touchInChild(size, false));
  const writeMs = median(writes.map((w) => w.ms));
  const readGrew = median(reads.map((r) => r.grewBytes));
  const readMs = median(reads.map((r) => r.ms));
  const starts: number[] = [];
  for (let i = 0; i < 20; i++) {
    const t0 = process.hrtime.bigint();
    spawnSync('/bin/true');
    starts.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return [
    {
      what: `writing ${sizeMiB} MiB of memory the process never had, a byte per 4 KiB page`,
      figure: `${writeMs.toFixed(0)} ms (${((writeMs * 1000) / pages).toFixed(1)} µs per page, ${(writeMs / sizeMiB).toFixed(1)} ms per MiB)`,
      note: 'what a restore pays for each page of guest RAM it writes first (QEMU asks for huge pages there, which cost less per MiB where the host gives them)',
    },
    {
      what: `reading ${sizeMiB} MiB of memory the process never had`,
      figure: `${readMs.toFixed(0)} ms; the process then holds ${(readGrew / MIB).toFixed(0)} MiB more`,
      note:
        readGrew > size / 2
          ? 'reading untouched memory takes memory here (no shared zero page): a restore that checks each zero page of the saved state (loadvm does) takes the whole guest RAM'
          : 'reading untouched memory takes none (the shared zero page): a restore pays only for the pages it writes',
    },
    {
      what: 'starting a process (`/bin/true`, from node: fork, exec, wait)',
      figure: `${median(starts).toFixed(1)} ms`,
      note: 'every QEMU, flock and setpriv the harness starts pays it',
    },
  ];
}

/** The markdown table of hostCosts(). */
export function hostCostTable(rows: readonly HostCost[]): string[] {
  return ['| what | cost | what it means |', '| --- | --- | --- |', ...rows.map((r) => `| ${r.what} | ${r.figure} | ${r.note} |`)];
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--touch');
  if (i >= 0) process.stdout.write(JSON.stringify(touchFresh(Number(process.argv[i + 2]), process.argv[i + 1] === 'write')));
  else for (const line of hostCostTable(hostCosts())) process.stdout.write(line + '\n');
}
