// Boot-ahead scheduling: each item on a resource of its own, the next one
// acquired while the current runs, everything disposed of however it ends.
import t from 'tap';
import { runAhead } from '../../../harness/pipeline/boot-ahead.js';

function fakeGuests() {
  const events: string[] = [];
  const acquire = async (name: string) => {
    events.push(`boot ${name}`);
    await new Promise((r) => setTimeout(r, 5));
    if (name === 'bad') throw new Error('bad did not boot');
    return { name, [Symbol.asyncDispose]: async () => void events.push(`stop ${name}`) };
  };
  return { events, acquire };
}

t.test('the next guest boots while the current one is used; each is stopped after its use', async (t) => {
  const { events, acquire } = fakeGuests();
  await runAhead(['a', 'b', 'c'], { acquire, use: async (name) => void events.push(`use ${name}`) });
  t.same(events, ['boot a', 'boot b', 'use a', 'stop a', 'boot c', 'use b', 'stop b', 'use c', 'stop c']);
});

t.test('a failed use stops its guest and the one booted ahead, and ends the run', async (t) => {
  const { events, acquire } = fakeGuests();
  const err = await runAhead(['a', 'b', 'c'], {
    acquire,
    use: async (name) => {
      if (name === 'a') throw new Error('a failed');
    },
  }).catch((e: Error) => e);
  t.match(err, { message: 'a failed' });
  t.same(events, ['boot a', 'boot b', 'stop a', 'stop b'], 'c never boots');
});

t.test('a failed boot is reported when its turn comes, after the earlier item ran', async (t) => {
  const { events, acquire } = fakeGuests();
  const err = await runAhead(['a', 'bad', 'c'], { acquire, use: async (name) => void events.push(`use ${name}`) }).catch((e: Error) => e);
  t.match(err, { message: 'bad did not boot' });
  t.same(events, ['boot a', 'boot bad', 'use a', 'stop a']);
});

t.test('beforeNext can stop the run (an interrupt) before another guest boots', async (t) => {
  const { events, acquire } = fakeGuests();
  const err = await runAhead(['a', 'b'], {
    acquire,
    use: async (name) => void events.push(`use ${name}`),
    beforeNext: () => {
      throw new Error('interrupted');
    },
  }).catch((e: Error) => e);
  t.match(err, { message: 'interrupted' });
  t.same(events, ['boot a', 'stop a']);
});
