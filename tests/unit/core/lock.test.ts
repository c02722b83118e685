// Cache locks between processes (flock held by a small child): shared holds
// coexist, an exclusive section waits for them and says for whom, a busy
// lock is reported with its holders, and a held lock goes with its process.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import t from 'tap';
import { entryLock, holdShared, lockHolders, tryExclusive, withExclusive, withShared } from '../../../harness/core/lock.js';
import { createLogger } from '../../../harness/core/log.js';
import { supervisor } from '../../../harness/proc/supervisor.js';
import { tempDir } from '../../helpers.js';

/** Another process holding `lock` exclusively until it is killed. */
function otherHolder(t: { teardown(fn: () => void): void }, lock: string) {
  // Its own group: flock's child (the sleep) holds the lock too, and must go with it.
  const child = spawn('flock', ['-x', lock, 'sh', '-c', 'echo locked; exec sleep 60'], { stdio: ['ignore', 'pipe', 'ignore'], detached: true });
  const kill = () => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      /* gone */
    }
  };
  t.teardown(kill);
  return new Promise<{ kill: () => void }>((resolve) => child.stdout!.on('data', () => resolve({ kill })));
}

t.test('lock files are named after the entry, inside <cache>/locks', async (t) => {
  const cache = tempDir(t);
  t.equal(entryLock(cache, 'builds/x86_64-abc'), join(cache, 'locks', 'builds~x86_64-abc.lock'));
});

t.test('exclusive sections of one process run one after the other, and record who holds them', async (t) => {
  const lock = entryLock(tempDir(t), 'trees/k');
  const order: string[] = [];
  let seen: ReturnType<typeof lockHolders> = [];
  const a = withExclusive(lock, 'a', undefined, async () => {
    order.push('a+');
    seen = lockHolders(lock);
    await new Promise((r) => setTimeout(r, 100));
    order.push('a-');
  });
  const b = withExclusive(lock, 'b', undefined, async () => {
    order.push('b+');
    order.push('b-');
  });
  await Promise.all([a, b]);
  t.same(order, ['a+', 'a-', 'b+', 'b-']);
  t.same(seen.map((h) => [h.pid, h.mode, h.purpose]), [[process.pid, 'exclusive', 'a']], 'the holder is on record while it holds');
  t.same(lockHolders(lock), [], 'and off record after');
});

t.test('a shared hold is kept for the process, given up for its own exclusive section, and kept by the supervisor', async (t) => {
  const lock = entryLock(tempDir(t), 'builds/k');
  await holdShared(lock, 'the build');
  t.ok(supervisor.locks.held.has(lock), 'the hold is in the supervisor’s table');
  t.same(lockHolders(lock).map((h) => h.mode), ['shared']);
  t.equal(await withShared(lock, 'again', undefined, async () => 'inside'), 'inside', 'withShared reuses the hold');
  await withExclusive(lock, 'remake', undefined, async () => {
    t.same(lockHolders(lock).map((h) => h.mode), ['exclusive'], 'the shared hold was given up first');
  });
  t.notOk(supervisor.locks.held.has(lock), 'after the exclusive section it is not held');
});

t.test('a lock another process holds: tryExclusive names it, withShared waits and says for whom', async (t) => {
  const lock = entryLock(tempDir(t), 'images/k');
  const other = await otherHolder(t, lock);
  const busy = await tryExclusive(lock, 'prune', () => 'pruned');
  t.equal(busy.done, false, 'busy');
  const lines: string[] = [];
  const logger = createLogger('normal', { out: (s) => lines.push(s), live: false });
  setTimeout(other.kill, 300);
  const started = Date.now();
  t.equal(await withShared(lock, 'the image', logger, async () => 'got it'), 'got it');
  t.ok(Date.now() - started >= 250, 'it waited for the other process');
  t.ok(Date.now() - started < 30_000, 'and got the lock once that process was gone, not at its end of 60 s');
  t.match(lines.join(''), /lock: waiting for the image \(shared\): held by .*lock file .*images~k\.lock/);
  t.match(lines.join(''), /lock: got the image \(shared\) after/);
  const free = await tryExclusive(lock, 'prune', () => 'pruned');
  t.same(free, { done: true, value: 'pruned' }, 'free once the holder is gone');
});
