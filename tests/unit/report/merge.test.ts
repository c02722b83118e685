import t from 'tap';
import { EXIT } from '../../../harness/core/errors.js';
import { toJUnit } from '../../../harness/report/junit.js';
import { mergeReports, readSummary } from '../../../harness/report/merge.js';
import { shardScenarios } from '../../../harness/scenarios/shard.js';
import { overallExit, type RunReport } from '../../../harness/report/run-report.js';
import { SCENARIOS } from '../../../harness/scenarios/index.js';
import type { ScenarioReport } from '../../../harness/scenarios/types.js';
import { fixture } from '../../helpers.js';

const names = SCENARIOS.map((s) => s.name);

function scenario(arch: string, name: string, cpu: string, ok: boolean): ScenarioReport {
  return {
    name,
    arch,
    cpu,
    ok,
    durationMs: 1000,
    timings: { remedyToDoneMs: 200 },
    steps: [{ name: 'step', durationMs: 5, checks: [{ what: 'transition', expected: '0', actual: ok ? '0' : '1', ok }] }],
    error: ok ? undefined : 'check failed in step: transition',
  };
}

/** A run of the given scenarios on both arches, as runMain reports it. */
function runOf(selected: string[]): RunReport {
  const arches = [
    { arch: 'ppc64le', cpus: ['power9', 'power8'] },
    { arch: 'x86_64', cpus: ['max'] },
  ].map(({ arch, cpus }) => ({
    arch,
    boots: [],
    scenarios: selected.flatMap((n) => {
      const all = SCENARIOS.find((s) => s.name === n)!.allCpus ? cpus : cpus.slice(0, 1);
      return all.map((cpu) => scenario(arch, n, cpu, !(arch === 'ppc64le' && n === 'reverse')));
    }),
  }));
  const r: RunReport = { started: '2026-11-27T00:00:00Z', durationMs: 1, outDir: '/o', cacheDir: '/c', source: { kernelSrc: 'k', patches: 'p' }, arches, exitCode: 0 };
  r.exitCode = overallExit(r);
  return r;
}

const normalize = (r: RunReport) => ({
  exitCode: r.exitCode,
  arches: r.arches.map((a) => ({ arch: a.arch, scenarios: a.scenarios.map((s) => [s.name, s.cpu, s.ok, s.steps]) })),
});

t.test('merging shard summaries equals the unsharded result', async (t) => {
  const whole = runOf(names);
  const shards = [1, 2].map((i) => runOf(shardScenarios(SCENARIOS, { index: i, count: 2 }).map((s) => s.name)));
  const merged = mergeReports(shards, names, '/merged');
  t.same(normalize(merged), normalize(whole));
  t.equal(merged.exitCode, EXIT.testsFailed, 'the failing shard decides the exit code');
  const cases = (x: string) => [...x.matchAll(/<testcase classname="([^"]+)" name="([^"]+)"/g)].map((m) => `${m[1]}/${m[2]}`);
  t.same(cases(toJUnit(merged)), cases(toJUnit(whole)), 'same JUnit test cases');
  t.match(toJUnit(merged), /<failure message="check failed in step: transition">/);
});

t.test('a summary from before the rename of bootMs reads with its guests ready times', async (t) => {
  const r = readSummary(fixture('run-report.json'));
  const boots = r.arches.flatMap((a) => a.boots);
  t.ok(boots.length > 0);
  t.ok(boots.every((b) => typeof b.readyMs === 'number' && b.readyMs > 0), 'every guest has its readyMs (3317, 5722, ...)');
});
