// How many guests run at once, and the queue that holds the rest. A
// scenario's guest mostly sleeps while the kernel retries a transition once
// a second, so a host holds several; what bounds them is memory (each guest
// has its RAM plus QEMU's own) and CPU (under software emulation a busy
// guest takes a core per vCPU for a while). `--jobs N` overrides the choice.
import { availableParallelism, freemem } from 'node:os';
import { readFileSync } from 'node:fs';
import { usageError } from '../core/errors.js';

/** What QEMU itself takes besides the guest's RAM (TCG's translation cache, slirp, buffers). */
const QEMU_OVERHEAD_MIB = 300;
/**
 * Guests per host core: measured by `npm run bench` (warm matrix for --jobs 2, 4, 8 on 2 cores,
 * 2026-12-01): 215.5 / 116.5 / 68.9 s of wall for 88.9 / 87.7 / 90.9 s of QEMU CPU. Once the arches
 * owned shares of the slots (14 QEMUs at 8, not 22), four a core cost no more CPU than two and
 * took 40% less time; 6 a core (12 here) was CPU-bound (82 s, 131 s of QEMU CPU).
 */
export const GUESTS_PER_CORE = 4;

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
 * Guests per core when --jobs is not given: KLP_HARNESS_GUESTS_PER_CORE, for
 * a host shared with other work (npm test runs three integration files at
 * once and gives each run 2: at 4 the suite took 321 s against 292 s), else
 * GUESTS_PER_CORE. Anything but a whole number of 1 or more is refused.
 */
export function guestsPerCore(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.KLP_HARNESS_GUESTS_PER_CORE?.trim();
  if (!raw) return GUESTS_PER_CORE;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 64) {
    throw usageError(`KLP_HARNESS_GUESTS_PER_CORE='${env.KLP_HARNESS_GUESTS_PER_CORE}' is not a number of guests per core`, {
      hint: `give a whole number of 1 or more (default ${GUESTS_PER_CORE}), unset it, or give the run --jobs`,
    });
  }
  return n;
}

/**
 * Guests at once: guestsPerCore() per core, no more than three quarters of
 * the available memory holds (the largest guest counted for each), at least 1.
 */
export function defaultJobs(host: HostCapacity, guestMiB: number, perCore = guestsPerCore()): { jobs: number; why: string } {
  const byCpu = host.cores * perCore;
  const byMemory = guestsInMemory(host, guestMiB);
  const jobs = Math.max(1, Math.min(byCpu, byMemory));
  const why = `${host.cores} cores allow ${byCpu}${perCore === GUESTS_PER_CORE ? '' : ` (KLP_HARNESS_GUESTS_PER_CORE=${perCore})`}, ${Math.round(host.availableMiB)} MiB available allows ${byMemory} guests of ${guestMiB} MiB`;
  return { jobs, why };
}

/**
 * A counting semaphore: at most `size` holders at once. Holders may name a
 * group (the run's arches): a freed slot goes to the waiter of the group
 * that holds fewest slots now, first come first served among equals.
 *
 * A group may reserve a share of the slots for its planned work: until it
 * releases it, the slots are divided in proportion to the reserved work
 * (largest remainders, each reserving group at least one), and no other
 * group takes a slot a reserving group is owed, even before that group asks
 * (an arch whose artifacts are still being made). Without this, the arch
 * ready first took every slot, and each slot it later handed to the other
 * arch started one more QEMU there: 12 first restores for 4 slots, 20 for 8,
 * each writing a whole guest's RAM.
 */
export class Slots {
  private free: number;
  private readonly waiting: { group: string; go: () => void }[] = [];
  private readonly held = new Map<string, number>();
  private readonly shares = new Map<string, number>();
  /** The most holders seen at once (reports show it). */
  peak = 0;

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`slots: size must be a positive integer, got ${size}`);
    this.free = size;
  }

  /** The group's planned work (any unit, the same for every group): its share of the slots until release(group). */
  reserve(group: string, work: number): void {
    this.shares.set(group, Math.max(work, Number.MIN_VALUE));
    this.wake();
  }

  /** The group starts nothing more: what it was owed goes to the others. */
  release(group: string): void {
    if (this.shares.delete(group)) this.wake();
  }

  /** Each reserving group's slots: in proportion to its work, whole, summing to size, at least one each. */
  shareOf(): Map<string, number> {
    const groups = [...this.shares];
    const total = groups.reduce((n, [, w]) => n + w, 0);
    const exact = groups.map(([g, w]) => [g, (this.size * w) / total] as const);
    const out = new Map(exact.map(([g, x]) => [g, Math.max(1, Math.floor(x))]));
    let left = this.size - [...out.values()].reduce((a, b) => a + b, 0);
    for (const [g] of [...exact].sort((a, b) => (b[1] % 1) - (a[1] % 1))) {
      if (left <= 0) break;
      out.set(g, out.get(g)! + 1);
      left--;
    }
    return out;
  }

  /** Runs fn once a slot is free for its group, and frees it when fn settles. */
  async use<T>(fn: () => Promise<T>, group = ''): Promise<T> {
    await new Promise<void>((go) => {
      this.waiting.push({ group, go });
      this.wake();
    });
    try {
      return await fn();
    } finally {
      this.held.set(group, this.held.get(group)! - 1);
      this.free++;
      this.wake();
    }
  }

  private heldBy = (group: string) => this.held.get(group) ?? 0;

  /** Whether a free slot may go to the group: within its share, or one no reserving group is owed. */
  private mayStart(group: string, shares: Map<string, number>): boolean {
    if (this.free <= 0) return false;
    const mine = shares.get(group);
    if (mine !== undefined && this.heldBy(group) < mine) return true;
    let owed = 0;
    for (const [g, n] of shares) if (g !== group) owed += Math.max(0, n - this.heldBy(g));
    return this.free > owed;
  }

  /** Starts waiters while slots allow: the group that holds fewest first, first come among equals. */
  private wake(): void {
    // Shares change only with reserve and release, not as slots are taken.
    const shares = this.shareOf();
    for (;;) {
      let best = -1;
      for (let i = 0; i < this.waiting.length; i++) {
        const g = this.waiting[i]!.group;
        if (!this.mayStart(g, shares)) continue;
        if (best < 0 || this.heldBy(g) < this.heldBy(this.waiting[best]!.group)) best = i;
      }
      if (best < 0) return;
      const { group, go } = this.waiting.splice(best, 1)[0]!;
      this.free--;
      this.held.set(group, this.heldBy(group) + 1);
      this.peak = Math.max(this.peak, this.size - this.free);
      go();
    }
  }
}
