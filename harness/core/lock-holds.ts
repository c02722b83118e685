// The locks this process holds (core/lock.ts). A flock is the process's: it
// lasts as long as the process, so its table lives in the process's one
// supervisor (proc/supervisor.ts), not at module level.
import type { ChildProcess } from 'node:child_process';

export type LockMode = 'shared' | 'exclusive';

export interface Held {
  child: ChildProcess;
  /** Settles once the child is gone, and with it the lock. */
  gone: Promise<void>;
  mode: LockMode;
  record: string;
}

export class LockHolds {
  /** This process's holds, one per lock file. */
  readonly held = new Map<string, Held>();
  /** Exclusive sections of this process, one after the other per lock file. */
  readonly queues = new Map<string, Promise<unknown>>();
}
