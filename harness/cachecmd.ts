// `klp-harness cache`: what the cache holds (size, age), and pruning.
import { readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { MARKER } from './cache.js';
import { run } from './exec.js';

export interface CacheEntry {
  kind: string;
  name: string;
  path: string;
  bytes: number;
  ageDays: number;
  complete: boolean;
}

export async function listCache(root: string): Promise<CacheEntry[]> {
  const out: CacheEntry[] = [];
  for (const kind of ['trees', 'builds', 'images', 'runs', 'apt']) {
    const dir = join(root, kind);
    let names: string[] = [];
    try {
      names = readdirSync(dir);
    } catch {
      continue;
    }
    for (const name of names) {
      const path = join(dir, name);
      const du = await run('du', ['-sb', path]).catch(() => undefined);
      let st = statSync(path);
      let complete = kind === 'runs' || kind === 'apt';
      try {
        st = statSync(join(path, MARKER)); // last used
        complete = true;
      } catch {
        /* no marker */
      }
      out.push({ kind, name, path, bytes: Number(du?.stdout.split('\t')[0] ?? 0), ageDays: (Date.now() - st.mtimeMs) / 86_400_000, complete });
    }
  }
  return out;
}

export function formatCache(entries: CacheEntry[]): string {
  const mb = (b: number) => `${(b / 1048576).toFixed(0)} MiB`;
  const lines = entries.map((e) => `  ${e.kind.padEnd(7)} ${e.name.padEnd(44)} ${mb(e.bytes).padStart(9)}  ${e.ageDays.toFixed(1).padStart(6)} d${e.complete ? '' : '  (incomplete)'}`);
  const total = entries.reduce((s, e) => s + e.bytes, 0);
  return [...lines, `  total ${mb(total)}`].join('\n') + '\n';
}

/** Removes entries older than maxAgeDays, and incomplete ones (never runs in progress: only older than a day). */
export function pruneCache(entries: CacheEntry[], maxAgeDays: number): CacheEntry[] {
  const doomed = entries.filter((e) => e.kind !== 'apt' && (e.ageDays > maxAgeDays || (!e.complete && e.ageDays > 1)));
  for (const e of doomed) rmSync(e.path, { recursive: true, force: true });
  return doomed;
}
