// Fresh guests from a snapshot instead of a boot. The first guest for a
// (kernel, image, QEMU command line) boots as usual; once SSH answers, its
// whole state goes to a file through QEMU's migration stream, and every
// guest after that, in this run or a later one, starts from that file
// (`-incoming`): the same pristine state each time, SSH-ready in well under a
// second instead of a boot. The snapshot is a cache entry (snapshots/<key>)
// made under the entry's exclusive lock and used under its shared one, with
// the boot's console and any kernel reports of the boot kept beside it. A
// restore that fails is said in the log and the report, and the guest boots.
import { mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pRetry, { AbortError } from 'p-retry';
import { hashOf, readValidMarker, sha256File, writeMarker } from '../core/cache.js';
import { wasInterrupted } from '../proc/supervisor.js';
import { describeError, HarnessError, infraError } from '../core/errors.js';
import { run } from '../proc/exec.js';
import { entryLock, useEntry } from '../core/lock.js';
import { hostMs, timeout } from '../core/timeouts.js';
import { delay, pollUntil } from '../core/poll.js';
import { bootGuest, portTaken, startQemu, type BootRequest, type Booted } from './boot.js';
import type { ConsoleEvent } from './console.js';
import { freePort } from './ports.js';
import { processCpuMs, qemuArgs } from './qemu.js';
import { migrateToFile, QmpClient } from './qmp.js';
import { GuestShell } from './ssh.js';

/** The file in a snapshot entry that holds the guest's state. */
const STATE = 'state';

export interface FreshGuestRequest extends BootRequest {
  cacheDir: string;
  /** false: boot every guest (--no-snapshot). */
  snapshots: boolean;
}

/** A guest from freshGuest: booted, or restored from a snapshot (then `restored` says which and how long it took). */
export interface FreshGuest extends Booted {
  /** cpuAt*: QEMU's CPU time (ms) once the state was loaded and once SSH connected: where a restore's cost goes. */
  restored?: { snapshot: string; ms: number; cpuAtRunning?: number; cpuAtConnected?: number };
  /** Why a snapshot could not be made or used, when the guest booted instead. */
  snapshotProblem?: string;
}

interface SnapshotMeta {
  bootMs: number;
  saveMs: number;
  stateBytes: number;
  /** Kernel reports on the boot's console (a WARN at boot still fails a scenario's console check). */
  bootEvents: ConsoleEvent[];
}

interface Snapshot {
  dir: string;
  state: string;
  meta: SnapshotMeta;
}

/** The value for key, computed once per book. */
function once<T>(cache: Map<string, T>, key: string, make: () => T): T {
  if (!cache.has(key)) cache.set(key, make());
  return cache.get(key)!;
}

/**
 * What one run knows about snapshots (its guest pool owns one): entries
 * made or checked once and used by every guest after, those whose restore
 * failed (the run boots instead), file sums and QEMU versions read once.
 */
export class SnapshotBook {
  readonly known = new Map<string, Promise<Snapshot | undefined>>();
  readonly unusable = new Map<string, string>();
  private readonly fileSums = new Map<string, Promise<string>>();
  private readonly qemuVersions = new Map<string, Promise<string>>();
  private sockets = 0;
  sumOf = (path: string) => once(this.fileSums, path, () => sha256File(path));
  versionOf = (binary: string) => once(this.qemuVersions, binary, () => run(binary, ['--version']).then((r) => r.stdout.split('\n')[0] ?? ''));
  /** A fresh path for a QMP socket (short: unix socket paths are limited to 108 bytes). */
  qmpSocketPath = () => join(tmpdir(), `klp-qmp-${process.pid}-${++this.sockets}-${Math.random().toString(36).slice(2, 6)}.sock`);
}

/**
 * What a snapshot depends on: QEMU's version, its command line (without the
 * SSH port, which each guest picks anew) and the kernel and image contents.
 */
export async function snapshotKey(req: BootRequest, book = new SnapshotBook()): Promise<{ key: string; inputs: Record<string, string> }> {
  const binary = req.qemuBinary ?? req.arch.qemu.binary;
  // The accelerator is in the command line: a state saved under one restores only under it.
  const args = qemuArgs({ arch: req.arch, accel: accelOf(req), dataArgs: req.qemuDataArgs, kernel: req.kernel, initrd: req.initrd, sshPort: 0, consoleLog: '', cpu: req.cpu, smp: req.smp, extraAppend: req.extraAppend });
  const inputs = { qemu: await book.versionOf(binary), args: args.join(' '), kernel: await book.sumOf(req.kernel), initrd: await book.sumOf(req.initrd) };
  return { key: `${req.arch.name}-${req.cpu ?? req.arch.qemu.cpuModels[0]}-${hashOf(...Object.values(inputs))}`, inputs };
}

const accelOf = (req: BootRequest) => req.accel?.accel ?? 'tcg';

/** Whether `qemu --version`'s first line names `want` (major.minor) or later. */
export function versionAtLeast(versionLine: string, want: string): boolean {
  const have = /version (\d+)\.(\d+)/.exec(versionLine);
  const [wMajor, wMinor] = want.split('.').map(Number) as [number, number];
  if (!have) return false;
  const major = Number(have[1]);
  return major > wMajor || (major === wMajor && Number(have[2]) >= wMinor);
}

/** A pristine guest for one scenario: restored from the snapshot when there is one (made first if not), else booted. */
export async function freshGuest(given: FreshGuestRequest, book = new SnapshotBook()): Promise<FreshGuest> {
  if (!given.snapshots) return bootGuest(given);
  const limits = given.arch.qemu.restoreLimits;
  // Guests that restore are made and restored with the vCPUs that restore right; every guest that boots boots as given.
  const req = limits && limits.cpuModels.includes(given.cpu ?? given.arch.qemu.cpuModels[0]!) ? { ...given, smp: limits.smp } : given;
  const { known, unusable } = book;
  const { key, inputs } = await snapshotKey(req, book);
  const tooOld = req.arch.qemu.snapshotsFrom;
  if (tooOld && !unusable.has(key) && !versionAtLeast(inputs.qemu, tooOld.version)) {
    unusable.set(key, `no snapshot: ${tooOld.why} (this is ${inputs.qemu})`);
    req.logger.info(`snapshot ${req.arch.name}: ${unusable.get(key)}; guests boot`);
  }
  if (limits && req.smp === undefined && !unusable.has(key) && versionAtLeast(inputs.qemu, tooOld?.version ?? '0.0')) {
    unusable.set(key, `no snapshot for ${req.cpu ?? req.arch.qemu.cpuModels[0]}: ${limits.why}`);
    req.logger.info(`snapshot ${req.arch.name}: ${unusable.get(key)}; these guests boot`);
  }
  const problem = unusable.get(key);
  if (problem) return { ...(await bootGuest(given)), snapshotProblem: problem };
  let snap = known.get(key);
  if (!snap) known.set(key, (snap = snapshotEntry(req, key, inputs, book)));
  let s: Snapshot | undefined;
  try {
    s = await snap;
  } catch (e) {
    // A boot that failed fails the guest as it always did; a save that failed only costs boots.
    if (e instanceof HarnessError && e.kind === 'boot') throw e;
    const why = `no snapshot: ${describeError(e).split('\n')[0]}`;
    unusable.set(key, why);
    req.logger.info(`snapshot ${req.arch.name}: ${why}; guests boot instead`);
    return { ...(await bootGuest(given)), snapshotProblem: why };
  }
  if (!s) return bootGuest(given);
  try {
    return await restoreGuest(req, s, book);
  } catch (e) {
    if (wasInterrupted()) throw e;
    const why = `restore from ${s.dir} failed: ${(e as Error).message.split('\n')[0]}`;
    unusable.set(key, why);
    req.logger.info(`snapshot ${req.arch.name}: ${why}; booting instead (the console of the failed restore is kept)`);
    return { ...(await bootGuest(given)), snapshotProblem: why };
  }
}

/** The snapshot entry for a key: checked, or made under its exclusive lock (another run may be making it). */
function snapshotEntry(req: FreshGuestRequest, key: string, inputs: Record<string, string>, book: SnapshotBook): Promise<Snapshot | undefined> {
  const dir = join(req.cacheDir, 'snapshots', key);
  const check = async () => {
    const marker = await readValidMarker(dir);
    if (!marker) return undefined;
    return { dir, state: join(dir, STATE), meta: marker.meta as unknown as SnapshotMeta };
  };
  return useEntry({
    lock: entryLock(req.cacheDir, `snapshots/${key}`),
    what: `snapshot ${key}`,
    logger: req.logger,
    check,
    make: async () => {
      await makeSnapshot(req, dir, key, inputs, book);
      return (await check())!;
    },
  });
}

/** Boots a guest with a QMP socket, waits for SSH, saves its state to the entry and stops it. */
async function makeSnapshot(req: FreshGuestRequest, dir: string, key: string, inputs: Record<string, string>, book: SnapshotBook): Promise<void> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const qmpSocket = book.qmpSocketPath();
  const consoleLog = join(dir, 'boot-console.log');
  req.logger.info(`snapshot ${req.arch.name}: booting the guest to save (${dir})`);
  try {
    await using booted = await bootGuest({ ...req, consoleLog, commandFile: join(dir, 'qemu-command.txt'), qmpSocket });
    // The guest's SSH server sees our connection end before its state is saved: no half-open session in the snapshot.
    booted.ssh.close();
    await delay(hostMs('sshCloseSettle'));
    const qmp = await QmpClient.connect(qmpSocket);
    const started = Date.now();
    try {
      await migrateToFile(qmp, join(dir, STATE), timeout('guestCommand', req.arch));
    } finally {
      qmp.close();
    }
    const meta: SnapshotMeta = { bootMs: booted.readyMs, saveMs: Date.now() - started, stateBytes: statSync(join(dir, STATE)).size, bootEvents: booted.vm.events.slice() };
    writeFileSync(join(dir, 'inputs.json'), JSON.stringify(inputs, null, 2) + '\n');
    await writeMarker(dir, key, inputs, [STATE], meta as unknown as Record<string, unknown>);
    req.logger.info(`snapshot ${req.arch.name}: saved ${(meta.stateBytes / 1048576).toFixed(0)} MiB in ${(meta.saveMs / 1000).toFixed(2)} s after a ${(booted.readyMs / 1000).toFixed(1)} s boot`);
  } finally {
    rmSync(qmpSocket, { force: true });
  }
}

/** Starts QEMU from the snapshot's state and connects; a taken port is retried, anything else thrown. */
async function restoreGuest(req: FreshGuestRequest, s: Snapshot, book: SnapshotBook): Promise<FreshGuest> {
  return pRetry(() => restoreOnce(req, s, book), { retries: 3, minTimeout: 0 });
}

async function restoreOnce(req: FreshGuestRequest, s: Snapshot, book: SnapshotBook): Promise<FreshGuest> {
  const port = await (req.pickPort ?? freePort)();
  writeFileSync(req.consoleLog, `# klp-harness: restored from ${s.state}; the boot's console is ${join(s.dir, 'boot-console.log')}\n`);
  const qmpSocket = book.qmpSocketPath();
  const vm = startQemu({ ...req, qmpSocket }, port, accelOf(req), s.state);
  // The boot's kernel reports count for this guest too: it is that boot, resumed.
  vm.events.push(...s.meta.bootEvents);
  const abort = Promise.race([
    vm.fatal.then((ev) => `kernel ${ev.kind} after the restore: ${ev.line.trim()}`),
    vm.exited.then((x) => `QEMU exited (code ${x.code}, signal ${x.signal}) before SSH answered: ${x.stderr.trim().split('\n').slice(-1)[0] ?? ''}`),
  ]);
  try {
    // A connection made while QEMU still loads the state loses its first SYN
    // in the user network and waits out a retransmission (seen: 6 s with four
    // restores at once): connect once the guest runs.
    const running = untilRunning(qmpSocket, timeout('restoreToSsh', req.arch), () => !vm.running);
    running.catch(() => {}); // when the abort wins
    await Promise.race([running, abort.then((why) => Promise.reject(new HarnessError('boot', why)))]);
    const cpuAtRunning = processCpuMs(vm.pid);
    const commands = { commandMs: timeout('guestCommand', req.arch), copyMs: timeout('fileCopy', req.arch) };
    const ssh = await GuestShell.connect({ port, keys: req.keys, deadlineMs: timeout('restoreToSsh', req.arch), commands, abort });
    const cpuAtConnected = processCpuMs(vm.pid);
    // A guest whose timers did not survive the restore answers SSH and then hangs in the first sleep.
    const timers = await ssh.exec('usleep 20000 && echo timers-ok', { timeoutMs: hostMs('restoredTimers') * req.arch.timeoutScale }).catch((e: Error) => ({ stdout: e.message }));
    if (!timers.stdout.includes('timers-ok')) {
      ssh.close();
      throw infraError(`the restored guest's timers do not fire (a 20 ms sleep did not end: ${timers.stdout.trim().split('\n')[0]})`);
    }
    const ms = Date.now() - vm.startedAt;
    return {
      vm,
      ssh,
      readyMs: ms,
      port,
      stalled: [],
      restored: { snapshot: s.dir, ms, cpuAtRunning, cpuAtConnected },
      async [Symbol.asyncDispose]() {
        ssh.close();
        await vm.stop();
      },
    };
  } catch (e) {
    await vm.stop();
    if (vm.exit && portTaken(vm.exit.stderr)) throw infraError(`port ${port} was taken`);
    throw new AbortError(e as Error);
  } finally {
    rmSync(qmpSocket, { force: true });
  }
}

/** Waits until QEMU has loaded the state and the guest runs. */
async function untilRunning(qmpSocket: string, deadlineMs: number, gone: () => boolean): Promise<void> {
  const qmp = await QmpClient.connect(qmpSocket, deadlineMs, gone);
  try {
    const status = async () => ((await qmp.execute('query-status')) as { status: string }).status;
    const r = await pollUntil(status, (s) => s === 'running', { everyMs: hostMs('restorePoll'), deadlineMs });
    if (!r.ok) throw infraError(`the guest was not running ${deadlineMs / 1000} s after the restore began (QEMU status: ${r.last})`);
  } finally {
    qmp.close();
  }
}
