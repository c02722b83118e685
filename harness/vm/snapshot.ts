// Fresh guests from a snapshot instead of a boot. The first guest for a
// (kernel, image, QEMU command line) boots as usual, its RAM a file of the
// entry; once SSH answers, its whole state is saved (`savevm`) in a qcow2
// image of the entry, and its state but the RAM in a stream beside the RAM
// file. Every guest after that, in this run or a later one, starts from the
// entry: a QEMU for one guest on a private mapping of the RAM file with the
// stream loaded (no memory loaded at all), a QEMU that will serve more from a
// copy of the image (`-loadvm`), which resets it in place for the next guest.
// Either way the same pristine state each time, SSH-ready in about a second
// instead of a boot. The snapshot is a cache entry (snapshots/<key>)
// made under the entry's exclusive lock and used under its shared one, with
// the boot's console and any kernel reports of the boot kept beside it. A
// restore that fails is said in the log and the report, and the guest boots.
import { closeSync, constants, existsSync, fdatasyncSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { copyFile } from 'node:fs/promises';
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
import { bootGuest, commandFileOf, portTaken, startQemu, type BootRequest, type Booted } from './boot.js';
import type { ConsoleEvent } from './console.js';
import { freePort } from './ports.js';
import { writeEmptyQcow2 } from './qcow2.js';
import { processCpuMs, qemuArgs, type QemuVM } from './qemu.js';
import { bounded, QmpClient } from './qmp.js';
import { GuestShell } from './ssh.js';

/** The file in a snapshot entry that holds the guest's state: a qcow2 image with one saved VM state, PRISTINE (what a reset in place loads). */
const IMAGE = 'pristine.qcow2';
/**
 * The guest's RAM when it was saved, as a sparse file (the snapshot's boot
 * ran on it), and the rest of its state (devices, CPUs, clocks: a migration
 * stream without that RAM, x-ignore-shared). A QEMU for one guest starts on
 * them: its RAM is a private mapping of the file, so it loads none of the
 * guest's RAM and faults in only the pages the guest uses, from the page cache every
 * QEMU of the snapshot shares; a -loadvm from IMAGE writes the whole RAM
 * first (256 MiB on pseries, each page a fault on a host that must back it
 * anew). Measured here (ppc64le, QEMU 10.0.13): 0.35-0.45 s of QEMU CPU to the
 * guest running against 1.1-1.5 s. But a QEMU that serves more guests loads
 * IMAGE as it starts: on the file, each reset in place (loadvm) copied the
 * pages it wrote (the first 0.7-0.8 s, later ones 0.3-0.45 s against 0.15 s on
 * anonymous memory, which the host backs with huge pages), and its guests'
 * steps cost more too (the matrix, side by side: 107-119 s of QEMU CPU with
 * every first restore on the file, 94-105 s with none).
 */
const RAM = 'ram';
const STATE = 'state';

export interface FreshGuestRequest extends BootRequest {
  cacheDir: string;
  /** false: boot every guest (--no-snapshot). */
  snapshots: boolean;
}

/** A guest from freshGuest: booted, or restored from a snapshot (then `restored` says which and how long it took). */
export interface FreshGuest extends Booted {
  /**
   * cpuAt*: QEMU's CPU time (ms) once the state was loaded and once SSH
   * connected, counted from this guest's start: where a restore's cost goes.
   * inPlace: the guest is an earlier guest's QEMU reset to the snapshot (loadvm), its nth guest.
   */
  restored?: { snapshot: string; ms: number; cpuAtRunning?: number; cpuAtConnected?: number; inPlace?: { pid: number; guest: number } };
  /** Why a snapshot could not be made or used, when the guest booted instead. */
  snapshotProblem?: string;
  /** QEMU CPU (ms) this guest used: from its start (or its reset) to SSH answering, then to its end (set when it ends). */
  cpu: { atReadyMs: number; usedMs?: number };
}

/** The saved VM in a snapshot's image: what every restore starts from and every reset in place loads back. */
const PRISTINE = 'klp-pristine';

/**
 * A QEMU restored from a snapshot that outlives its guest: paused between
 * guests, and reset in place (`loadvm`) for the next guest of the same
 * snapshot, which then costs no process start and no page faults for the
 * guest's memory (on this host a restore's own cost, 0.3 to 2.8 s of QEMU CPU,
 * is mostly the kernel zeroing the fresh memory it touches).
 */
export interface WarmQemu {
  book: SnapshotBook;
  key: string;
  /** Its guests' arch (the name). */
  arch: string;
  vm: QemuVM;
  qmp: QmpClient;
  port: number;
  snapshot: Snapshot;
  /** The folder of its qcow2 image (removed when it stops). */
  dir: string;
  /** Guests it has served. */
  guests: number;
  /** Whether it can be reset in place (it has the image). */
  resettable: boolean;
}

interface SnapshotMeta {
  bootMs: number;
  saveMs: number;
  stateBytes: number;
  /** Kernel reports on the boot's console (a WARN at boot still fails a scenario's console check). */
  bootEvents: ConsoleEvent[];
  /** Why the saved state cannot be restored (a section the arch needs is not in it): its guests boot. */
  unusable?: string;
}

interface Snapshot {
  dir: string;
  /** The entry's qcow2 image (each QEMU gets a copy: loadvm needs its image writable). */
  image: string;
  /** The entry's RAM file and state stream (RAM, STATE). */
  ram: string;
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
  /** Paused QEMUs between two guests, oldest first (`reuse`: whether guests are reset in place at all). */
  private idle: WarmQemu[] = [];
  /** Per arch that said (want): the snapshot keys of its guests still to start, and of those not yet taken. */
  private readonly wanted = new Map<string, ReadonlySet<string>>();
  private readonly queued = new Map<string, ReadonlySet<string>>();
  /** QEMUs started through this book and not yet stopped: guests in use and paused ones. */
  live = 0;
  constructor(
    readonly reuse = false,
    /** At most this many QEMUs at once, paused ones included (the run's --jobs: each holds its guest's memory). */
    private readonly maxQemus = 4,
  ) {}
  /** Whether a paused QEMU of this snapshot waits for a guest. */
  hasIdle(key: string): boolean {
    return this.idle.some((w) => w.key === key);
  }
  takeIdle(key: string): WarmQemu | undefined {
    const i = this.idle.findIndex((w) => w.key === key);
    return i < 0 ? undefined : this.idle.splice(i, 1)[0];
  }
  /** Keeps a paused QEMU for the next guest of its snapshot; false when no guest still to come wants it (the caller stops it). */
  putIdle(w: WarmQemu): boolean {
    if (this.unwanted(w)) return false;
    this.idle.push(w);
    return true;
  }
  /**
   * The snapshots the guests an arch has still to start restore from: a
   * paused QEMU of another of its snapshots would serve no one, and stops
   * now rather than at the end of the run. The next QEMU to start gets its
   * memory back while the host still holds it: memory the host has had back
   * for a few seconds costs a fault per page again (a first restore of a
   * 256 MiB guest: about 0.35 s of QEMU CPU just after another QEMU
   * stopped, 1.0-1.4 s otherwise, measured here).
   */
  async want(arch: string, keys: ReadonlySet<string>, queued: ReadonlySet<string>): Promise<void> {
    this.wanted.set(arch, keys);
    this.queued.set(arch, queued);
    const stop = this.idle.filter((w) => this.unwanted(w));
    this.idle = this.idle.filter((w) => !stop.includes(w));
    await Promise.all(stop.map(stopWarm));
  }
  /**
   * Whether a QEMU started now for this snapshot would serve only the guest it
   * starts for: QEMUs are not reused, or the arch said which guests it has
   * left and none of them restores from it.
   */
  singleUse(arch: string, key: string): boolean {
    const queued = this.queued.get(arch);
    return !this.reuse || (queued !== undefined && !queued.has(key));
  }
  /** Snapshots whose RAM file and stream failed to restore in this run: their QEMUs start from the image. */
  readonly noFile = new Set<string>();
  /** Whether a QEMU started now for this snapshot starts on its RAM file (one guest to serve, and the file has not failed). */
  onFile(arch: string, key: string): boolean {
    return this.singleUse(arch, key) && !this.noFile.has(key);
  }
  private unwanted(w: WarmQemu): boolean {
    const keys = this.wanted.get(w.arch);
    return keys !== undefined && !keys.has(w.key);
  }
  /** Before a new QEMU starts: paused ones (of other snapshots) stop, oldest first, until it fits under maxQemus. */
  async makeRoom(): Promise<void> {
    while (this.idle.length && this.live >= this.maxQemus) await stopWarm(this.idle.shift()!);
  }
  /** Stops every QEMU kept for reuse (the end of a run). */
  async close(): Promise<void> {
    await Promise.all(this.idle.splice(0).map(stopWarm));
  }
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
  // saved: how the entry holds the state (entries of the migration-stream kind, before it, are made anew).
  const inputs = { qemu: await book.versionOf(binary), args: args.join(' '), kernel: await book.sumOf(req.kernel), initrd: await book.sumOf(req.initrd), saved: `savevm ${PRISTINE} in ${IMAGE}; RAM in ${RAM}, the rest in ${STATE} (x-ignore-shared)` };
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

/** Guests that restore are made and restored with the vCPUs that restore right; every guest that boots boots as given. */
function restoreRequest(given: FreshGuestRequest): FreshGuestRequest {
  const limits = given.arch.qemu.restoreLimits;
  return limits && limits.cpuModels.includes(given.cpu ?? given.arch.qemu.cpuModels[0]!) ? { ...given, smp: limits.smp } : given;
}

/** Tells the book the guests an arch has still to start, and those not yet taken (SnapshotBook.want): paused QEMUs of its other snapshots stop. */
export async function expectGuests(arch: string, given: readonly FreshGuestRequest[], queued: readonly FreshGuestRequest[], book: SnapshotBook): Promise<void> {
  if (!book.reuse) return;
  const keysOf = async (gs: readonly FreshGuestRequest[]) => new Set(await Promise.all(gs.filter((g) => g.snapshots).map(async (g) => (await snapshotKey(restoreRequest(g), book)).key)));
  await book.want(arch, await keysOf(given), await keysOf(queued));
}

/** Whether a guest for this request would be a paused QEMU reset in place (one of its snapshot waits). */
export async function resetWaiting(given: FreshGuestRequest, book: SnapshotBook): Promise<boolean> {
  if (!given.snapshots || !book.reuse) return false;
  return book.hasIdle((await snapshotKey(restoreRequest(given), book)).key);
}

/** A pristine guest for one scenario: restored from the snapshot when there is one (made first if not), else booted. */
export async function freshGuest(given: FreshGuestRequest, book = new SnapshotBook()): Promise<FreshGuest> {
  if (!given.snapshots) return bootFresh(given, book);
  const limits = given.arch.qemu.restoreLimits;
  const req = restoreRequest(given);
  const { known, unusable } = book;
  const { key, inputs } = await snapshotKey(req, book);
  const tooOld = req.arch.qemu.snapshotsFrom;
  if (tooOld && !unusable.has(key) && !versionAtLeast(inputs.qemu, tooOld.version)) {
    unusable.set(key, `no snapshot: ${tooOld.why} (this is ${inputs.qemu})`);
    req.logger.info(`snapshot ${req.arch.name}: ${unusable.get(key)}; guests boot`);
  }
  if (limits && !limits.cpuModels.includes(req.cpu ?? req.arch.qemu.cpuModels[0]!) && !unusable.has(key) && versionAtLeast(inputs.qemu, tooOld?.version ?? '0.0')) {
    unusable.set(key, `no snapshot for ${req.cpu ?? req.arch.qemu.cpuModels[0]}: ${limits.why}`);
    req.logger.info(`snapshot ${req.arch.name}: ${unusable.get(key)}; these guests boot`);
  }
  const problem = unusable.get(key);
  if (problem) return { ...(await bootFresh(given, book)), snapshotProblem: problem };
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
    return { ...(await bootFresh(given, book)), snapshotProblem: why };
  }
  if (!s) return bootFresh(given, book);
  if (s.meta.unusable) {
    const why = `no snapshot for ${req.cpu ?? req.arch.qemu.cpuModels[0]} on ${inputs.qemu}: ${s.meta.unusable} (${s.dir})`;
    if (!unusable.has(key)) req.logger.info(`snapshot ${req.arch.name}: ${why}; these guests boot`);
    unusable.set(key, why);
    return { ...(await bootFresh(given, book)), snapshotProblem: why };
  }
  const warm = book.takeIdle(key);
  if (warm) {
    try {
      return await resetInPlace(req, warm, book);
    } catch (e) {
      if (wasInterrupted()) throw e;
      req.logger.info(`snapshot ${req.arch.name}: resetting QEMU pid ${warm.vm.pid} in place failed (${(e as Error).message.split('\n')[0]}); restoring a new one`);
      await stopWarm(warm);
    }
  }
  try {
    return await restoreGuest(req, s, book, key);
  } catch (e) {
    if (wasInterrupted()) throw e;
    const why = `restore from ${s.dir} failed: ${(e as Error).message.split('\n')[0]}`;
    unusable.set(key, why);
    req.logger.info(`snapshot ${req.arch.name}: ${why}; booting instead (the console of the failed restore is kept)`);
    return { ...(await bootFresh(given, book)), snapshotProblem: why };
  }
}

/** The snapshot entry for a key: checked, or made under its exclusive lock (another run may be making it). */
function snapshotEntry(req: FreshGuestRequest, key: string, inputs: Record<string, string>, book: SnapshotBook): Promise<Snapshot | undefined> {
  const dir = join(req.cacheDir, 'snapshots', key);
  const check = async () => {
    const marker = await readValidMarker(dir);
    if (!marker) return undefined;
    return { dir, image: join(dir, IMAGE), ram: join(dir, RAM), state: join(dir, STATE), meta: marker.meta as unknown as SnapshotMeta };
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

/** Boots a guest with a QMP socket and a scratch image, waits for SSH, saves its state there (savevm), stops it and copies the image into the entry. */
async function makeSnapshot(req: FreshGuestRequest, dir: string, key: string, inputs: Record<string, string>, book: SnapshotBook): Promise<void> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const qmpSocket = book.qmpSocketPath();
  const consoleLog = join(dir, 'boot-console.log');
  const image = join(dir, IMAGE);
  // QEMU saves into a scratch image, copied into the entry once QEMU has quit (it writes the image until then):
  // QEMU opens no block image in the cache (a file system without locks). The RAM file and the state stream
  // it writes in the entry itself (a comma in the path is doubled, the stream's path is quoted for the shell).
  const scratch = mkdtempSync(join(tmpdir(), 'klp-save-'));
  writeEmptyQcow2(join(scratch, IMAGE));
  req.logger.info(`snapshot ${req.arch.name}: booting the guest to save (${dir})`);
  try {
    // The RAM file is the boot's RAM, written in place (copied, its holes would be written out as zeros).
    const saved = await saveBooted(req, consoleLog, join(dir, 'qemu-command.txt'), qmpSocket, join(scratch, IMAGE), join(dir, RAM), join(dir, STATE));
    await copyFile(join(scratch, IMAGE), image);
    // On disk before the marker says the entry is made: a RAM file is checked by its size alone.
    for (const f of [RAM, STATE]) syncFile(join(dir, f));
    const meta: SnapshotMeta = { ...saved, stateBytes: statSync(image).size };
    const needs = req.arch.qemu.restoreLimits?.stateSections?.[req.cpu ?? req.arch.qemu.cpuModels[0]!];
    // Kept as a made entry: the next run with this QEMU boots these guests at once instead of saving again.
    if (needs && !stateHasSection(image, needs.section)) meta.unusable = needs.why;
    writeFileSync(join(dir, 'inputs.json'), JSON.stringify(inputs, null, 2) + '\n');
    // The RAM file by its size: hashing 256 MiB on every run that uses the entry costs more than it protects.
    await writeMarker(dir, key, inputs, [IMAGE, STATE], meta as unknown as Record<string, unknown>, { sizeOnly: [RAM] });
    if (meta.unusable) req.logger.info(`snapshot ${req.arch.name}: the state saved by ${inputs.qemu} cannot be restored: ${meta.unusable}`);
    else req.logger.info(`snapshot ${req.arch.name}: saved ${(meta.stateBytes / 1048576).toFixed(0)} MiB in ${(meta.saveMs / 1000).toFixed(2)} s after a ${(meta.bootMs / 1000).toFixed(1)} s boot`);
  } finally {
    rmSync(qmpSocket, { force: true });
    rmSync(scratch, { recursive: true, force: true });
  }
}

/**
 * Boots the guest on a RAM file with the image as a drive, waits for SSH,
 * stops it and saves its state twice: whole in the image (savevm, for resets
 * in place) and without its RAM in a stream (for new QEMUs on the RAM file).
 * QEMU is gone on return.
 */
async function saveBooted(req: FreshGuestRequest, consoleLog: string, commandFile: string, qmpSocket: string, image: string, ram: string, state: string): Promise<Omit<SnapshotMeta, 'stateBytes'>> {
  await using booted = await bootGuest({ ...req, consoleLog, commandFile, qmpSocket, vmstateImage: image, ram: { file: ram, shared: true } });
  // The guest's SSH server sees our connection end before its state is saved: no half-open session in the snapshot.
  booted.ssh.close();
  await delay(hostMs('sshCloseSettle'));
  const qmp = await QmpClient.connect(qmpSocket);
  const started = Date.now();
  try {
    // Stopped first: the state saved is the guest at one instant.
    await bounded(qmp.execute('stop'), hostMs('qmpAnswer'), 'QMP stop');
    await bounded(humanMonitor(qmp, `savevm ${PRISTINE}`), timeout('guestCommand', req.arch), 'savevm');
    await ignoreSharedRam(qmp, true);
    // Through a temporary name: QEMU says "completed" before its cat has written the end of the stream
    // (and the group stop at the end would kill it), so the state is taken once the rename is done.
    await bounded(qmp.execute('migrate', { uri: `exec:cat > ${shellQuote(`${state}.part`)} && mv -f ${shellQuote(`${state}.part`)} ${shellQuote(state)}` }), hostMs('qmpAnswer'), 'QMP migrate');
    const done = await pollUntil(
      async () => ((await bounded(qmp.execute('query-migrate'), hostMs('qmpAnswer'), 'QMP query-migrate')) as { status?: string; 'error-desc'?: string }),
      (m) => m.status === 'completed' || m.status === 'failed' || m.status === 'cancelled',
      { everyMs: hostMs('restorePoll'), deadlineMs: timeout('guestCommand', req.arch) },
    );
    const m = done.ok ? done.value : done.last;
    if (m?.status !== 'completed') throw infraError(`saving the state without its RAM: migration ${m?.status ?? 'did not end'}${m?.['error-desc'] ? `: ${m['error-desc']}` : ''}`);
    const written = await pollUntil(async () => existsSync(state), (there) => there, { everyMs: hostMs('restorePoll'), deadlineMs: timeout('guestCommand', req.arch) });
    if (!written.ok) throw infraError(`saving the state without its RAM: QEMU said the migration completed, but ${state} was not written`);
  } finally {
    qmp.close();
  }
  return { bootMs: booted.readyMs, saveMs: Date.now() - started, bootEvents: booted.vm.events.slice() };
}

/**
 * Whether a saved state has a section with this idstr: QEMU writes each
 * section's idstr after a length byte, in its header (a qcow2 image holds
 * the state as that stream, written in order into a fresh image).
 */
export function stateHasSection(statePath: string, idstr: string): boolean {
  const needle = Buffer.concat([Buffer.from([Buffer.byteLength(idstr)]), Buffer.from(idstr)]);
  return readFileSync(statePath).includes(needle);
}

/** Starts QEMU from the snapshot's state and connects; a taken port is retried, anything else thrown. */
async function restoreGuest(req: FreshGuestRequest, s: Snapshot, book: SnapshotBook, key: string): Promise<FreshGuest> {
  await book.makeRoom();
  const restore = () => pRetry(() => restoreOnce(req, s, book, key), { retries: 3, minTimeout: 0 });
  if (!book.onFile(req.arch.name, key)) return restore();
  try {
    return await restore();
  } catch (e) {
    if (wasInterrupted()) throw e;
    // The image may still restore: this run's QEMUs of the snapshot start from it from now on.
    book.noFile.add(key);
    req.logger.info(`snapshot ${req.arch.name}: a restore on the RAM file of ${s.dir} failed (${(e as Error).message.split('\n')[0]}); from the image instead`);
    return restore();
  }
}

/**
 * One restore: a QEMU started paused, then run. For one guest, on the
 * entry's RAM file with the rest of its state loaded from the entry's stream
 * (RAM); for more (the book reuses QEMUs and guests of the snapshot are
 * queued), on anonymous memory from a copy of the entry's image (-loadvm),
 * the copy it is reset in place from for the next guest.
 */
async function restoreOnce(req: FreshGuestRequest, s: Snapshot, book: SnapshotBook, key: string): Promise<FreshGuest> {
  const port = await (req.pickPort ?? freePort)();
  const onFile = book.onFile(req.arch.name, key);
  writeFileSync(req.consoleLog, `# klp-harness: restored from ${onFile ? `${s.state} on ${s.ram}` : s.image}; the boot's console is ${join(s.dir, 'boot-console.log')}\n`);
  const qmpSocket = book.qmpSocketPath();
  const dir = mkdtempSync(join(tmpdir(), 'klp-warm-'));
  const vmstateImage = onFile ? undefined : join(dir, 'vmstate.qcow2');
  let vm: QemuVM;
  try {
    // A clone where the file system has them, else a copy (40-60 MiB from the page cache).
    if (vmstateImage) await copyFile(s.image, vmstateImage, constants.COPYFILE_FICLONE);
    const from = onFile ? { incoming: true, ram: { file: s.ram, shared: false } } : { loadvm: PRISTINE, ram: {} };
    vm = startQemu({ ...req, qmpSocket, vmstateImage }, port, accelOf(req), { paused: true, ...from });
  } catch (e) {
    // The image could not be copied (a cache pruned under the run): no QEMU started, nothing to retry.
    rmSync(dir, { recursive: true, force: true });
    throw new AbortError(e as Error);
  }
  // The boot's kernel reports count for this guest too: it is that boot, resumed.
  vm.events.push(...s.meta.bootEvents);
  let qmp: QmpClient | undefined;
  try {
    // A connection made while QEMU still loads the state loses its first SYN
    // in the user network and waits out a retransmission (seen: 6 s with four
    // restores at once): connect once the guest runs.
    const deadline = timeout('restoreToSsh', req.arch);
    qmp = await Promise.race([QmpClient.connect(qmpSocket, deadline, () => !vm.running), abortOf(vm, 'after the restore').then((why) => Promise.reject(new HarnessError('boot', why)))]);
    if (onFile) {
      await ignoreSharedRam(qmp, true);
      await bounded(qmp.execute('migrate-incoming', { uri: `exec:cat ${shellQuote(s.state)}` }), hostMs('qmpAnswer'), 'QMP migrate-incoming');
    }
    await untilLoaded(qmp, deadline, vm);
    await bounded(qmp.execute('cont'), hostMs('qmpAnswer'), 'QMP cont');
    const cpuAtRunning = processCpuMs(vm.pid);
    const { ssh, cpuAtConnected } = await connectResumed(req, vm, port, 'after the restore');
    const ms = Date.now() - vm.startedAt;
    const restored = { snapshot: s.dir, ms, cpuAtRunning, cpuAtConnected };
    // On the file, no image to reset from: it stops when its guest ends.
    const warm: WarmQemu = { book, key, arch: req.arch.name, vm, qmp, port, snapshot: s, dir, guests: 1, resettable: !onFile };
    book.live++;
    return { vm, ssh, readyMs: ms, port, stalled: [], restored, ...warmLease(warm, ssh, 0, book) };
  } catch (e) {
    qmp?.close();
    await vm.stop();
    rmSync(dir, { recursive: true, force: true });
    if (vm.exit && portTaken(vm.exit.stderr)) throw infraError(`port ${port} was taken`);
    throw new AbortError(e as Error);
  } finally {
    rmSync(qmpSocket, { force: true });
  }
}

/**
 * The next guest of a paused QEMU: its console goes to this guest's log,
 * the snapshot's saved state is loaded back from its image (RAM, devices,
 * clocks: the guest is the snapshot's again, bit for bit; QEMU drops its
 * translated code with it), and it runs and answers SSH as a restored guest does.
 */
async function resetInPlace(req: FreshGuestRequest, w: WarmQemu, book: SnapshotBook): Promise<FreshGuest> {
  const started = Date.now();
  const cpu0 = processCpuMs(w.vm.pid) ?? 0;
  const before = w.vm.options.consoleLog;
  w.vm.nextGuest(req.consoleLog, `# klp-harness: QEMU pid ${w.vm.pid} reset in place (loadvm) to ${w.snapshot.image} for its guest ${w.guests + 1}; its guest before: ${before}; the boot's console: ${join(w.snapshot.dir, 'boot-console.log')}\n`, w.snapshot.meta.bootEvents);
  writeFileSync(commandFileOf(req), w.vm.command + '\n');
  await bounded(humanMonitor(w.qmp, `loadvm ${PRISTINE}`), timeout('guestCommand', req.arch), 'loadvm');
  await bounded(w.qmp.execute('cont'), hostMs('qmpAnswer'), 'QMP cont');
  const cpuAtRunning = (processCpuMs(w.vm.pid) ?? 0) - cpu0;
  // No timer proof: this QEMU's first guest, resumed from the same state, passed it; a load of
  // that state again restores the same timers (the proof was a fork and a sleep, 0.1-0.15 s of
  // QEMU CPU per guest).
  const { ssh, cpuAtConnected } = await connectResumed(req, w.vm, w.port, 'after a reset in place', false);
  w.guests++;
  const ms = Date.now() - started;
  req.logger.info(`reset ${req.arch.name}: QEMU pid ${w.vm.pid} reset in place for its guest ${w.guests} in ${(ms / 1000).toFixed(2)} s`);
  const restored = { snapshot: w.snapshot.dir, ms, cpuAtRunning, cpuAtConnected: (cpuAtConnected ?? 0) - cpu0, inPlace: { pid: w.vm.pid ?? 0, guest: w.guests } };
  return { vm: w.vm, ssh, readyMs: ms, port: w.port, stalled: [], restored, ...warmLease(w, ssh, cpu0, book) };
}

/** Why waiting on a restored guest is pointless: it panicked or QEMU is gone. */
function abortOf(vm: QemuVM, when: string): Promise<string> {
  return Promise.race([
    vm.fatal.then((ev) => `kernel ${ev.kind} ${when}: ${ev.line.trim()}`),
    vm.exited.then((x) => `QEMU exited (code ${x.code}, signal ${x.signal}) before SSH answered: ${x.stderr.trim().split('\n').slice(-1)[0] ?? ''}`),
  ]);
}

/** SSH to a guest resumed from a saved state, and proof that its timers run. */
async function connectResumed(req: FreshGuestRequest, vm: QemuVM, port: number, when: string, proveTimers = true): Promise<{ ssh: GuestShell; cpuAtConnected?: number }> {
  const commands = { commandMs: timeout('guestCommand', req.arch), copyMs: timeout('fileCopy', req.arch) };
  const ssh = await GuestShell.connect({ port, keys: req.keys, deadlineMs: timeout('restoreToSsh', req.arch), commands, abort: abortOf(vm, when) });
  const cpuAtConnected = processCpuMs(vm.pid);
  if (!proveTimers) return { ssh, cpuAtConnected };
  // A guest whose timers did not survive the restore answers SSH and then hangs in the first sleep.
  const timers = await ssh.exec('usleep 20000 && echo timers-ok', { timeoutMs: hostMs('restoredTimers') * req.arch.timeoutScale }).catch((e: Error) => ({ stdout: e.message }));
  if (!timers.stdout.includes('timers-ok')) {
    ssh.close();
    throw infraError(`the restored guest's timers do not fire (a 20 ms sleep did not end: ${timers.stdout.trim().split('\n')[0]})`);
  }
  return { ssh, cpuAtConnected };
}

/** The CPU record and the end of a guest that ends with its QEMU; `end` stops it and says the QEMU's CPU. */
function leaseOf(vm: QemuVM, cpu0: number, end: () => Promise<number | undefined>): Pick<FreshGuest, 'cpu' | typeof Symbol.asyncDispose> {
  const cpu: FreshGuest['cpu'] = { atReadyMs: (processCpuMs(vm.pid) ?? 0) - cpu0 };
  return {
    cpu,
    async [Symbol.asyncDispose]() {
      const used = await end();
      cpu.usedMs = used === undefined ? undefined : used - cpu0;
    },
  };
}

/** A booted guest with its CPU record, counted among the book's QEMUs until it stops. */
function withCpu(b: Booted, book: SnapshotBook): FreshGuest {
  const { vm, ssh } = b;
  book.live++;
  return { ...b, ...leaseOf(vm, 0, async () => (ssh.close(), await vm.stop(), book.live--, vm.cpuMs)) };
}

/** A guest that boots, once paused QEMUs made room for it. */
async function bootFresh(req: FreshGuestRequest, book: SnapshotBook): Promise<FreshGuest> {
  await book.makeRoom();
  return withCpu(await bootGuest(req), book);
}

/** A guest of a QEMU that is kept: at its end the QEMU pauses and waits for the next guest of its snapshot (or stops, if it cannot). */
function warmLease(w: WarmQemu, ssh: GuestShell, cpu0: number, book: SnapshotBook): Pick<FreshGuest, 'cpu' | typeof Symbol.asyncDispose> {
  return leaseOf(w.vm, cpu0, async () => {
    ssh.close();
    const used = processCpuMs(w.vm.pid);
    if (book.reuse && w.resettable && w.vm.running && !wasInterrupted()) {
      try {
        // A QEMU that does not answer (stopped from outside, hung) is not kept: it is stopped below.
        await bounded(w.qmp.execute('stop'), hostMs('qmpAnswer'), 'QMP stop');
        if (book.putIdle(w)) return used;
      } catch {
        // not reusable: stopped below
      }
    }
    await stopWarm(w);
    return w.vm.cpuMs ?? used;
  });
}

async function stopWarm(w: WarmQemu): Promise<void> {
  w.qmp.close();
  await w.vm.stop();
  w.book.live--;
  rmSync(w.dir, { recursive: true, force: true });
}

/** x-ignore-shared: a migration leaves out (saving) or expects no pages of (loading) RAM that is a shared file. */
async function ignoreSharedRam(qmp: QmpClient, on: boolean): Promise<void> {
  await bounded(qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: on }] }), hostMs('qmpAnswer'), 'QMP migrate-set-capabilities');
}

/** Writes a file's data to disk. */
function syncFile(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** A path as one word for the shell QEMU runs an exec: migration in. */
const shellQuote = (path: string) => `'${path.replace(/'/g, `'\\''`)}'`;

/** A human-monitor command (savevm and loadvm have no plain QMP form in QEMU 7.2); any text it prints is its error. */
async function humanMonitor(qmp: QmpClient, line: string): Promise<void> {
  const said = String((await qmp.execute('human-monitor-command', { 'command-line': line })) ?? '').trim();
  if (said) throw infraError(`QEMU '${line}': ${said}`);
}

/**
 * Waits until QEMU has loaded the state and waits, paused, for `cont`: an incoming migration ends in
 * 'paused' under -S (-loadvm, before QMP answers, in 'prelaunch'; both are taken).
 */
async function untilLoaded(qmp: QmpClient, deadlineMs: number, vm: QemuVM): Promise<void> {
  const want = ['prelaunch', 'paused'];
  const status = async () => ((await bounded(qmp.execute('query-status'), hostMs('qmpAnswer'), 'QMP query-status')) as { status: string }).status;
  const r = await pollUntil(status, (st) => want.includes(st) || !vm.running, { everyMs: hostMs('restorePoll'), deadlineMs });
  if (!vm.running) throw new HarnessError('boot', `${await abortOf(vm, 'during the restore')}`);
  if (!r.ok) throw infraError(`the guest was not paused (${want.join(' or ')}) ${deadlineMs / 1000} s after the restore began (QEMU status: ${r.last})`);
}
