// The third guard (see guards.ts): every run records its child process
// groups under <cache>/procs/<pid>.json, and a run starting later kills the
// groups of runs that are gone (their reaper may have died with them).
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { groupStillRuns, isRunning, procId, signalGroup, type ProcId } from './stat.js';

export interface GroupRecord extends ProcId {
  name: string;
}

interface RecordFile {
  harness: ProcId;
  groups: GroupRecord[];
}

/** This process's record file, once a run named its cache. */
export class RunRecord {
  private path?: string;

  /** Starts recording in <cache>/procs/<pid>.json. */
  recordIn(cacheDir: string, groups: GroupRecord[]): void {
    const dir = join(cacheDir, 'procs');
    mkdirSync(dir, { recursive: true });
    const path = join(dir, `${process.pid}.json`);
    // A second run in one process (tests) on another cache: the first record goes.
    if (this.path && this.path !== path) rmSync(this.path, { force: true });
    this.path = path;
    this.write(groups);
  }

  /** Rewrites the record (atomically: a crash mid-write leaves the previous one). */
  write(groups: GroupRecord[]): void {
    if (!this.path) return;
    const me = procId(process.pid);
    if (!me) return;
    const body: RecordFile = { harness: me, groups };
    try {
      writeFileSync(`${this.path}.tmp`, JSON.stringify(body) + '\n');
      renameSync(`${this.path}.tmp`, this.path);
    } catch {
      /* the cache went away: the other two guards remain */
    }
  }

  /** Removes the record (a clean exit). */
  drop(): void {
    if (this.path) rmSync(this.path, { force: true });
  }
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
