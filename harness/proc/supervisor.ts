// Every child process the harness starts is registered with the process's
// supervisor, so that an exit, an error or a signal (SIGINT, SIGTERM,
// SIGHUP, or the process that started us going away) ends each one's whole
// process group: no QEMU or make outlives the harness. When node itself
// dies, the guards (guards.ts, records.ts) take over.
//
// Signals, exit hooks, the reaper and the cache locks held belong to the
// process, not to a run:
// the one Supervisor below is the only process-wide state of the harness,
// and everything it holds is in its fields.
import { HarnessError } from '../core/errors.js';
import { hostMs } from '../core/timeouts.js';
import { LockHolds } from '../core/lock-holds.js';
import { Reaper } from './guards.js';
import { RunRecord, sweepStale, type GroupRecord } from './records.js';
import { procStat, signalGroup, watchAncestors } from './stat.js';

interface Tracked {
  pid?: number;
  name: string;
  startTime?: number;
}

/** Ends a child's process group; a stopped group is continued so that it can act on a SIGTERM. */
export function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (!pid) return;
  signalGroup(pid, signal);
  if (signal !== 'SIGKILL') signalGroup(pid, 'SIGCONT');
}

export class Supervisor {
  private readonly live = new Set<Tracked>();
  private readonly cleanups = new Set<() => void>();
  private readonly reaper = new Reaper();
  private readonly record = new RunRecord();
  /** The cache locks this process holds (core/lock.ts): a flock lasts as long as its process. */
  readonly locks = new LockHolds();
  private installed = false;
  private watching = false;
  private interruptedBy?: string;

  private records(): GroupRecord[] {
    return [...this.live].flatMap((t) => (t.pid && t.startTime !== undefined ? [{ pid: t.pid, startTime: t.startTime, name: t.name }] : []));
  }

  /** Kills every tracked child group with SIGKILL and runs the cleanup hooks. Synchronous. */
  killAll(): void {
    for (const t of this.live) killGroup(t.pid, 'SIGKILL');
    this.live.clear();
    this.record.write([]);
    for (const c of this.cleanups) {
      try {
        c();
      } catch {
        /* keep going */
      }
    }
    this.cleanups.clear();
  }

  /**
   * Stops the run as Ctrl-C does: every group gets SIGTERM now and SIGKILL
   * soon; the pipeline unwinds and writes its reports; if something still
   * holds it, the process exits 130 anyway (the exit hooks write the reports).
   */
  interrupt(reason: string): void {
    this.install();
    if (this.interruptedBy) process.exit(130); // a second Ctrl-C ends at once
    this.interruptedBy = reason;
    process.stderr.write(`\nklp-harness: ${reason}: stopping ${this.live.size} child process group(s)\n`);
    for (const t of this.live) killGroup(t.pid, 'SIGTERM');
    setTimeout(() => {
      for (const t of this.live) killGroup(t.pid, 'SIGKILL');
    }, hostMs('interruptKill')).unref();
    setTimeout(() => process.exit(130), hostMs('interruptExit')).unref();
  }

  private install() {
    if (this.installed) return;
    this.installed = true;
    process.on('exit', () => {
      this.killAll();
      this.record.drop();
    });
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => this.interrupt(sig));
  }

  /** Makes ready to track a child about to be spawned: the exit hooks and the reaper run before the child does. */
  prepare(): void {
    this.install();
    this.reaper.start();
  }

  /** Registers a child (started with detached: true, so it leads its own group) and returns the function that forgets it. */
  track(child: { pid?: number }, name: string): () => void {
    this.install();
    const t: Tracked = { pid: child.pid, name, startTime: child.pid ? procStat(child.pid)?.startTime : undefined };
    this.live.add(t);
    if (t.pid) this.reaper.tell('+', t.pid);
    this.record.write(this.records());
    // A signal that came while this child was being started must end it too.
    if (this.interruptedBy) killGroup(t.pid, 'SIGTERM');
    return () => {
      if (!this.live.delete(t)) return;
      if (t.pid) this.reaper.tell('-', t.pid);
      this.record.write(this.records());
    };
  }

  /**
   * For a run or an interactive session: kills what runs that died left
   * behind, records this run's groups under the cache, and treats the end of
   * the process that started us (npm, a shell, a CI step) as a SIGTERM.
   * Returns a line for the log per swept run.
   */
  guardRun(cacheDir: string): string[] {
    this.install();
    const swept = sweepStale(cacheDir);
    this.record.recordIn(cacheDir, this.records());
    if (!this.watching) watchAncestors((who) => this.interrupt(`the process that started klp-harness (pid ${who.pid}) is gone`));
    this.watching = true;
    return swept.map(
      (s) => `cleanup: harness pid ${s.harnessPid} is gone; killed ${s.killed.length} process group(s) it left: ${s.killed.map((g) => `${g.name} (pgid ${g.pid})`).join(', ') || 'none'}`,
    );
  }

  /** Registers a synchronous cleanup (temp files, the reports of an interrupted run) run on exit or signal. */
  onCleanup(fn: () => void): () => void {
    this.install();
    this.cleanups.add(fn);
    return () => this.cleanups.delete(fn);
  }

  /** The signal (or event) that interrupted the run, if any. */
  get interruptReason(): string | undefined {
    return this.interruptedBy;
  }

  liveChildren(): { pid?: number; name: string }[] {
    return [...this.live].map((t) => ({ pid: t.pid, name: t.name }));
  }
}

/** The process's supervisor. */
export const supervisor = new Supervisor();

export const prepareSpawn = () => supervisor.prepare();
export const track = (child: { pid?: number }, name: string) => supervisor.track(child, name);
export const killAll = () => supervisor.killAll();
export const interrupt = (reason: string) => supervisor.interrupt(reason);
export const guardRun = (cacheDir: string) => supervisor.guardRun(cacheDir);
export const onCleanup = (fn: () => void) => supervisor.onCleanup(fn);
export const liveChildren = () => supervisor.liveChildren();
export const wasInterrupted = () => supervisor.interruptReason !== undefined;
export const interruptReason = () => supervisor.interruptReason;

/** Throws the 'interrupted' error once a signal has stopped the run: a stage boundary calls this before starting work. */
export function checkInterrupted(): void {
  if (wasInterrupted()) throw new HarnessError('interrupted', 'interrupted by a signal');
}
