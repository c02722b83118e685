// --shard I/N: parsed strictly; the shards of a list are disjoint, cover it, and are the same every time.
import t from 'tap';
import { SCENARIOS } from '../../../harness/scenarios/index.js';
import { parseShard, shardScenarios } from '../../../harness/scenarios/shard.js';

const names = SCENARIOS.map((s) => s.name);

t.test('--shard parses I/N and rejects nonsense', async (t) => {
  t.same(parseShard('2/3'), { index: 2, count: 3 });
  for (const bad of ['0/2', '3/2', 'x', '1/0']) t.throws(() => parseShard(bad), /bad --shard/);
});

t.test('shards are disjoint and cover the scenario list', async (t) => {
  const parts = [1, 2, 3].map((i) => shardScenarios(SCENARIOS, { index: i, count: 3 }).map((s) => s.name));
  t.same(parts.flat().sort(), [...names].sort());
  t.equal(new Set(parts.flat()).size, names.length);
  t.same(shardScenarios(SCENARIOS, { index: 1, count: 3 }).map((s) => s.name), parts[0], 'deterministic');
});
