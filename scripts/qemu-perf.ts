// Where the QEMUs' CPU goes inside them, by `perf record -a` (sampled, the
// whole host) around something the bench runs: QEMU's own code (TCG, the
// devices, the main loop), the code TCG generated for the guest, the kernel
// (faults, system calls, the host's page tables) and libraries, per QEMU
// binary; then QEMU's busiest functions. Used by `npm run bench`. Without
// perf (Debian: linux-perf) it says so and measures nothing.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface PerfShare {
  /** The QEMU's command name as the kernel keeps it (15 characters). */
  comm: string;
  /** Percent of all samples on the host. */
  total: number;
  /** Percent of this QEMU's samples: its own code, generated code, the kernel, libraries. */
  qemu: number;
  generated: number;
  kernel: number;
  libraries: number;
  /** The shared object perf names for QEMU's binary (qemu-system-ppc64: the command name is cut at 15 characters). */
  binary?: string;
  /** Its busiest named functions in QEMU's binary: name and percent of this QEMU's samples. */
  top: { name: string; percent: number }[];
}

/** Whether perf can be run here. */
export const havePerf = () => spawnSync('perf', ['--version'], { stdio: 'ignore' }).status === 0;

/** One `perf report` line: percent, then the sort keys. */
const LINE = /^\s*([\d.]+)%\s+(\S+)\s+(.+?)\s*$/;

/** The shares of `perf report --sort comm,dso` for the QEMU commands, from its text. */
export function sharesOf(commDso: string): Omit<PerfShare, 'top'>[] {
  const by = new Map<string, Omit<PerfShare, 'top'>>();
  for (const line of commDso.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = LINE.exec(line);
    if (!m || !m[2]!.startsWith('qemu-system')) continue;
    const [pct, comm, dso] = [Number(m[1]), m[2]!, m[3]!];
    const s = by.get(comm) ?? { comm, total: 0, qemu: 0, generated: 0, kernel: 0, libraries: 0 };
    s.total += pct;
    if (dso.startsWith('qemu-system')) {
      s.qemu += pct;
      s.binary = dso;
    }
    else if (dso.startsWith('[JIT]') || dso.startsWith('perf-')) s.generated += pct;
    else if (dso.startsWith('[kernel') || dso === '[unknown]') s.kernel += pct;
    else s.libraries += pct;
    by.set(comm, s);
  }
  // Within each QEMU: percent of its own samples.
  return [...by.values()].map((s) => ({ ...s, qemu: (100 * s.qemu) / s.total, generated: (100 * s.generated) / s.total, kernel: (100 * s.kernel) / s.total, libraries: (100 * s.libraries) / s.total }));
}

/** The busiest named functions of `perf report --comm C --dso D --sort sym` (percent of all samples), as percent of the QEMU's. */
export function topOf(symText: string, commTotal: number, n = 6): { name: string; percent: number }[] {
  // A function perf lists more than once (one line per mapping of the binary) counts once, summed.
  const by = new Map<string, number>();
  for (const line of symText.split('\n')) {
    const m = /^\s*([\d.]+)%\s+\[[.k]\]\s+(\S+)/.exec(line);
    if (!m || m[2]!.startsWith('0x')) continue;
    by.set(m[2]!, (by.get(m[2]!) ?? 0) + Number(m[1]));
  }
  return [...by].sort((a, b) => b[1] - a[1]).slice(0, n).map(([name, pct]) => ({ name, percent: (100 * pct) / commTotal }));
}

/**
 * Samples the whole host (499 Hz per CPU) while fn runs, then reads the
 * QEMUs' shares. A string when it could not: why.
 */
export async function perfAround(fn: () => Promise<unknown>): Promise<PerfShare[] | string> {
  if (!havePerf()) {
    await fn();
    return 'perf is not installed (Debian: linux-perf): not measured';
  }
  const dir = mkdtempSync(join(tmpdir(), 'klp-perf-'));
  const data = join(dir, 'perf.data');
  try {
    const rec = spawn('perf', ['record', '-a', '-F', '499', '-q', '-o', data], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    rec.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((r) => rec.on('close', (code) => r(code)));
    await new Promise((r) => setTimeout(r, 500));
    try {
      await fn();
    } finally {
      rec.kill('SIGINT');
    }
    const code = await exited;
    if (code !== 0 && code !== null) return `perf record failed (exit ${code}): ${err.trim().split('\n').pop() ?? ''}`;
    const report = (extra: string[]) => spawnSync('perf', ['report', '-i', data, '--stdio', ...extra], { encoding: 'utf8', maxBuffer: 64 << 20 }).stdout ?? '';
    return sharesOf(report(['--sort', 'comm,dso'])).map((s) => ({ ...s, top: s.binary ? topOf(report(['--sort', 'sym', '--comm', s.comm, '--dso', s.binary]), s.total) : [] }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
