// The one process layer under exec and QEMU: a child started in a process
// group of its own (and under `setpriv --pdeathsig KILL`), registered so that
// an exit or a signal of the harness ends the whole group, and ended whole on
// a timeout, on an abort or on request: SIGTERM (and SIGCONT, so a stopped
// group can act on it), SIGKILL after a grace period.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { killGroup, prepareSpawn, track } from './supervisor.js';
import { withDeathSignal } from './guards.js';

export interface GroupOptions {
  /** Names the group in the harness's records and logs. */
  name: string;
  /** Ends the group after this long (timedOut is then set). */
  timeoutMs?: number;
  /** Ends the group when this signal aborts. */
  signal?: AbortSignal;
  /** From SIGTERM to SIGKILL (default 3 s). */
  killAfterMs?: number;
}

export interface GroupExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A started child that leads its own process group (spawned with detached: true). */
export type GroupLeader = Pick<ChildProcess, 'pid' | 'once'>;

export class ProcessGroup {
  /** Resolves when the leader exits (or could not start). */
  readonly exited: Promise<GroupExit>;
  timedOut = false;
  aborted = false;
  private exitInfo?: GroupExit;
  private readonly killAfterMs: number;

  constructor(
    readonly leader: GroupLeader,
    o: GroupOptions,
  ) {
    this.killAfterMs = o.killAfterMs ?? 3000;
    const untrack = track(leader, o.name);
    const timer = o.timeoutMs === undefined ? undefined : setTimeout(() => ((this.timedOut = true), void this.stop()), o.timeoutMs);
    const onAbort = () => ((this.aborted = true), void this.stop());
    if (o.signal?.aborted) onAbort();
    else o.signal?.addEventListener('abort', onAbort, { once: true });
    this.exited = new Promise((resolve) => {
      const done = (code: number | null, signal: NodeJS.Signals | null) => {
        if (this.exitInfo) return;
        this.exitInfo = { code, signal };
        clearTimeout(timer);
        o.signal?.removeEventListener('abort', onAbort);
        untrack();
        resolve(this.exitInfo);
      };
      leader.once('exit', done);
      leader.once('error', () => done(null, null));
    });
  }

  get pid() {
    return this.leader.pid;
  }
  get running() {
    return this.exitInfo === undefined;
  }

  /** Ends the group: SIGTERM now, SIGKILL after graceMs; resolves with the leader's exit. */
  async stop(graceMs = this.killAfterMs): Promise<GroupExit> {
    if (this.running && this.pid) {
      killGroup(this.pid, 'SIGTERM');
      const timer = setTimeout(() => killGroup(this.pid, 'SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(timer);
    }
    return this.exited;
  }
}

/** Spawns file in a group of its own under the death signal and supervises it. */
export function spawnGroup(file: string, args: readonly string[], o: GroupOptions & { spawn?: Omit<SpawnOptions, 'detached'> }): { child: ChildProcess; group: ProcessGroup } {
  const guarded = withDeathSignal(file, args);
  prepareSpawn();
  const child = spawn(guarded.file, guarded.args, { ...o.spawn, detached: true });
  return { child, group: new ProcessGroup(child, o) };
}
