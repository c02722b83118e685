// How long each scenario took here before, per arch and CPU model: a run
// starts the longest first (one started last ends the run alone) and its
// arches share the slots by the work they have left. A scenario's own
// expectedSeconds is the guess before any run has measured it; most do not
// name one, and theirs range from under 1 s to over 10 s on the same guess.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { ArchRecord } from '../core/arch.js';
import { writeFileAtomic } from '../core/cache.js';
import type { Scenario } from '../scenarios/types.js';

/** A stuck scenario's typical time on x86_64 where it names none (most take 4-10 s). */
const GUESS_SECONDS = 7;

export interface TimedRun {
  scenario: Pick<Scenario, 'name' | 'expectedSeconds'>;
  cpu: string;
}

export class RunTimes {
  private readonly now = new Map<string, number>();

  constructor(
    /** Where they are kept (undefined: nothing read or written). */
    private readonly path?: string,
    /** Milliseconds by `arch/cpu/scenario`. */
    private readonly measured: Readonly<Record<string, number>> = {},
  ) {}

  /** The cache's record; a missing or unreadable one is an empty record (only the order depends on it). */
  static load(cacheDir: string): RunTimes {
    const path = join(cacheDir, 'scenario-times.json');
    try {
      const data = JSON.parse(readFileSync(path, 'utf8')) as unknown;
      const ok = data && typeof data === 'object' && !Array.isArray(data);
      const entries = ok ? Object.entries(data as Record<string, unknown>).filter((e): e is [string, number] => typeof e[1] === 'number' && e[1] > 0) : [];
      return new RunTimes(path, Object.fromEntries(entries));
    } catch {
      return new RunTimes(path);
    }
  }

  /** Milliseconds the run is expected to hold its slot: measured here before, else its scenario's guess. */
  expectedMs(arch: ArchRecord, run: TimedRun): number {
    return this.measured[key(arch, run)] ?? (run.scenario.expectedSeconds ?? GUESS_SECONDS) * 1000 * arch.guestClockScale;
  }

  /** A run that held its slot for ms, from taking it to its guest's end. */
  record(arch: ArchRecord, run: TimedRun, ms: number): void {
    this.now.set(key(arch, run), ms);
  }

  /**
   * Writes the record back: each time measured now, averaged with the one
   * before it (one slow run on a loaded host moves it halfway). Another run
   * writing at the same moment may win; only an order depends on it.
   */
  save(): void {
    if (!this.path || this.now.size === 0) return;
    // Read again: a run that ended since this one began may have written it.
    const current = { ...RunTimes.load(dirname(this.path)).measured };
    for (const [k, ms] of this.now) current[k] = current[k] ? Math.round((current[k] + ms) / 2) : ms;
    try {
      writeFileAtomic(this.path, JSON.stringify(current, null, 1) + '\n');
    } catch {
      // Only the next run's order depends on it.
    }
  }
}

const key = (arch: ArchRecord, run: TimedRun) => `${arch.name}/${run.cpu}/${run.scenario.name}`;
