// Supervises one QEMU process: own process group, console kept in a file
// (up to a size) and a ring buffer, fatal console lines reported at once,
// stopped with SIGTERM then SIGKILL to the whole group. The only code that
// starts QEMU. A guest that floods its console costs bounded memory and disk.
import { createWriteStream, openSync, type WriteStream } from 'node:fs';
import type { ArchRecord } from '../core/arch.js';
import { classifyLine, cleanConsoleLine, isFatal, RingBuffer, type ConsoleEvent } from './console.js';
import { formatCommand } from '../proc/exec.js';
import { spawnGroup, type ProcessGroup } from '../proc/group.js';
import { hostMs } from '../core/timeouts.js';
import { procStat } from '../proc/stat.js';

export interface QemuOptions {
  arch: ArchRecord;
  kernel: string;
  initrd: string;
  sshPort: number;
  consoleLog: string;
  cpu?: string;
  smp?: number;
  extraAppend?: string[];
  accel?: 'kvm' | 'tcg';
  /** Called with each console line (--verbose streams them). */
  onConsoleLine?: (line: string) => void;
  /** Replaces the QEMU binary (tests use a fake script; a backported QEMU from the cache). */
  binary?: string;
  /** Put first on the command line: where this QEMU's firmware is (-L DIR). */
  dataArgs?: string[];
  /** Added to QEMU's environment (a QEMU from the cache: QEMU_MODULE_DIR, so it never loads the host's modules). */
  env?: Record<string, string>;
  /** A QMP socket to create (saving a snapshot drives QEMU through it). */
  qmpSocket?: string;
  /**
   * Start from the state saved under this name in vmstateImage (`-loadvm`)
   * instead of booting: no kernel, initrd or command line is given (the
   * state replaces the guest's memory whole; on pseries loading the kernel
   * only to overwrite it cost 0.2-0.3 s of CPU per restore).
   */
  loadvm?: string;
  /**
   * Start waiting for a saved state to be sent over QMP (`-incoming defer`,
   * then migrate-incoming) instead of booting; as with loadvm, no kernel,
   * initrd or command line is given.
   */
  incoming?: boolean;
  /**
   * The guest's RAM as a named memory backend (a state saved with it loads
   * only where it has the same name): anonymous memory, as QEMU's default RAM,
   * or a file (memory-backend-file). Shared, the guest writes into the file (a
   * snapshot's boot: the file is its RAM when it stops); private, the guest
   * starts on the file's pages and its writes go to copies of its own (a
   * restore: pages it only reads are the page cache's, shared by every QEMU of
   * the snapshot).
   */
  ram?: { file?: string; shared?: boolean };
  /** Start with the guest paused (-S): QEMU waits for `cont`. */
  paused?: boolean;
  /** A qcow2 image (a drive no device uses) holding the saved state a guest starts from and is reset to (`loadvm`). */
  vmstateImage?: string;
  /** The console log stops growing here (default CONSOLE_LOG_MAX_BYTES); the ring buffer and the panic watch go on. */
  consoleLogMaxBytes?: number;
}

/** Bounds on what one guest can make the harness hold. */
export const CONSOLE_LOG_MAX_BYTES = 64 * 1024 * 1024;
/** A console "line" longer than this (a flood without newlines) is cut into pieces this long. */
export const CONSOLE_LINE_MAX_CHARS = 16 * 1024;
/** Console reports (WARN, BUG...) kept per boot. */
const MAX_EVENTS = 500;
/** QEMU's own stderr: the last this many characters are kept. */
const STDERR_MAX_CHARS = 64 * 1024;

/** The id of the guest's RAM when it is a file (QEMU names the RAM block after it: a state saved with it loads only with it). */
const RAM_BACKEND = 'klp-ram';

function ramBackend(ram: NonNullable<QemuOptions['ram']>, mib: number): string {
  if (!ram.file) return `memory-backend-ram,id=${RAM_BACKEND},size=${mib}M`;
  return `memory-backend-file,id=${RAM_BACKEND},size=${mib}M,mem-path=${ram.file.replace(/,/g, ',,')},share=${ram.shared ? 'on' : 'off'}`;
}

/** The QEMU argv for a boot or a restore (loadvm), from the arch record alone. */
export function qemuArgs(o: QemuOptions): string[] {
  const q = o.arch.qemu;
  const accel = o.accel ?? 'tcg';
  // trust_cpu: seed the crng from the CPU (RDRAND under TCG) so the SSH server does not wait for entropy.
  // norandmaps: user space at the same addresses in every process. QEMU keys the code it translated by
  // virtual address too, so a dynamic program (bash, kmod, coreutils: the selftests start hundreds) mapped
  // at random addresses had its loader and libc translated anew on each start: 60-120 ms of QEMU CPU
  // each, against 20-40 ms at fixed addresses (scripts/profile-guest.ts). The kernel's own layout is untouched.
  const append = [`console=${q.console}`, 'panic=-1', 'printk.time=1', 'random.trust_cpu=on', 'norandmaps', ...(o.extraAppend ?? [])];
  return [
    ...(o.dataArgs ?? []),
    ...q.machineArgs,
    '-accel', accel,
    '-cpu', accel === 'kvm' ? 'host' : (o.cpu ?? q.cpuModels[0]!),
    '-smp', String(o.smp ?? 2),
    '-m', String(q.memoryMiB),
    ...(o.ram ? ['-object', ramBackend(o.ram, q.memoryMiB), '-machine', `memory-backend=${RAM_BACKEND}`] : []),
    '-display', 'none',
    '-monitor', 'none',
    '-serial', 'stdio',
    '-no-reboot',
    ...(o.loadvm || o.incoming ? [] : ['-kernel', o.kernel, '-initrd', o.initrd, '-append', append.join(' ')]),
    // restrict=on: the guest reaches nothing outside (no host loopback services); the forward still comes in.
    '-netdev', `user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:${o.sshPort}-:22`,
    '-device', 'virtio-net-pci,netdev=n0',
    '-device', 'virtio-rng-pci',
    ...(o.qmpSocket ? ['-qmp', `unix:${o.qmpSocket},server=on,wait=off`] : []),
    ...(o.paused ? ['-S'] : []),
    // cache=unsafe: QEMU skips the flushes savevm and loadvm ask for (a scratch copy, or an entry not yet marked made).
    ...(o.vmstateImage ? ['-drive', `if=none,id=klp-vmstate,format=qcow2,cache=unsafe,file=${o.vmstateImage.replace(/,/g, ',,')}`] : []),
    // The same loadvm a reset in place does, at start-up: the command line is the whole restore.
    ...(o.loadvm ? ['-loadvm', o.loadvm] : []),
    ...(o.incoming ? ['-incoming', 'defer'] : []),
  ];
}

/** The command line as a person would type it. */
export const qemuCommandText = (binary: string, o: QemuOptions, args = qemuArgs(o)) => formatCommand(binary, args);

/** A console line cut into pieces of at most CONSOLE_LINE_MAX_CHARS. */
function piecesOf(line: string): string[] {
  if (line.length <= CONSOLE_LINE_MAX_CHARS) return [line];
  const out: string[] = [];
  for (let i = 0; i < line.length; i += CONSOLE_LINE_MAX_CHARS) out.push(line.slice(i, i + CONSOLE_LINE_MAX_CHARS));
  return out;
}

/** utime + stime of a live process from /proc (undefined where there is none). */
export const processCpuMs = (pid: number | undefined): number | undefined => (pid ? procStat(pid)?.cpuMs : undefined);

export type VmExit = { code: number | null; signal: NodeJS.Signals | null; stderr: string };

/**
 * A console log opened for appending before anything is written: the file is
 * there as soon as the VM exists (a person can tail it, a test can read it
 * after the exit), and a path that cannot be written throws here, not later
 * as a stream error.
 */
function openLog(path: string): WriteStream {
  return createWriteStream(path, { fd: openSync(path, 'a') });
}

export class QemuVM {
  readonly command: string;
  readonly startedAt = Date.now();
  /** When the console last printed a line (the boot watchdog's clock). */
  lastLineAt = Date.now();
  /** The console, its kernel reports and its first fatal line are the current guest's: a reset in place starts them anew (`nextGuest`). */
  console = new RingBuffer(120);
  events: ConsoleEvent[] = [];
  /** Resolves when QEMU exits, for whatever reason. */
  readonly exited: Promise<VmExit>;
  /** Resolves with the first fatal console event (panic). */
  fatal!: Promise<ConsoleEvent>;
  private resolveFatal!: (e: ConsoleEvent) => void;
  private group: ProcessGroup;
  private log: WriteStream;
  private stderr = '';
  private exitInfo?: VmExit;
  private lineWaiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  /** Bytes written to the console log so far. */
  private logBytes = 0;

  constructor(public options: QemuOptions) {
    const binary = options.binary ?? options.arch.qemu.binary;
    const args = qemuArgs(options);
    this.command = qemuCommandText(binary, options, args);
    this.log = openLog(options.consoleLog);
    this.log.write(`# ${this.command}\n`);
    const toLog = (chunk: Buffer | string) => {
      const logMax = this.options.consoleLogMaxBytes ?? CONSOLE_LOG_MAX_BYTES;
      if (this.logBytes >= logMax) return;
      const room = logMax - this.logBytes;
      const piece = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      this.log.write(piece.length <= room ? piece : piece.subarray(0, room));
      this.logBytes += Math.min(piece.length, room);
      if (this.logBytes >= logMax) this.log.write(`\n# klp-harness: console log stopped at ${logMax} bytes; the rest was only watched for panics\n`);
    };
    // The kernel kills QEMU if node dies (setpriv --pdeathsig); its own group lets us end it whole.
    const env = options.env ? { ...process.env, ...options.env } : undefined;
    const { child, group } = spawnGroup(binary, args, { name: binary, spawn: { stdio: ['ignore', 'pipe', 'pipe'], env } });
    this.group = group;
    this.fatal = new Promise((r) => (this.resolveFatal = r));
    let partial = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      toLog(chunk);
      const text = partial + chunk.toString('utf8');
      // Output without newlines would otherwise grow one string without end: long lines come in pieces.
      const lines = text.split('\n').flatMap(piecesOf);
      partial = lines.pop() ?? ''; // the unfinished line (empty after a newline)
      for (const raw of lines) {
        const line = cleanConsoleLine(raw);
        this.lastLineAt = Date.now();
        this.console.push(line);
        this.seen(line);
        options.onConsoleLine?.(line);
        const ev = classifyLine(line);
        if (ev) {
          // A guest printing WARNs in a loop: the first ones tell the story.
          if (this.events.length < MAX_EVENTS) this.events.push(ev);
          if (isFatal(ev)) this.resolveFatal(ev);
        }
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString('utf8')).slice(-STDERR_MAX_CHARS);
      toLog(`# qemu stderr: ${chunk.toString('utf8')}`);
    });
    child.on('error', (e) => (this.stderr += String(e.message)));
    this.exited = group.exited.then(({ code, signal }) => {
      this.exitInfo ??= { code, signal, stderr: this.stderr };
      this.log.end();
      return this.exitInfo;
    });
  }

  get pid() {
    return this.group.pid;
  }
  get running() {
    return this.exitInfo === undefined;
  }
  get exit() {
    return this.exitInfo;
  }

  /** Patterns waited for that have been seen, with their first matching line. */
  private matched = new Map<RegExp, string>();

  /** Resolves the waiters a line satisfies and remembers it for later waits on the same pattern. */
  private seen(line: string) {
    this.lineWaiters = this.lineWaiters.filter((w) => {
      if (!w.re.test(line)) return true;
      this.matched.set(w.re, line);
      w.resolve(line);
      return false;
    });
  }

  /**
   * Waits for a console line matching re. Lines from before the call are
   * looked for in the ring buffer only: the console is not kept in memory
   * whole (callers ask early, as boot does for the ready line).
   */
  waitForLine(re: RegExp): Promise<string> {
    const hit = this.matched.get(re) ?? this.console.last().find((l) => re.test(l));
    if (hit) return Promise.resolve(hit);
    return new Promise((resolve) => this.lineWaiters.push({ re, resolve }));
  }

  /**
   * The same QEMU serves another guest (reset in place): from here on its
   * console goes to consoleLog, and the console buffer, the kernel reports,
   * the fatal watch and the lines waited for are the new guest's.
   */
  nextGuest(consoleLog: string, header: string, events: readonly ConsoleEvent[]): void {
    this.log.end();
    this.options = { ...this.options, consoleLog };
    this.log = openLog(consoleLog);
    this.log.write(header);
    this.logBytes = 0;
    this.console = new RingBuffer(120);
    this.events = [...events];
    this.fatal = new Promise((r) => (this.resolveFatal = r));
    this.matched.clear();
    this.lineWaiters = [];
    this.lastLineAt = Date.now();
  }

  /** CPU time QEMU used (user + system, all its threads), read when it was stopped. */
  cpuMs?: number;

  /** Stops QEMU: SIGTERM to its group (continued if it was stopped), SIGKILL after graceMs. */
  async stop(graceMs = hostMs('vmStopGrace')): Promise<VmExit> {
    if (this.running) this.cpuMs ??= processCpuMs(this.pid);
    await this.group.stop(graceMs);
    return this.exited;
  }
}
