// Which accelerator a run's guests use, decided by a guest that must run.
// A /dev/kvm that opens, and a QEMU that starts with -accel kvm, prove
// nothing (seen: KVM_CREATE_VM works, QEMU starts, the guest never prints a
// line). The probe boots a tiny guest with KVM that has to print on its
// serial console within a deadline. Its verdict is kept in the cache per host
// boot, QEMU binary and version and device (written atomically, made under
// the entry's lock so concurrent runs probe once), so only the first run
// after a host boot pays for it. A KVM boot that stalls later ends KVM for
// the run and on the host alike: the next run does not try again.
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { ArchRecord } from '../core/arch.js';
import { hashOf, writeFileAtomic } from '../core/cache.js';
import { run } from '../proc/exec.js';
import { entryLock, withExclusive } from '../core/lock.js';
import type { Logger } from '../core/log.js';
import { spawnGroup } from '../proc/group.js';
import { KVM_MS } from '../core/timeouts.js';
import { findOnPath } from '../proc/guards.js';

export type Accel = 'kvm' | 'tcg';

/** A decided verdict on KVM for one host boot, QEMU binary and device. */
export interface KvmVerdict {
  usable: boolean;
  /** Why, in words: what the test guest did, or how a later KVM boot failed. */
  reason: string;
  decidedAt: string;
  pid: number;
  /** How long the probe took (absent when a failed boot decided it). */
  probeMs?: number;
  key: KvmKey;
}

export interface KvmKey {
  bootId: string;
  binary: string;
  qemuVersion: string;
  device: string;
}

export interface AccelInputs {
  arch: ArchRecord;
  cacheDir: string;
  logger: Logger;
  qemuBinary?: string;
  /** Test seams: the host's arch (Node's process.arch), the KVM device, the boot id file, the environment. */
  hostArch?: string;
  kvmDevice?: string;
  bootIdFile?: string;
  env?: NodeJS.ProcessEnv;
  /** How long the test guest has to print (default PROBE_MS). */
  probeMs?: number;
}

/** The test guest's deadline: under KVM it prints in milliseconds; QEMU's own start is most of it. */
export const PROBE_MS: number = KVM_MS.probe;

/** What the x86 test guest prints. */
export const PROBE_LINE = 'klp-kvm-probe-ok';

/**
 * A 64 KiB x86 firmware image that prints PROBE_LINE on COM1 and halts: the
 * reset vector (F000:FFF0) jumps to F000:FF00, where each character is one
 * `mov al, c; out dx, al` pair. Real mode, no setup: the UART's transmit
 * register takes bytes as they come.
 */
export function x86ProbeFirmware(): Buffer {
  const rom = Buffer.alloc(0x10000, 0xf4); // hlt everywhere else
  const code = [0xfa, 0xba, 0xf8, 0x03]; // cli; mov dx, 0x3f8
  for (const c of Buffer.from(`${PROBE_LINE}\n`)) code.push(0xb0, c, 0xee); // mov al, c; out dx, al
  code.push(0xf4, 0xeb, 0xfd); // hlt; jmp back to the hlt
  Buffer.from(code).copy(rom, 0xff00);
  Buffer.from([0xe9, 0x0d, 0xff]).copy(rom, 0xfff0); // jmp near 0xff00 (0xfff3 + 0xff0d wraps to 0xff00)
  return rom;
}

/** The QEMU arguments of the test guest and what its console must show. */
export function probeGuest(arch: ArchRecord, accel: Accel, dir: string): { args: string[]; printed: (out: string) => boolean } {
  const common = ['-accel', accel, '-nodefaults', '-display', 'none', '-monitor', 'none', '-serial', 'stdio', '-no-reboot', '-m', '128'];
  if (arch.name === 'x86_64') {
    const firmware = join(dir, 'kvm-probe-x86.rom');
    if (!existsSync(firmware)) writeFileAtomic(firmware, x86ProbeFirmware());
    return { args: ['-M', 'q35', '-cpu', accel === 'kvm' ? 'host' : 'max', '-bios', firmware, ...common], printed: (out) => out.includes(PROBE_LINE) };
  }
  // Other arches start their machine's own firmware, which prints first thing (SLOF's banner on pseries).
  return { args: [arch.qemu.machineArgs[0]!, arch.qemu.machineArgs[1]!.split(',')[0]!, '-cpu', accel === 'kvm' ? 'host' : arch.qemu.cpuModels[0]!, ...common], printed: (out) => out.trim().length > 0 };
}

/** Runs the test guest: printed in time, or why not (QEMU's first error line, or its silence). */
export async function runProbe(binary: string, arch: ArchRecord, accel: Accel, dir: string, deadlineMs = PROBE_MS): Promise<{ ok: boolean; why: string; ms: number }> {
  const started = Date.now();
  const { args, printed } = probeGuest(arch, accel, dir);
  const { child, group } = spawnGroup(binary, args, { name: `kvm probe (${binary})`, killAfterMs: 500, spawn: { stdio: ['ignore', 'pipe', 'pipe'] } });
  let out = '';
  let err = '';
  const result = await new Promise<{ ok: boolean; why: string }>((resolve) => {
    const timer = setTimeout(() => resolve({ ok: false, why: `no console output from a test guest in ${deadlineMs / 1000} s` }), deadlineMs);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (printed(out)) {
        clearTimeout(timer);
        resolve({ ok: true, why: `a test guest printed on its console in ${((Date.now() - started) / 1000).toFixed(2)} s` });
      }
    });
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    void group.exited.then((x) => {
      clearTimeout(timer);
      const line = err.trim().split('\n')[0];
      resolve({ ok: false, why: line ? `QEMU failed: ${line}` : `QEMU exited (code ${x.code}, signal ${x.signal}) before the test guest printed` });
    });
  });
  await group.stop();
  return { ...result, ms: Date.now() - started };
}

/** The accelerator of one run and arch: read once, switched to TCG when a KVM boot fails. */
export class Accelerator {
  private constructor(
    private current: Accel,
    private reason: string,
    private readonly onKvmFailure?: (why: string) => void,
  ) {}

  /** A fixed choice (tests, or an arch that cannot have KVM here). */
  static fixed(accel: Accel, why = 'chosen by the caller'): Accelerator {
    return new Accelerator(accel, why);
  }

  /** Decided from the host: the cached verdict, or the probe when there is none for this host boot. */
  static async decide(i: AccelInputs): Promise<Accelerator> {
    const env = i.env ?? process.env;
    const say = (line: string) => i.logger.info(`accel ${i.arch.name}: ${line}`);
    if (env.KLP_HARNESS_ACCEL === 'tcg') return announce(Accelerator.fixed('tcg', 'KLP_HARNESS_ACCEL=tcg'), say);
    if ((i.hostArch ?? process.arch) !== i.arch.kvmHostArch) return announce(Accelerator.fixed('tcg', `the host is not ${i.arch.name}`), say);
    const device = i.kvmDevice ?? '/dev/kvm';
    const noDevice = deviceProblem(device);
    if (noDevice) return announce(Accelerator.fixed('tcg', noDevice), say);
    const verdict = await kvmVerdict(i, device);
    const decided = `decided ${verdict.decidedAt.slice(11, 16)} by pid ${verdict.pid}${verdict.pid === process.pid && verdict.probeMs !== undefined ? `, the probe took ${(verdict.probeMs / 1000).toFixed(2)} s` : ''}`;
    const acc = new Accelerator(verdict.usable ? 'kvm' : 'tcg', `KVM ${verdict.usable ? 'usable' : 'not usable on this host'} (${verdict.reason}; ${decided})`, (why) =>
      writeVerdict(i.cacheDir, i.arch, { ...verdict, usable: false, reason: why, decidedAt: new Date().toISOString(), pid: process.pid, probeMs: undefined }),
    );
    return announce(acc, say);
  }

  get accel(): Accel {
    return this.current;
  }

  /** Why this accelerator, in words (said once in the run's log, kept in its report). */
  get why(): string {
    return this.reason;
  }

  /** A KVM guest failed to run: TCG for the rest of the run, and the host's verdict says so. */
  kvmFailed(why: string, logger: Logger, archName: string): void {
    if (this.current !== 'kvm') return;
    this.current = 'tcg';
    this.reason = `KVM failed a boot in this run (${why}); software emulation`;
    logger.info(`accel ${archName}: KVM is not usable here (${why}); software emulation from now on (recorded for this host boot)`);
    this.onKvmFailure?.(why);
  }
}

function announce(a: Accelerator, say: (line: string) => void): Accelerator {
  say(`${a.accel === 'kvm' ? 'KVM' : 'software emulation (TCG)'}: ${a.why}`);
  return a;
}

/** Why the device cannot be used, or undefined when it opens for reading and writing. */
function deviceProblem(device: string): string | undefined {
  try {
    statSync(device);
  } catch {
    return `no ${device}`;
  }
  try {
    closeSync(openSync(device, 'r+'));
  } catch (e) {
    return `${device} cannot be opened (${(e as NodeJS.ErrnoException).code})`;
  }
  return undefined;
}

const verdictFile = (cacheDir: string, arch: ArchRecord) => join(cacheDir, 'accel', `kvm-${arch.name}.json`);

/** What the verdict depends on: this host boot, the QEMU binary and its version, the device. */
export async function kvmKey(i: AccelInputs, device: string): Promise<KvmKey> {
  const bootId = readFileSync(i.bootIdFile ?? '/proc/sys/kernel/random/boot_id', 'utf8').trim();
  const named = i.qemuBinary ?? i.arch.qemu.binary;
  const binary = realpathSync(named.includes('/') ? named : (findOnPath(named) ?? named));
  const qemuVersion = (await run(binary, ['--version'])).stdout.split('\n')[0] ?? '';
  const st = statSync(device);
  return { bootId, binary, qemuVersion, device: `${device} ${st.rdev}:${st.ino}` };
}

/** The verdict file's content if it is whole and for this key; a corrupt or stale one counts as none. */
export function readVerdict(file: string, key: KvmKey): KvmVerdict | undefined {
  try {
    const v = JSON.parse(readFileSync(file, 'utf8')) as KvmVerdict;
    if (typeof v.usable !== 'boolean' || typeof v.reason !== 'string' || typeof v.decidedAt !== 'string') return undefined;
    return hashOf(JSON.stringify(v.key)) === hashOf(JSON.stringify(key)) ? v : undefined;
  } catch {
    return undefined;
  }
}

function writeVerdict(cacheDir: string, arch: ArchRecord, v: KvmVerdict): void {
  mkdirSync(join(cacheDir, 'accel'), { recursive: true });
  writeFileAtomic(verdictFile(cacheDir, arch), JSON.stringify(v, null, 2) + '\n');
}

/** This host boot's verdict: read, or probed under the entry's lock (another run may be probing). */
async function kvmVerdict(i: AccelInputs, device: string): Promise<KvmVerdict> {
  const key = await kvmKey(i, device);
  const file = verdictFile(i.cacheDir, i.arch);
  const known = readVerdict(file, key);
  if (known) return known;
  mkdirSync(join(i.cacheDir, 'accel'), { recursive: true });
  return withExclusive(entryLock(i.cacheDir, `accel/kvm-${i.arch.name}`), 'the KVM probe', i.logger, async () => {
    const meanwhile = readVerdict(file, key);
    if (meanwhile) return meanwhile;
    i.logger.info(`accel ${i.arch.name}: probing KVM with a test guest (once per host boot)`);
    const probe = await runProbe(key.binary, i.arch, 'kvm', join(i.cacheDir, 'accel'), i.probeMs ?? PROBE_MS);
    const v: KvmVerdict = { usable: probe.ok, reason: probe.why, decidedAt: new Date().toISOString(), pid: process.pid, probeMs: probe.ms, key };
    writeVerdict(i.cacheDir, i.arch, v);
    return v;
  });
}
