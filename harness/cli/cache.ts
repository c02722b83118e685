// `klp-harness cache [--prune] [--max-age DAYS]`: what the cache holds (size, age), and pruning.
import { readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { cacheRoot, MARKER } from '../core/cache.js';
import { EXIT, usageError } from '../core/errors.js';
import { run } from '../proc/exec.js';
import { alive, describeHolders, entryLock, tryExclusive } from '../core/lock.js';
import { commandOptions, noPositionals, pathOption } from './options.js';

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
  for (const kind of ['trees', 'builds', 'images', 'kernel-images', 'binary-modules', 'snapshots', 'runs', 'apt']) {
    const dir = join(root, kind);
    let names: string[] = [];
    try {
      names = readdirSync(dir);
    } catch {
      continue;
    }
    for (const name of names) {
      const path = join(dir, name);
      const du = await run('du', ['-sB1', path]).catch(() => undefined);
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
  const lines = entries.map((e) => `  ${e.kind.padEnd(14)} ${e.name.padEnd(44)} ${mb(e.bytes).padStart(9)}  ${e.ageDays.toFixed(1).padStart(6)} d${e.complete ? '' : '  (incomplete)'}`);
  const total = entries.reduce((s, e) => s + e.bytes, 0);
  return [...lines, `  total ${mb(total)}`].join('\n') + '\n';
}

/**
 * Removes entries older than maxAgeDays, and incomplete ones older than a
 * day; never one a live run holds (its lock is taken while removing it, so
 * no run can start using it meanwhile) or one a live process is still
 * writing under a temporary name. Returns what went and what was skipped.
 */
export async function pruneCache(root: string, entries: CacheEntry[], maxAgeDays: number): Promise<{ removed: CacheEntry[]; skipped: { entry: CacheEntry; why: string }[] }> {
  const doomed = entries.filter((e) => e.kind !== 'apt' && (e.ageDays > maxAgeDays || (!e.complete && e.ageDays > 1)));
  const removed: CacheEntry[] = [];
  const skipped: { entry: CacheEntry; why: string }[] = [];
  for (const e of doomed) {
    const writer = Number(/\.tmp-(\d+)$/.exec(e.name)?.[1]);
    if (writer && alive(writer)) {
      skipped.push({ entry: e, why: `being written by pid ${writer}` });
      continue;
    }
    const r = await tryExclusive(entryLock(root, `${e.kind}/${e.name.replace(/\.tmp-\d+$/, '')}`), `cache --prune of ${e.kind}/${e.name}`, () => rmSync(e.path, { recursive: true, force: true }));
    if (r.done) removed.push(e);
    else skipped.push({ entry: e, why: `in use by ${describeHolders(r.holders)}` });
  }
  return { removed, skipped };
}

export const parseCache = commandOptions('cache', {
  'cache-dir': { type: 'string', arg: 'DIR', help: 'the cache to list (default: $KLP_HARNESS_CACHE or ~/.cache/klp-harness)' },
  prune: { type: 'boolean', help: 'remove entries unused for --max-age days, and incomplete ones' },
  'max-age': { type: 'string', arg: 'DAYS', help: 'with --prune: unused for this many days (default: 30)' },
} as const);

/** Lists the cache; with --prune removes what is old or incomplete. */
export async function cacheCommand({ values, positionals }: ReturnType<typeof parseCache>): Promise<number> {
  noPositionals('cache', positionals);
  const maxAge = values['max-age'];
  if (maxAge !== undefined && !values.prune) throw usageError('--max-age goes with --prune', { hint: 'klp-harness cache --prune --max-age DAYS' });
  const root = cacheRoot(pathOption(values['cache-dir']));
  const entries = await listCache(root);
  process.stdout.write(`klp-harness cache: ${root}\n${formatCache(entries)}`);
  if (values.prune) {
    const days = maxAge === undefined ? 30 : Number(maxAge);
    if (!Number.isFinite(days) || days < 0) throw usageError(`bad --max-age '${maxAge}'`, { hint: 'give a number of days' });
    const { removed, skipped } = await pruneCache(root, entries, days);
    for (const s of skipped) process.stdout.write(`kept ${s.entry.kind}/${s.entry.name}: ${s.why}\n`);
    process.stdout.write(`pruned ${removed.length} entr${removed.length === 1 ? 'y' : 'ies'} unused for ${days} days or incomplete\n`);
  }
  return EXIT.ok;
}
