// What restart-canary's `rounds` mode prints (guest/modules/restart-canary.c),
// and what each line must say on a kernel that restarts system calls right.
// Kept apart from the scenario so that recorded lines can be judged without a guest.

/** One sleep of the canary: how it ended, how long it took, how often it slept. */
export interface CanaryRound {
  n: number;
  call: string;
  /** The entry instruction: syscall, sc or scv. */
  mode: string;
  /** uring:MS or external. */
  wake: string;
  result: number;
  elapsedMs: number;
  asked: number;
  /** Voluntary context switches during the call: 1 for an undisturbed sleep, 2 or more once woken and restarted. */
  sleeps: number;
  /** uring only: completions reaped after the round and the last one's result. */
  completions?: number;
  completionRes?: number;
  line: string;
}

const ROUND = /restart-canary: round (\d+): (\w+) via (\w+) \(wake (\S+)\): returned (-?\d+) after (-?\d+) ms of (\d+) ms, (-?\d+) sleeps(?:, (-?\d+) (?:timer completions|\(io_uring_enter failed,) \(?res (-?\d+)\))?/;

/** Every round line in a text (the canary's output file, or console lines), in order. */
export function parseRounds(text: string): CanaryRound[] {
  return text.split('\n').flatMap((line) => {
    const m = ROUND.exec(line);
    if (!m) return [];
    const [, n, call, mode, wake, result, elapsed, asked, sleeps, completions, res] = m;
    return [
      {
        n: Number(n),
        call: call!,
        mode: mode!,
        wake: wake!,
        result: Number(result),
        elapsedMs: Number(elapsed),
        asked: Number(asked),
        sleeps: Number(sleeps),
        completions: completions === undefined ? undefined : Number(completions),
        completionRes: res === undefined ? undefined : Number(res),
        line: line.slice(line.indexOf('restart-canary:')),
      },
    ];
  });
}

/** errno names of the returns a wrong restart gives (asm-generic numbers, the same on x86_64 and powerpc). */
const ERRNO: Record<number, string> = { 4: 'EINTR', 14: 'EFAULT', 22: 'EINVAL', 62: 'ETIME', 512: 'ERESTARTSYS', 514: 'ERESTARTNOHAND', 516: 'ERESTART_RESTARTBLOCK' };
const withName = (r: number) => (r < 0 && ERRNO[-r] ? `${r} (${ERRNO[-r]})` : String(r));

/** A check the scenario records: what, expected, actual. */
export interface RoundCheck {
  what: string;
  expected: string;
  actual: string;
}

const ETIME = -62;

/**
 * What one round must show: the sleep came back 0 after its whole time
 * (not -EINTR or -EINVAL from a restart that went wrong, and not early,
 * which is a stale restart block run by restart_syscall()), and it was
 * woken mid-way and slept again (else the round proves nothing); for an
 * io_uring wake, the timeout completed (-ETIME) once.
 */
export function roundChecks(r: CanaryRound): RoundCheck[] {
  const title = `round ${r.n}: ${r.call} via ${r.mode}, woken by ${r.wake.startsWith('uring:') ? `io_uring task work after ${r.wake.slice(6)} ms` : "livepatch's fake signal"}`;
  const want = `returned 0 after >= ${r.asked} ms, woken and slept again (>= 2 sleeps)`;
  // The canary's clock is read in whole ms around the call: a sleep of exactly its time may show 1 ms less.
  const full = r.elapsedMs >= r.asked - 1;
  const good = r.result === 0 && full && r.sleeps >= 2;
  const why = r.result === 0 && !full ? ` (${r.asked - r.elapsedMs} ms early)` : r.result === 0 && r.sleeps < 2 ? ' (never woken: this round proves nothing)' : '';
  const checks: RoundCheck[] = [{ what: title, expected: want, actual: good ? want : `returned ${withName(r.result)} after ${r.elapsedMs} ms of ${r.asked} ms, ${r.sleeps} sleeps${why}` }];
  if (r.wake.startsWith('uring:')) {
    const done = r.completions === 1 && r.completionRes === ETIME;
    checks.push({
      what: `round ${r.n}: io_uring timeout completions (result)`,
      expected: `1 (${withName(ETIME)})`,
      actual: done ? `1 (${withName(ETIME)})` : `${r.completions ?? 'none'} (${withName(r.completionRes ?? 0)})`,
    });
  }
  return checks;
}

/** The calls each canary sleeps in, in order: a nanosleep between two pselect6 leaves its restart block for the second. */
export const ROUND_CALLS = ['pselect6', 'nanosleep', 'pselect6'] as const;

/** The entry instructions a guest can use: ppc64le sc always and scv where the CPU has it; x86_64 syscall. */
export function entryPaths(byCpu: Readonly<Record<string, 'scv' | 'sc'>> | undefined, cpu: string | undefined): string[] {
  return byCpu ? [...new Set(['sc', (cpu && byCpu[cpu]) || 'sc'])] : ['syscall'];
}
