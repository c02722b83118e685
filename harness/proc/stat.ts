// What the kernel says about processes, read in one place: /proc/<pid>/stat
// (state, parent, group, start time, CPU time), so that a pid reused by
// another process is never taken for the one the harness started.
import { readdirSync, readFileSync } from 'node:fs';

export interface ProcStat {
  pid: number;
  comm: string;
  state: string;
  ppid: number;
  pgrp: number;
  /** Clock ticks since boot: with the pid, names one process even after the pid is reused. */
  startTime: number;
  /** User plus system CPU time, in milliseconds. */
  cpuMs: number;
}

/**
 * The unit of /proc's times: USER_HZ, which the kernel's ABI fixes at 100 on
 * every arch this harness runs on (x86, powerpc, arm64), whatever CONFIG_HZ is.
 */
const USER_HZ = 100;

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
    // utime and stime: the 14th and 15th fields of the line, the 12th and 13th after the name.
    cpuMs: ((Number(fields[11]) + Number(fields[12])) * 1000) / USER_HZ,
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
