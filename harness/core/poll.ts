// The one loop that waits for something the harness can only look at, not
// be told about (a QMP status, a guest's blocker state, a socket that is not
// there yet): read, test, sleep, until a deadline or an abort. Every such
// wait goes through here, so each has a deadline and an interval, and an
// AbortSignal ends it at once.

export interface PollOptions {
  /** Pause between two reads. */
  everyMs: number;
  /** Time from the first read after which the poll gives up. */
  deadlineMs: number;
  /** Ends the poll at once: the signal's reason is thrown. */
  signal?: AbortSignal;
}

export type PollResult<T> = { ok: true; value: T; elapsedMs: number } | { ok: false; last: T | undefined; elapsedMs: number };

const pause = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });

/**
 * Reads until `done` holds for what was read, or the deadline passes (then
 * `ok: false` with the last reading, for the caller's message). A read that
 * throws ends the poll with that error: a read that should be retried on
 * error catches it and returns what `done` rejects.
 */
export async function pollUntil<T>(read: () => Promise<T> | T, done: (value: T) => boolean, o: PollOptions): Promise<PollResult<T>> {
  const started = Date.now();
  let last: T | undefined;
  for (;;) {
    o.signal?.throwIfAborted();
    last = await read();
    const elapsedMs = Date.now() - started;
    if (done(last)) return { ok: true, value: last, elapsedMs };
    if (elapsedMs >= o.deadlineMs) return { ok: false, last, elapsedMs };
    // The last read falls on the deadline, not an interval short of it.
    await pause(Math.min(o.everyMs, o.deadlineMs - elapsedMs), o.signal);
  }
}

/** Waits `ms` (cancelled by the signal); for the few places that must let time pass, such as a grace period. */
export const delay = (ms: number, signal?: AbortSignal): Promise<void> => pause(ms, signal);
