// A long build says how far it is: against the last full build of the same
// config, at this build's own pace; a count alone when there was none.
import t from 'tap';
import { BuildProgress } from '../../../harness/kernel/build.js';

t.test('no earlier full build of the config: a count alone', async (t) => {
  const p = new BuildProgress(undefined);
  p.compiled = 987;
  t.equal(p.describe(), '987 objects compiled');
});

t.test('an earlier build: objects of the total and the time left at this pace', async (t) => {
  let now = 1_000_000;
  const p = new BuildProgress({ objects: 1100 }, () => now);
  p.compiled = 10;
  t.equal(p.describe(), '10 of ~1,100 objects', 'no pace yet after 10 objects');
  now += 200_000;
  p.compiled = 500; // 0.4 s an object, 600 to go
  t.equal(p.describe(), '500 of ~1,100 objects, about 240 s left');
  now += 195_000;
  p.compiled = 987;
  t.equal(p.describe(), '987 of ~1,100 objects, about 45 s left');
  p.compiled = 1100;
  t.equal(p.describe(), '1,100 of ~1,100 objects, linking');
});
