// Locks on cache entries shared by runs on one machine. Each lock is a
// flock(2) held by a small child process (`flock` from util-linux running
// `cat`): the kernel drops it when that child ends, and the child ends when
// its stdin closes, which happens however this process ends (exit, crash,
// kill -9). So a lock is never left behind and needs no staleness guess.
// Who holds a lock is written beside it (pid, what for, since when), so a
// run that has to wait can say what it waits for.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Held, LockMode } from './lock-holds.js';
import { supervisor } from '../proc/supervisor.js';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { infraError } from './errors.js';
import { pollUntil } from './poll.js';
import { hostMs } from './timeouts.js';
import type { Logger } from './log.js';
import { procStat } from '../proc/stat.js';

export type { LockMode } from './lock-holds.js';

interface Holder {
  pid: number;
  mode: LockMode;
  purpose: string;
  since: string;
}

/** This process's holds and exclusive sections (kept by its supervisor). */
const holds = () => supervisor.locks;

/** flock's exit code when -n finds the lock taken. */
const BUSY = 75;

/** The lock file of a cache entry such as `trees/<key>` or `builds/<arch>-<key>`. */
export function entryLock(cacheDir: string, entry: string): string {
  const dir = join(cacheDir, 'locks');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return join(dir, `${entry.replace(/\//g, '~')}.lock`);
}

const holdersDir = (lock: string) => `${lock}.holders`;

/** Whether a process of this pid exists (a holder's record has no start time: the pid alone). */
export const alive = (pid: number) => procStat(pid) !== undefined;

/** The live holders recorded for a lock; records of processes that are gone are removed. */
export function lockHolders(lock: string): Holder[] {
  let names: string[] = [];
  try {
    names = readdirSync(holdersDir(lock));
  } catch {
    return [];
  }
  const out: Holder[] = [];
  for (const n of names) {
    const path = join(holdersDir(lock), n);
    try {
      const h = JSON.parse(readFileSync(path, 'utf8')) as Holder;
      if (alive(h.pid)) out.push(h);
      else rmSync(path, { force: true });
    } catch {
      /* being written or removed */
    }
  }
  return out;
}

export const describeHolders = (hs: Holder[]) =>
  hs.length ? hs.map((h) => `pid ${h.pid} (${h.mode}, ${h.purpose}, since ${h.since.slice(11, 19)})`).join(', ') : 'a process that is letting it go or left no record';

/** Starts `flock`; resolves to the child once it holds the lock, or undefined when busy and !wait. */
function spawnFlock(lock: string, mode: LockMode, wait: boolean): Promise<ChildProcess | undefined> {
  const args = [mode === 'shared' ? '-s' : '-x', ...(wait ? [] : ['-n', '-E', String(BUSY)]), lock, 'sh', '-c', 'echo locked; exec cat >/dev/null'];
  // Its own process group: a Ctrl-C meant for the harness must not drop the lock before the harness has cleaned up.
  const child = spawn('flock', args, { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (!out.includes('locked')) return;
      child.stdout!.removeAllListeners('data');
      child.removeAllListeners('exit');
      // The lock must not keep the harness alive: it goes when the harness goes.
      child.unref();
      for (const s of [child.stdin, child.stdout, child.stderr]) (s as unknown as { unref?: () => void })?.unref?.();
      resolve(child);
    });
    child.on('error', (e) => reject(infraError(`could not run flock for ${lock}`, { details: e.message, hint: 'install util-linux (flock)' })));
    child.on('exit', (code) => {
      if (code === BUSY && !wait) resolve(undefined);
      else reject(infraError(`flock on ${lock} failed (exit ${code})`, { details: err.trim() }));
    });
  });
}

function record(lock: string, mode: LockMode, purpose: string): string {
  mkdirSync(holdersDir(lock), { recursive: true, mode: 0o700 });
  const path = join(holdersDir(lock), `${process.pid}-${mode}-${Date.now()}`);
  const h: Holder = { pid: process.pid, mode, purpose, since: new Date().toISOString() };
  writeFileSync(path, JSON.stringify(h) + '\n');
  return path;
}

/** Takes a lock, waiting (and saying for what and whom) while another process holds it. */
async function acquire(lock: string, mode: LockMode, what: string, logger?: Logger): Promise<Held> {
  let child = await spawnFlock(lock, mode, false);
  if (!child) {
    const started = Date.now();
    const others = () => lockHolders(lock).filter((h) => h.pid !== process.pid);
    // A holder writes its record just after it gets the lock: give it a moment.
    const seen = await pollUntil(others, (h) => h.length > 0, { everyMs: 50, deadlineMs: hostMs('lockRecord') });
    const holders = seen.ok ? seen.value : seen.last ?? [];
    logger?.info(`lock: waiting for ${what} (${mode}): held by ${describeHolders(holders)}; lock file ${lock}`);
    child = (await spawnFlock(lock, mode, true))!;
    logger?.info(`lock: got ${what} (${mode}) after ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
  return { child, gone: goneOf(child), mode, record: record(lock, mode, what) };
}

const goneOf = (child: ChildProcess) => new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve())));

/** Drops a lock and waits until it is really free (flock's child has gone): the next taker must not find it held by us. */
async function release(lock: string, h: Held): Promise<void> {
  if (holds().held.get(lock) === h) holds().held.delete(lock);
  rmSync(h.record, { force: true });
  h.child.ref(); // keeps this process alive until the lock is free
  h.child.stdin?.end();
  await h.gone;
}

/**
 * Holds a lock shared until this process ends (a run keeps using what it
 * checked), or until this process needs the same lock exclusively.
 */
export async function holdShared(lock: string, what: string, logger?: Logger): Promise<void> {
  const { held, queues } = holds();
  await queues.get(lock);
  if (held.has(lock)) return;
  held.set(lock, await acquire(lock, 'shared', what, logger));
}

/** Runs fn holding the lock shared (already held by this process: kept; else taken for fn only). */
export async function withShared<T>(lock: string, what: string, logger: Logger | undefined, fn: () => Promise<T>): Promise<T> {
  const { held, queues } = holds();
  await queues.get(lock);
  if (held.has(lock)) return fn();
  const h = await acquire(lock, 'shared', what, logger);
  try {
    return await fn();
  } finally {
    await release(lock, h);
  }
}

/** Runs fn holding the lock exclusively; this process's own shared hold is given up first. */
export function withExclusive<T>(lock: string, what: string, logger: Logger | undefined, fn: () => Promise<T>): Promise<T> {
  const { held, queues } = holds();
  const prev = queues.get(lock) ?? Promise.resolve();
  const next = prev.then(async () => {
    const mine = held.get(lock);
    if (mine) await release(lock, mine);
    const h = await acquire(lock, 'exclusive', what, logger);
    try {
      return await fn();
    } finally {
      await release(lock, h);
    }
  });
  queues.set(
    lock,
    next.catch(() => undefined),
  );
  return next;
}

/** Runs fn holding the lock exclusively if nobody holds it now; otherwise returns the holders. */
export async function tryExclusive<T>(lock: string, what: string, fn: () => T | Promise<T>): Promise<{ done: true; value: T } | { done: false; holders: Holder[] }> {
  const child = await spawnFlock(lock, 'exclusive', false);
  if (!child) return { done: false, holders: lockHolders(lock) };
  const h: Held = { child, gone: goneOf(child), mode: 'exclusive', record: record(lock, 'exclusive', what) };
  try {
    return { done: true, value: await fn() };
  } finally {
    await release(lock, h);
  }
}

/**
 * Uses a cache entry: held shared while it is valid, made under the
 * exclusive lock when it is not (checked again there: another run may have
 * made it meanwhile, and then this one simply uses it). Between giving up the
 * exclusive lock and taking the shared one another run may change the entry
 * (switch a tree's series): it is checked once more, and made again if so.
 */
export async function useEntry<T>(o: {
  lock: string;
  what: string;
  logger?: Logger;
  /** The entry's result when it is complete and fits, else undefined. */
  check: () => Promise<T | undefined>;
  make: () => Promise<T>;
  rebuild?: boolean;
}): Promise<T> {
  let rebuild = o.rebuild;
  for (;;) {
    if (!rebuild) {
      await holdShared(o.lock, o.what, o.logger);
      const ok = await o.check();
      if (ok !== undefined) return ok;
    }
    const made = await withExclusive(o.lock, o.what, o.logger, async () => {
      const ok = rebuild ? undefined : await o.check();
      return ok !== undefined ? ok : o.make();
    });
    rebuild = false;
    await holdShared(o.lock, o.what, o.logger);
    if ((await o.check()) !== undefined) return made;
    o.logger?.info(`lock: ${o.what} was changed by another run before this one could use it; again`);
  }
}
