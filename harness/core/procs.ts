// What the kernel says about processes (/proc), and the three guards that
// keep a QEMU or make from outliving the harness when node itself dies
// (SIGKILL, out of memory, a crash), where no exit handler runs:
// - each child is started under `setpriv --pdeathsig KILL`, so the kernel
//   kills it the moment node dies;
// - a reaper, a small shell outside node's session, holds the list of child
//   process groups and kills them when its pipe from node closes, which is
//   what node's death looks like to it (pdeathsig reaches only the child
//   itself, not the compilers a make started);
// - every run records its groups under <cache>/procs/, and a run starting
//   later kills the groups of runs that are gone (the reaper may die too).
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';

export interface ProcStat {
  pid: number;
  comm: string;
  state: string;
  ppid: number;
  pgrp: number;
  /** Clock ticks since boot: with the pid, names one process even after the pid is reused. */
  startTime: number;
}

/** /proc/<pid>/stat, or undefined when there is no such process (or only its zombie). */
export function procStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // comm may hold spaces and parentheses: the fields after it start after the last ')'.
  const close = text.lastIndexOf(')');
  const fields = text.slice(close + 2).split(' ');
  const stat = {
    pid,
    comm: text.slice(text.indexOf('(') + 1, close),
    state: fields[0] ?? '?',
    ppid: Number(fields[1]),
    pgrp: Number(fields[2]),
    startTime: Number(fields[19]),
  };
  return stat.state === 'Z' || stat.state === 'X' ? undefined : stat;
}

/** A process named by pid and start time, so that a reused pid is not taken for it. */
export interface ProcId {
  pid: number;
  startTime: number;
}

export const procId = (pid: number): ProcId | undefined => {
  const s = procStat(pid);
  return s && { pid, startTime: s.startTime };
};

export const isRunning = (p: ProcId) => procStat(p.pid)?.startTime === p.startTime;

/** Sends a signal to a process group, or to the pid alone when it leads no group. */
export function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    try {
      process.kill(pgid, signal);
    } catch {
      /* already gone */
    }
  }
}

/** Pids of the live members of a process group. */
export function groupMembers(pgid: number): ProcStat[] {
  const out: ProcStat[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = procStat(Number(name));
    if (s?.pgrp === pgid) out.push(s);
  }
  return out;
}

/**
 * Whether a recorded group (its leader's pid and start time) still runs. A
 * pid that leads or names a live group is never handed out again, so members
 * of a group whose leader is gone are still that group's, provided they
 * started after the leader did.
 */
export function groupStillRuns(g: ProcId): boolean {
  const leader = procStat(g.pid);
  if (leader) return leader.startTime === g.startTime && leader.pgrp === g.pid;
  return groupMembers(g.pid).some((m) => m.startTime >= g.startTime);
}

/** The executable file a command name finds in PATH (or in pathVar), if any. */
export function findOnPath(tool: string, pathVar = process.env.PATH ?? ''): string | undefined {
  for (const dir of pathVar.split(delimiter)) {
    const file = join(dir || '.', tool);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      /* next */
    }
  }
  return undefined;
}

let setpriv: string | null | undefined;

/**
 * The argv that starts file under `setpriv --pdeathsig KILL` (util-linux):
 * setpriv sets the signal and execs the program, so the pid is the program's.
 * Without setpriv the program runs as it is (the reaper and the sweep remain).
 */
export function withDeathSignal(file: string, args: readonly string[]): { file: string; args: string[] } {
  if (setpriv === undefined) setpriv = process.env.KLP_HARNESS_NO_PDEATHSIG ? null : (findOnPath('setpriv') ?? null);
  return setpriv ? { file: setpriv, args: ['--pdeathsig', 'KILL', '--', file, ...args] } : { file, args: [...args] };
}

/** setpriv's own words when it could not start the program (then the program is missing). */
export const setprivMissing = (output: string) => /setpriv: failed to execute/.test(output);

// The reaper reads "+ PGID" and "- PGID" lines; at end of input it kills
// the groups still listed. Builtins only: it must not need PATH or forks.
const REAPER = `set -f; g=' '
while read -r op id; do
  case $op in
    +) g="$g$id " ;;
    -) case $g in *" $id "*) g="\${g%% $id *} \${g#* $id }" ;; esac ;;
  esac
done
for id in $g; do kill -s KILL -- "-$id" 2>/dev/null; done`;

let reaper: ChildProcess | undefined;

/** Tells the reaper (started on first use) about a child group: '+' started, '-' ended. */
export function tellReaper(op: '+' | '-', pgid: number): void {
  if (!reaper) {
    // Its own session: a kill of node's process group does not take it along.
    reaper = spawn('/bin/sh', ['-c', REAPER], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] });
    reaper.on('error', () => {});
    reaper.stdin!.on('error', () => {});
    reaper.unref();
    (reaper.stdin as unknown as { unref?: () => void }).unref?.();
  }
  reaper.stdin!.write(`${op} ${pgid}\n`);
}

export interface GroupRecord extends ProcId {
  name: string;
}

interface RecordFile {
  harness: ProcId;
  groups: GroupRecord[];
}

let recordPath: string | undefined;

/** Starts recording this run's child groups in <cache>/procs/<pid>.json (see sweepStale). */
export function recordGroupsIn(cacheDir: string, groups: () => GroupRecord[]): void {
  const dir = join(cacheDir, 'procs');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${process.pid}.json`);
  // A second run in one process (tests) on another cache: the first record goes.
  if (recordPath && recordPath !== path) rmSync(recordPath, { force: true });
  recordPath = path;
  writeRecord(groups());
}

/** Rewrites the record (atomically: a crash mid-write leaves the previous one). */
export function writeRecord(groups: GroupRecord[]): void {
  if (!recordPath) return;
  const me = procId(process.pid);
  if (!me) return;
  const body: RecordFile = { harness: me, groups };
  try {
    writeFileSync(`${recordPath}.tmp`, JSON.stringify(body) + '\n');
    renameSync(`${recordPath}.tmp`, recordPath);
  } catch {
    /* the cache went away: the other two guards remain */
  }
}

/** Removes this run's record (a clean exit). */
export function dropRecord(): void {
  if (recordPath) rmSync(recordPath, { force: true });
}

/**
 * Kills the groups recorded by runs whose harness process is gone and
 * removes their records. Returns what it killed, for the log.
 */
export function sweepStale(cacheDir: string): { harnessPid: number; killed: GroupRecord[] }[] {
  const dir = join(cacheDir, 'procs');
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => /^\d+\.json$/.test(n));
  } catch {
    return [];
  }
  const swept: { harnessPid: number; killed: GroupRecord[] }[] = [];
  for (const name of names) {
    const path = join(dir, name);
    let rec: RecordFile;
    try {
      rec = JSON.parse(readFileSync(path, 'utf8')) as RecordFile;
    } catch {
      rmSync(path, { force: true });
      continue;
    }
    if (rec.harness.pid === process.pid || isRunning(rec.harness)) continue;
    const killed = rec.groups.filter(groupStillRuns);
    for (const g of killed) signalGroup(g.pid, 'SIGKILL');
    rmSync(path, { force: true });
    swept.push({ harnessPid: rec.harness.pid, killed });
  }
  return swept;
}

/**
 * The processes whose end means nobody waits for this run any more: the
 * parent, and when npm started us through a shell (`npm exec` -> sh -> node)
 * npm itself, since the shell outlives npm.
 */
export function watchedAncestors(): ProcId[] {
  const parent = procStat(process.ppid);
  if (!parent) return [];
  const out: ProcId[] = [{ pid: parent.pid, startTime: parent.startTime }];
  if (process.env.npm_lifecycle_event !== undefined && /^(sh|dash|bash)$/.test(parent.comm)) {
    const npm = procId(parent.ppid);
    if (npm && npm.pid > 1) out.push(npm);
  }
  return out;
}

/** Calls onGone once (and stops) when any watched ancestor ends; polled, never holds the event loop. */
export function watchAncestors(onGone: (who: ProcId) => void, everyMs = 500): () => void {
  const watched = watchedAncestors();
  const timer = setInterval(() => {
    const gone = watched.find((p) => !isRunning(p));
    if (!gone) return;
    clearInterval(timer);
    onGone(gone);
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
