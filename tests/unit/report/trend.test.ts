// The trend page over several summaries, and the `report` subcommand's bad
// input through the real command line.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { EXIT } from '../../../harness/core/errors.js';
import type { RunReport } from '../../../harness/report/run-report.js';
import type { ScenarioReport } from '../../../harness/scenarios/types.js';
import { sparkline, toTrendHTML } from '../../../harness/report/trend.js';
import { runCli } from '../../cli-helpers.js';
import { tempDir } from '../../helpers.js';

const scenario = (name: string, ok: boolean, stuckSeenMs: number): ScenarioReport => ({
  name,
  arch: 'x86_64',
  cpu: 'max',
  ok,
  steps: [{ name: 'step', durationMs: 1, checks: [{ what: 'transition', expected: '0', actual: ok ? '0' : '1', ok }] }],
  durationMs: 9000 + stuckSeenMs,
  timings: { stuckSeenMs, remedyToDoneMs: 400 },
  error: ok ? undefined : 'check failed in step: transition',
});

const run = (started: string, scenarios: ScenarioReport[]): RunReport => ({
  started,
  durationMs: 1,
  outDir: `/runs/${started}`,
  cacheDir: '/cache',
  source: { kernelSrc: 'k', patches: 'p' },
  arches: [{ arch: 'x86_64', kernelVersion: '6.1.192', boots: [], scenarios }],
  exitCode: scenarios.every((s) => s.ok) ? 0 : 1,
});

// Three nights: replace-signal flips, signal-user-int's stuck time creeps up, auto-signal only ran on the last.
const nights = [
  run('2026-11-25T02:00:00.000Z', [scenario('signal-user-int', true, 3700), scenario('replace-signal', true, 3500)]),
  run('2026-11-26T02:00:00.000Z', [scenario('signal-user-int', true, 4100), scenario('replace-signal', false, 3600)]),
  run('2026-11-27T02:00:00.000Z', [scenario('signal-user-int', true, 4900), scenario('replace-signal', true, 3400), scenario('auto-signal', true, 0)]),
];

const rowOf = (html: string, name: string) => new RegExp(`<tr class="[^"]*" data-scenario="${name}"[\\s\\S]*?</tr>`).exec(html)?.[0] ?? '';

t.test('a scenario that flips shows both colours and is called flaky', async (t) => {
  const html = toTrendHTML([nights[2]!, nights[0]!, nights[1]!].sort((a, b) => a.started.localeCompare(b.started)));
  const row = rowOf(html, 'replace-signal');
  t.same([...row.matchAll(/data-result="(\w+)"/g)].map((m) => m[1]), ['PASS', 'FAIL', 'PASS'], 'one cell per run, in time order');
  t.match(row, /<tr class="scenario flaky"/);
  t.notMatch(rowOf(html, 'signal-user-int'), /flaky/);
  t.equal([...rowOf(html, 'auto-signal').matchAll(/class="cell absent"/g)].length, 2, 'runs without the scenario are marked absent');
  t.notMatch(html, /<script|(href|src)="https?:|url\(/, 'self-contained: no script, no link out');
});

t.test('timings are sparklines, one point per run', async (t) => {
  const row = rowOf(toTrendHTML(nights), 'signal-user-int');
  const spark = /<svg class="sparkline" data-metric="stuckSeenMs"[\s\S]*?<\/svg>/.exec(row)?.[0] ?? '';
  t.ok(spark, 'a stuckSeenMs sparkline');
  t.equal([...spark.matchAll(/<circle /g)].length, 3);
  const ys = [...(/<polyline points="([^"]+)"/.exec(spark)?.[1] ?? '').matchAll(/,([\d.]+)/g)].map((m) => Number(m[1]));
  t.ok(ys.length === 3 && ys[0]! > ys[1]! && ys[1]! > ys[2]!, 'a growing stuck time climbs (SVG y goes down)');
  t.match(row, /4\.90 s/, 'the last value is written next to it');
  t.match(row, /data-metric="remedyToDoneMs"/);
  t.match(row, /data-metric="durationMs"/);
  t.match(sparkline([1000, undefined, 3000], 'x'), /^(?![\s\S]*<polyline)/, 'a missing run breaks the line');
});

t.test('klp-harness report: a missing path or unreadable JSON is bad usage naming it', async (t) => {
  const missing = await runCli(['report', '/nonexistent']);
  t.equal(missing.code, EXIT.usage);
  t.match(missing.stderr, /no summary\.json at \/nonexistent/);
  const dir = tempDir(t);
  const bad = join(dir, 'summary.json');
  writeFileSync(bad, '{"started": ');
  const broken = await runCli(['report', dir]);
  t.equal(broken.code, EXIT.usage);
  t.match(broken.stderr, new RegExp(`cannot read summary ${bad}`));
  writeFileSync(bad, '[]');
  t.match((await runCli(['report', bad])).stderr, /is not a klp-harness summary/);
  t.equal((await runCli(['report'])).code, EXIT.usage, 'no path at all');
});

t.test('klp-harness report writes the page where --out says', async (t) => {
  const dir = tempDir(t);
  const paths = nights.map((n, i) => {
    const d = join(dir, `night-${i}`);
    mkdirSync(d);
    writeFileSync(join(d, 'summary.json'), JSON.stringify(n));
    return i === 1 ? join(d, 'summary.json') : d;
  });
  const out = join(dir, 'site/trend.html');
  const r = await runCli(['report', ...paths.reverse(), '--out', out]);
  t.equal(r.code, EXIT.ok, r.stderr);
  t.match(r.stdout, /3 run\(s\) from 2026-11-25T02:00:00.000Z to 2026-11-27T02:00:00.000Z/);
  t.match(readFileSync(out, 'utf8'), /data-scenario="replace-signal"/);
});
