// Every child process the harness starts is registered here, so that an
// exit, an error or a signal (SIGINT, SIGTERM, SIGHUP, or the process that
// started us going away) ends each one's whole process group: no QEMU or
// make outlives the harness. When node itself dies, the guards in procs.ts
// take over.
import { HarnessError } from './errors.js';
import { dropRecord, procStat, recordGroupsIn, signalGroup, sweepStale, tellReaper, watchAncestors, writeRecord, type GroupRecord } from './procs.js';

interface Tracked {
  pid?: number;
  name: string;
  startTime?: number;
}

const live = new Set<Tracked>();
const cleanups = new Set<() => void>();
let installed = false;
let interruptedBy: string | undefined;
let watching = false;

/** After an interrupt: SIGTERM to every group at once, SIGKILL after this, exit 130 after EXIT_AFTER_MS at the latest. */
const KILL_AFTER_MS = 1500;
const EXIT_AFTER_MS = 3500;

/** Ends a child's process group; a stopped group is continued so that it can act on a SIGTERM. */
export function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (!pid) return;
  signalGroup(pid, signal);
  if (signal !== 'SIGKILL') signalGroup(pid, 'SIGCONT');
}

const records = (): GroupRecord[] =>
  [...live].flatMap((t) => (t.pid && t.startTime !== undefined ? [{ pid: t.pid, startTime: t.startTime, name: t.name }] : []));

/** Kills every tracked child group with SIGKILL and runs the cleanup hooks. Synchronous. */
export function killAll(): void {
  for (const t of live) killGroup(t.pid, 'SIGKILL');
  live.clear();
  writeRecord([]);
  for (const c of cleanups) {
    try {
      c();
    } catch {
      /* keep going */
    }
  }
  cleanups.clear();
}

/**
 * Stops the run as Ctrl-C does: every group gets SIGTERM now and SIGKILL
 * soon; the pipeline unwinds and writes its reports; if something still
 * holds it, the process exits 130 anyway (the exit hooks write the reports).
 */
export function interrupt(reason: string): void {
  install();
  if (interruptedBy) process.exit(130); // a second Ctrl-C ends at once
  interruptedBy = reason;
  process.stderr.write(`\nklp-harness: ${reason}: stopping ${live.size} child process group(s)\n`);
  for (const t of live) killGroup(t.pid, 'SIGTERM');
  setTimeout(() => {
    for (const t of live) killGroup(t.pid, 'SIGKILL');
  }, KILL_AFTER_MS).unref();
  setTimeout(() => process.exit(130), EXIT_AFTER_MS).unref();
}

function install() {
  if (installed) return;
  installed = true;
  process.on('exit', () => {
    killAll();
    dropRecord();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => interrupt(sig));
}

/** Registers a child (started with detached: true, so it leads its own group) and returns the function that forgets it. */
export function track(child: { pid?: number }, name: string): () => void {
  install();
  const t: Tracked = { pid: child.pid, name, startTime: child.pid ? procStat(child.pid)?.startTime : undefined };
  live.add(t);
  if (t.pid) tellReaper('+', t.pid);
  writeRecord(records());
  // A signal that came while this child was being started must end it too.
  if (interruptedBy) killGroup(t.pid, 'SIGTERM');
  return () => {
    if (!live.delete(t)) return;
    if (t.pid) tellReaper('-', t.pid);
    writeRecord(records());
  };
}

/**
 * For a run or an interactive session: kills what runs that died left
 * behind, records this run's groups under the cache, and treats the end of
 * the process that started us (npm, a shell, a CI step) as a SIGTERM.
 * Returns a line for the log per swept run.
 */
export function guardRun(cacheDir: string): string[] {
  install();
  const swept = sweepStale(cacheDir);
  recordGroupsIn(cacheDir, records);
  if (!watching) watchAncestors((who) => interrupt(`the process that started klp-harness (pid ${who.pid}) is gone`));
  watching = true;
  return swept.map(
    (s) => `cleanup: harness pid ${s.harnessPid} is gone; killed ${s.killed.length} process group(s) it left: ${s.killed.map((g) => `${g.name} (pgid ${g.pid})`).join(', ') || 'none'}`,
  );
}

/** Registers a synchronous cleanup (temp files, the reports of an interrupted run) run on exit or signal. */
export function onCleanup(fn: () => void): () => void {
  install();
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}

export const wasInterrupted = () => interruptedBy !== undefined;
/** The signal (or event) that interrupted the run, if any. */
export const interruptReason = () => interruptedBy;
export const liveChildren = () => [...live].map((t) => ({ pid: t.pid, name: t.name }));

/** Throws the 'interrupted' error once a signal has stopped the run: a stage boundary calls this before starting work. */
export function checkInterrupted(): void {
  if (wasInterrupted()) throw new HarnessError('interrupted', 'interrupted by a signal');
}
