// Reading the kernel console: which lines mean the kernel under test died,
// and which are reports (WARN, BUG, lockdep, RCU stall) a scenario must not see.

export type ConsoleEventKind = 'panic' | 'oops' | 'bug' | 'warning' | 'lockdep' | 'rcu-stall' | 'hung-task' | 'restart';

export interface ConsoleEvent {
  kind: ConsoleEventKind;
  line: string;
}

/** The kernel's RCU stall report (also a boot stall when it comes before SSH: see vm/boot.ts). */
export const RCU_STALL_LINE = /rcu_(sched|preempt)? ?detected stalls|rcu: INFO: .*detected stalls/;

const PATTERNS: [ConsoleEventKind, RegExp][] = [
  ['panic', /Kernel panic - not syncing/],
  ['oops', /\bOops\b|Unable to handle kernel|BUG: unable to handle|general protection fault/],
  ['bug', /\bBUG: |kernel BUG at/],
  ['warning', /WARNING: .* at |------------\[ cut here \]------------/],
  ['lockdep', /possible circular locking|possible recursive locking|inconsistent lock state|WARNING: suspicious RCU usage/],
  ['rcu-stall', RCU_STALL_LINE],
  ['hung-task', /INFO: task .* blocked for more than/],
  // guest/modules/restart-canary.c: a system call restarted after a fake signal came back wrong.
  ['restart', /restart-canary: \S+ via \S+ returned/],
];

/** Classifies one console line; undefined for an ordinary line. */
export function classifyLine(line: string): ConsoleEvent | undefined {
  for (const [kind, re] of PATTERNS) if (re.test(line)) return { kind, line };
  return undefined;
}

/**
 * Kinds after which the kernel cannot be trusted to go on: the guest's
 * commands stop at once with the console line. A panic, and an oops: it
 * killed the task it hit, often holding locks, and what waits on that task
 * would otherwise hang until a deadline (7.2's test-ftrace.sh waited 600 s);
 * and a BUG() ("kernel BUG at"), not a "BUG: sleeping function ..." report.
 */
export const isFatal = (e: ConsoleEvent) => e.kind === 'panic' || e.kind === 'oops' || (e.kind === 'bug' && /kernel BUG at/.test(e.line));

/** Every report in a console text or dmesg. */
export function scanConsole(text: string): ConsoleEvent[] {
  return text.split('\n').flatMap((l) => classifyLine(l) ?? []);
}

/** Keeps the last n lines of a stream, for error reports. */
export class RingBuffer {
  private lines: string[] = [];
  constructor(private readonly size = 80) {}
  push(line: string) {
    this.lines.push(line);
    if (this.lines.length > this.size) this.lines.shift();
  }
  last(n = this.size): string[] {
    return this.lines.slice(-n);
  }
}

/** Removes ANSI escapes and carriage returns that firmware and the kernel print. */
export const cleanConsoleLine = (s: string) =>
  // eslint-disable-next-line no-control-regex
  s.replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r/g, '');
