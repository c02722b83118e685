// How many guests run at once, and the queue that holds the rest. A
// scenario's guest mostly sleeps while the kernel retries a transition once
// a second, so a host holds several; what bounds them is memory (each guest
// has its RAM plus QEMU's own) and CPU (under software emulation a busy
// guest takes a core per vCPU for a while). `--jobs N` overrides the choice.
import { availableParallelism, freemem } from 'node:os';
import { readFileSync } from 'node:fs';

/** What QEMU itself takes besides the guest's RAM (TCG's translation cache, slirp, buffers). */
const QEMU_OVERHEAD_MIB = 300;
/** Guests per host core: measured by `npm run bench` (warm matrix for --jobs 1, 2, 4, 8). */
export const GUESTS_PER_CORE = 2;

export interface HostCapacity {
  cores: number;
  /** Memory a new process can have without swapping (MemAvailable). */
  availableMiB: number;
}

/** MemAvailable from /proc/meminfo (free memory where that is missing). */
export function hostCapacity(): HostCapacity {
  let availableMiB = freemem() / 1048576;
  try {
    const m = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
    if (m) availableMiB = Number(m[1]) / 1024;
  } catch {
    /* not Linux: free memory will do */
  }
  return { cores: availableParallelism(), availableMiB };
}

/** QEMUs of guestMiB that three quarters of the available memory holds (paused ones too: they keep their memory). */
export const guestsInMemory = (host: HostCapacity, guestMiB: number) => Math.floor((host.availableMiB * 0.75) / (guestMiB + QEMU_OVERHEAD_MIB));

/**
 * Guests at once: GUESTS_PER_CORE per core, no more than three quarters of
 * the available memory holds (the largest guest counted for each), at least 1.
 */
export function defaultJobs(host: HostCapacity, guestMiB: number): { jobs: number; why: string } {
  const byCpu = host.cores * GUESTS_PER_CORE;
  const byMemory = guestsInMemory(host, guestMiB);
  const jobs = Math.max(1, Math.min(byCpu, byMemory));
  const why = `${host.cores} cores allow ${byCpu}, ${Math.round(host.availableMiB)} MiB available allows ${byMemory} guests of ${guestMiB} MiB`;
  return { jobs, why };
}

/**
 * A counting semaphore: at most `size` holders at once. Holders may name a
 * group (the run's arches): a freed slot goes to the waiter of the group
 * that holds fewest slots now, first come first served among equals, so
 * every group with work keeps a share (each arch then keeps fewer QEMUs of
 * one kind running at once, and resets them in place more often).
 */
export class Slots {
  private free: number;
  private readonly waiting: { group: string; go: () => void }[] = [];
  private readonly held = new Map<string, number>();
  /** The most holders seen at once (reports show it). */
  peak = 0;

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`slots: size must be a positive integer, got ${size}`);
    this.free = size;
  }

  /** Runs fn once a slot is free, and frees it when fn settles. */
  async use<T>(fn: () => Promise<T>, group = ''): Promise<T> {
    if (this.free > 0 && this.waiting.length === 0) this.free--;
    else await new Promise<void>((go) => this.waiting.push({ group, go }));
    this.held.set(group, (this.held.get(group) ?? 0) + 1);
    this.peak = Math.max(this.peak, this.size - this.free);
    try {
      return await fn();
    } finally {
      this.held.set(group, this.held.get(group)! - 1);
      const next = this.nextWaiter();
      if (next) next.go();
      else this.free++;
    }
  }

  private nextWaiter(): { go: () => void } | undefined {
    let best = -1;
    for (let i = 0; i < this.waiting.length; i++) {
      const g = this.held.get(this.waiting[i]!.group) ?? 0;
      if (best < 0 || g < (this.held.get(this.waiting[best]!.group) ?? 0)) best = i;
    }
    return best < 0 ? undefined : this.waiting.splice(best, 1)[0];
  }
}
