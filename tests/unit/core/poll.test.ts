// The one poll loop: it returns what satisfied it, gives up at its deadline
// with the last reading, passes a read's error on, and an abort ends it
// between two reads.
import t from 'tap';
import { delay, pollUntil } from '../../../harness/core/poll.js';
import { hostMs } from '../../../harness/core/timeouts.js';

t.test('returns the first reading that satisfies it, after as many reads as it took', async (t) => {
  let n = 0;
  const r = await pollUntil(() => ++n, (v) => v === 3, { everyMs: 5, deadlineMs: 1000 });
  t.same(r.ok && r.value, 3);
  t.equal(n, 3, 'three reads');
});

t.test('gives up at its deadline, with the last reading, and reads once more on the deadline', async (t) => {
  const seen: number[] = [];
  const started = Date.now();
  const r = await pollUntil(() => seen.push(Date.now() - started), () => false, { everyMs: 40, deadlineMs: 100 });
  t.notOk(r.ok);
  if (!r.ok) t.equal(r.last, seen.length, 'the last reading is returned');
  t.ok(r.elapsedMs >= 100 && r.elapsedMs < 400, `gave up after ${r.elapsedMs} ms`);
  t.ok(seen.at(-1)! >= 95, `the last read fell on the deadline (${seen.at(-1)} ms)`);
});

t.test("a read's error ends the poll with that error", async (t) => {
  let n = 0;
  await t.rejects(
    pollUntil(
      () => {
        if (++n === 2) throw new Error('QMP says failed');
        return n;
      },
      () => false,
      { everyMs: 1, deadlineMs: 1000 },
    ),
    /QMP says failed/,
  );
  t.equal(n, 2);
});

t.test('an abort ends it during its pause, with the reason', async (t) => {
  const ac = new AbortController();
  setTimeout(() => ac.abort(new Error('run interrupted')), 30);
  const started = Date.now();
  await t.rejects(pollUntil(() => 0, () => false, { everyMs: 10_000, deadlineMs: 60_000, signal: ac.signal }), /run interrupted/);
  t.ok(Date.now() - started < 2000, 'at once, not after the pause');
  await t.rejects(delay(10, ac.signal), /run interrupted/, 'a delay on an aborted signal ends at once');
});

t.test('host deadlines grow with KLP_HARNESS_TIMEOUT_SCALE, intervals do not', async (t) => {
  const before = { qmp: hostMs('qmpConnect'), poll: hostMs('qmpPoll') };
  process.env.KLP_HARNESS_TIMEOUT_SCALE = '3';
  t.teardown(() => delete process.env.KLP_HARNESS_TIMEOUT_SCALE);
  t.equal(hostMs('qmpConnect'), before.qmp * 3);
  t.equal(hostMs('qmpPoll'), before.poll);
});
