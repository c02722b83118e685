// The guest scheduler: at most N at once, first come first served, and the default N from cores and memory.
import t from 'tap';
import { HarnessError } from '../../../harness/core/errors.js';
import { defaultJobs, GUESTS_PER_CORE, guestsPerCore, Slots } from '../../../harness/pipeline/slots.js';

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Named holders of a group that keep their slot until their end is called; `started` lists them in order. */
function holders(slots: Slots) {
  const started: string[] = [];
  const ends = new Map<string, () => void>();
  const hold = (name: string, group: string) =>
    slots.use(async () => {
      started.push(name);
      await new Promise<void>((r) => ends.set(name, r));
    }, group);
  return { started, ends, hold };
}

t.test('never more holders than slots; waiting ones start in the order they asked', async (t) => {
  const slots = new Slots(2);
  let now = 0;
  let most = 0;
  const started: number[] = [];
  await Promise.all(
    [0, 1, 2, 3, 4].map((i) =>
      slots.use(async () => {
        started.push(i);
        most = Math.max(most, ++now);
        await tick(20 + (i === 0 ? 40 : 0));
        now--;
      }),
    ),
  );
  t.equal(most, 2, 'two at once, never three');
  t.equal(slots.peak, 2);
  t.same(started, [0, 1, 2, 3, 4]);
});

t.test('with groups, a freed slot goes to the group that holds fewest; first come among equals', async (t) => {
  const slots = new Slots(2);
  const { started, ends, hold } = holders(slots);
  const all = [hold('a1', 'a'), hold('a2', 'a'), hold('a3', 'a'), hold('a4', 'a'), hold('b1', 'b'), hold('b2', 'b')];
  await tick(10);
  t.same(started, ['a1', 'a2'], 'a came first and holds both');
  ends.get('a1')!();
  await tick(10);
  t.same(started, ['a1', 'a2', 'b1'], 'b holds none: b1 goes before a3, which asked earlier');
  ends.get('a2')!();
  await tick(10);
  t.same(started.slice(3), ['a3'], 'a and b hold one each now: the first to ask (a3) goes');
  ends.get('b1')!();
  await tick(10);
  t.same(started.slice(4), ['b2'], 'b holds none again');
  for (const n of ['a3', 'b2']) ends.get(n)!();
  await tick(10);
  t.same(started.slice(5), ['a4']);
  ends.get('a4')!();
  await Promise.all(all);
  t.equal(slots.peak, 2);
});

t.test('reserved shares: a group takes no slot another group is owed, even before that group asks', async (t) => {
  const slots = new Slots(4);
  slots.reserve('x86_64', 1);
  slots.reserve('ppc64le', 3);
  t.same(Object.fromEntries(slots.shareOf()), { x86_64: 1, ppc64le: 3 }, 'in proportion to the work');
  const { started, ends, hold } = holders(slots);
  const all = ['x1', 'x2', 'x3'].map((n) => hold(n, 'x86_64'));
  await tick(10);
  t.same(started, ['x1'], 'x86_64 asked first but gets its share only: three slots wait for ppc64le');
  all.push(...['p1', 'p2', 'p3', 'p4'].map((n) => hold(n, 'ppc64le')));
  await tick(10);
  t.same(started, ['x1', 'p1', 'p2', 'p3']);
  ends.get('x1')!();
  await tick(10);
  t.same(started.slice(4), ['x2'], "x86_64's freed slot stays x86_64's");
  slots.release('ppc64le');
  await tick(10);
  t.same(started.slice(5), [], 'no slot is free yet');
  ends.get('p1')!();
  await tick(10);
  t.same(started.slice(5), ['x3'], 'ppc64le released its share: its freed slot goes to the group holding fewest');
  slots.release('x86_64');
  for (const n of ['x2', 'x3', 'p2', 'p3']) ends.get(n)!();
  await tick(10);
  t.same(started.slice(6), ['p4']);
  ends.get('p4')!();
  await Promise.all(all);
  t.equal(slots.peak, 4);
});

t.test('shares: whole slots summing to the size, at least one a group', async (t) => {
  const slots = new Slots(8);
  slots.reserve('a', 190);
  slots.reserve('b', 502);
  t.same(Object.fromEntries(slots.shareOf()), { a: 2, b: 6 });
  const tiny = new Slots(4);
  tiny.reserve('a', 1);
  tiny.reserve('b', 1000);
  t.same(Object.fromEntries(tiny.shareOf()), { a: 1, b: 3 }, 'a group with little work still gets one');
  tiny.release('a');
  t.same(Object.fromEntries(tiny.shareOf()), { b: 4 });
});

t.test('a holder that throws frees its slot', async (t) => {
  const slots = new Slots(1);
  const first = slots.use(async () => {
    throw new Error('boom');
  });
  await t.rejects(first, /boom/);
  t.equal(await slots.use(async () => 'next ran'), 'next ran');
});

t.test('a size that is not a positive whole number is refused', async (t) => {
  t.throws(() => new Slots(0), RangeError);
  t.throws(() => new Slots(1.5), RangeError);
});

t.test('the default: four guests per core, bounded by three quarters of the available memory, at least one', async (t) => {
  t.equal(defaultJobs({ cores: 2, availableMiB: 24_000 }, 1024).jobs, 8, 'cores bound it');
  t.equal(defaultJobs({ cores: 16, availableMiB: 4_000 }, 1024).jobs, 2, 'memory bounds it: 3000 MiB / 1324 MiB');
  t.equal(defaultJobs({ cores: 1, availableMiB: 300 }, 1024).jobs, 1, 'never below one');
  t.match(defaultJobs({ cores: 2, availableMiB: 24_000 }, 1024).why, /2 cores allow 8, 24000 MiB available allows 13 guests of 1024 MiB/);
});

t.test('KLP_HARNESS_GUESTS_PER_CORE sets the guests per core of the default; a bad value is bad usage', async (t) => {
  t.equal(guestsPerCore({}), GUESTS_PER_CORE, 'unset: the default');
  t.equal(guestsPerCore({ KLP_HARNESS_GUESTS_PER_CORE: ' ' }), GUESTS_PER_CORE, 'empty: the default');
  t.equal(guestsPerCore({ KLP_HARNESS_GUESTS_PER_CORE: '2' }), 2);
  const d = defaultJobs({ cores: 2, availableMiB: 24_000 }, 256, 2);
  t.equal(d.jobs, 4);
  t.match(d.why, /2 cores allow 4 \(KLP_HARNESS_GUESTS_PER_CORE=2\)/, 'the log says where the figure came from');
  for (const bad of ['0', '1.5', '-2', 'four', '1e9']) {
    const e = (() => {
      try {
        guestsPerCore({ KLP_HARNESS_GUESTS_PER_CORE: bad });
      } catch (err) {
        return err;
      }
      return undefined;
    })();
    t.ok(e instanceof HarnessError && e.kind === 'usage', `'${bad}' is refused as bad usage`);
    t.match((e as Error).message, new RegExp(`KLP_HARNESS_GUESTS_PER_CORE='${bad.replace('.', '\\.')}'`));
  }
});
