// The scenario times a run orders its queue by: a guess until measured, then the record (averaged), per arch and CPU.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getArch } from '../../../harness/core/arch.js';
import { resetSlackMs } from '../../../harness/pipeline/run.js';
import { RunTimes } from '../../../harness/pipeline/run-times.js';

const x86 = getArch('x86_64');
const ppc = getArch('ppc64le');
const stuck = { scenario: { name: 'force-user-idle' }, cpu: 'max' };
const auto = { scenario: { name: 'auto-signal', expectedSeconds: 20 }, cpu: 'max' };

function cache(t: { teardown(fn: () => void): void }) {
  const dir = mkdtempSync(join(tmpdir(), 'klp-times-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('before any run: the scenario guess, or 7 s, scaled by the arch', async (t) => {
  const times = RunTimes.load(cache(t));
  t.equal(times.expectedMs(x86, stuck), 7000);
  t.equal(times.expectedMs(x86, auto), 20000);
  t.equal(times.expectedMs(ppc, { ...auto, cpu: 'power9' }), 20000 * ppc.guestClockScale);
});

t.test('a run records what it measured; the next run orders by it, per arch and CPU model', async (t) => {
  const dir = cache(t);
  const first = RunTimes.load(dir);
  first.record(x86, stuck, 1500);
  first.record(ppc, { ...stuck, cpu: 'power8' }, 9000);
  t.equal(first.expectedMs(x86, stuck), 7000, 'a run keeps the order it started with');
  first.save();
  const next = RunTimes.load(dir);
  t.equal(next.expectedMs(x86, stuck), 1500);
  t.equal(next.expectedMs(ppc, { ...stuck, cpu: 'power8' }), 9000);
  t.equal(next.expectedMs(ppc, { ...stuck, cpu: 'power9' }), 7000 * ppc.guestClockScale, 'another CPU model is not measured yet');
  t.equal(next.expectedMs(x86, auto), 20000, 'another scenario is not measured yet');
  next.record(x86, stuck, 2500);
  next.save();
  t.equal(RunTimes.load(dir).expectedMs(x86, stuck), 2000, 'a new measure moves the record halfway');
  t.equal(RunTimes.load(dir).expectedMs(ppc, { ...stuck, cpu: 'power8' }), 9000, 'what this run did not measure stays');
});

t.test('a record written meanwhile by another run is kept', async (t) => {
  const dir = cache(t);
  const a = RunTimes.load(dir);
  const b = RunTimes.load(dir);
  b.record(x86, auto, 18000);
  b.save();
  a.record(x86, stuck, 3000);
  a.save();
  const after = RunTimes.load(dir);
  t.equal(after.expectedMs(x86, auto), 18000);
  t.equal(after.expectedMs(x86, stuck), 3000);
});

t.test('an unreadable or odd record is no record, and is rewritten', async (t) => {
  const dir = cache(t);
  const file = join(dir, 'scenario-times.json');
  for (const text of ['{not json', '[1,2]', '{"x86_64/max/force-user-idle":"soon"}', '{"x86_64/max/force-user-idle":-5}']) {
    writeFileSync(file, text);
    t.equal(RunTimes.load(dir).expectedMs(x86, stuck), 7000, text);
  }
  const times = RunTimes.load(dir);
  times.record(x86, stuck, 4000);
  times.save();
  t.same(JSON.parse(readFileSync(file, 'utf8')), { 'x86_64/max/force-user-idle': 4000 });
});

t.test('a run with nothing measured writes nothing; a cache it cannot write does not fail it', async (t) => {
  const dir = cache(t);
  RunTimes.load(dir).save();
  t.throws(() => readFileSync(join(dir, 'scenario-times.json')));
  const gone = RunTimes.load(join(dir, 'no', 'such', 'dir'));
  gone.record(x86, stuck, 1000);
  t.doesNotThrow(() => gone.save());
});

t.test('a reset in place may go first when its run is nearly as long: up to 2 s, and a fifth of the longest', async (t) => {
  t.equal(resetSlackMs(20000), 2000);
  t.equal(resetSlackMs(5000), 1000);
  t.equal(resetSlackMs(500), 100);
});
