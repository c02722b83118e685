// The table of locks this process holds: one per table (the supervisor's is
// the one core/lock.ts uses), one hold per lock file whose `gone` settles when
// its flock child ends and the lock with it, and exclusive sections queued per lock file.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import t from 'tap';
import { LockHolds } from '../../../harness/core/lock-holds.js';
import { entryLock, holdShared, withExclusive } from '../../../harness/core/lock.js';
import { supervisor } from '../../../harness/proc/supervisor.js';
import { procStat } from '../../../harness/proc/stat.js';
import { tempDir } from '../../helpers.js';

/** Whether another process could take the lock exclusively right now (flock -n). */
const freeForOthers = (lock: string) => spawnSync('flock', ['-n', '-x', lock, 'true']).status === 0;

t.test('a new table is empty, and two tables share nothing', async (t) => {
  const a = new LockHolds();
  const b = new LockHolds();
  t.equal(a.held.size, 0);
  t.equal(a.queues.size, 0);
  a.queues.set('/l', Promise.resolve());
  t.equal(b.queues.size, 0, 'a second table does not see the first one\'s entries');
  t.not(a.held, b.held);
  t.type(supervisor.locks, LockHolds, 'the process\'s supervisor keeps one');
});

t.test('a shared hold is one entry per lock file in the supervisor\'s table, with its mode, record and live child', async (t) => {
  const cache = tempDir(t);
  const lock = entryLock(cache, 'builds/x86_64-a');
  const other = entryLock(cache, 'trees/a');
  const { held } = supervisor.locks;
  t.teardown(() => {
    for (const l of [lock, other]) {
      const h = held.get(l);
      if (!h) continue;
      held.delete(l);
      h.child.ref();
      h.child.kill('SIGKILL');
    }
  });
  const before = held.size;
  await holdShared(lock, 'the build');
  const h = held.get(lock)!;
  t.equal(h.mode, 'shared');
  t.ok(h.child.pid && procStat(h.child.pid), 'its flock child runs');
  t.ok(existsSync(h.record), 'who holds it is recorded beside the lock');
  t.match(JSON.parse(readFileSync(h.record, 'utf8')), { pid: process.pid, mode: 'shared', purpose: 'the build' });
  await holdShared(lock, 'the build again');
  t.equal(held.get(lock), h, 'holding it again keeps the one hold');
  await holdShared(other, 'the tree');
  t.equal(held.size, before + 2, 'another lock file is another entry');
  t.not(held.get(other)!.child.pid, h.child.pid);
});

t.test('a hold\'s `gone` settles once its child is gone, and the lock is free then', async (t) => {
  const lock = entryLock(tempDir(t), 'images/x86_64-b');
  await holdShared(lock, 'the image');
  const h = supervisor.locks.held.get(lock)!;
  t.teardown(() => {
    supervisor.locks.held.delete(lock);
    rmSync(h.record, { force: true });
  });
  t.notOk(freeForOthers(lock), 'while held, another process cannot take it exclusively');
  let settled = false;
  void h.gone.then(() => (settled = true));
  await new Promise((r) => setTimeout(r, 100));
  t.notOk(settled, 'not gone while the child runs');
  h.child.ref(); // the child is unref'd so as not to keep the process alive; this test waits for it
  process.kill(-h.child.pid!, 'SIGKILL');
  await h.gone;
  t.equal(procStat(h.child.pid!), undefined, 'the child is gone when it settles');
  let free = freeForOthers(lock);
  for (let i = 0; i < 50 && !free; i++) {
    await new Promise((r) => setTimeout(r, 20));
    free = freeForOthers(lock);
  }
  t.ok(free, 'the lock went with it');
});

t.test('exclusive sections queue per lock file: a failed one does not block the next, other lock files do not wait', async (t) => {
  const cache = tempDir(t);
  const a = entryLock(cache, 'builds/a');
  const b = entryLock(cache, 'builds/b');
  const { queues } = supervisor.locks;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let started!: () => void;
  const inFirst = new Promise<void>((r) => (started = r));
  const order: string[] = [];
  const first = withExclusive(a, 'first', undefined, async () => {
    order.push('a1');
    started();
    await gate;
    throw new Error('the make failed');
  });
  t.ok(queues.has(a), 'the section is queued under its lock file');
  const second = withExclusive(a, 'second', undefined, async () => order.push('a2'));
  // Each section takes its lock with a flock child of its own, so which lock is
  // taken first is the host's business: b starts once the first holds a.
  await inFirst;
  const onB = withExclusive(b, 'other', undefined, async () => order.push('b'));
  await onB;
  t.same(order, ['a1', 'b'], 'the section on another lock file ran while the first held its own');
  release();
  await t.rejects(first, /the make failed/);
  await second;
  t.same(order, ['a1', 'b', 'a2'], 'the second section on the lock file ran after the first, failed as it did');
  await t.resolves(queues.get(a)!, 'the queue entry settles without the failure');
  t.ok(freeForOthers(a) && freeForOthers(b), 'both locks are free afterwards');
});
