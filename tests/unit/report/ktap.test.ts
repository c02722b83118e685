import t from 'tap';
import { ktapCounts, toKTAP } from '../../../harness/report/ktap.js';
import type { RunReport } from '../../../harness/report/run-report.js';
import type { ScenarioReport } from '../../../harness/scenarios/types.js';

const check = (what: string, ok: boolean) => ({ what, expected: '0', actual: ok ? '0' : '1', ok });
const scenario = (name: string, cpu: string, checks: ReturnType<typeof check>[], extra: Partial<ScenarioReport> = {}): ScenarioReport => ({
  name,
  arch: 'ppc64le',
  cpu,
  ok: checks.every((c) => c.ok),
  steps: [{ name: 'step #1', durationMs: 1, checks }],
  durationMs: 1,
  timings: {},
  ...extra,
});

const report = {
  started: '',
  durationMs: 1,
  outDir: '/tmp',
  cacheDir: '/tmp',
  source: { kernelSrc: 'k', patches: 'p' },
  exitCode: 1,
  arches: [
    {
      arch: 'ppc64le',
      kernelVersion: '6.1.192',
      boots: [],
      scenarios: [
        scenario('signal-user-int', 'power9', [check('transition', true), check('reader data\nsecond line', false)]),
        scenario('force-user-idle', 'power8', [], { skipped: 'this kernel has no /sys/kernel/livepatch/p/force' }),
      ],
    },
    { arch: 'x86_64', boots: [], scenarios: [], error: { kind: 'build', message: 'kernel build failed', report: '', exitCode: 2 } },
  ],
} as unknown as RunReport;

t.test('nested per arch, scenario and check, with diagnostics and SKIP', async (t) => {
  const text = toKTAP(report);
  const lines = text.split('\n');
  t.equal(lines[0], 'KTAP version 1');
  t.equal(lines[1], '1..2', 'one test per arch');
  t.ok(lines.includes('    # Subtest: ppc64le linux-6.1.192'));
  t.ok(lines.includes('        # Subtest: signal-user-int power9'));
  t.ok(lines.includes('        ok 1 step no.1: transition'), "a '#' in a name cannot start a directive");
  t.ok(lines.includes('        not ok 2 step no.1: reader data second line'), 'names stay on one line');
  t.ok(lines.includes('        # expected: 0'));
  t.ok(lines.includes('        # actual: 1'));
  t.ok(lines.includes('    not ok 1 signal-user-int power9'));
  t.match(text, /^ {4}ok 2 force-user-idle power8 # SKIP this kernel has no \/sys\/kernel\/livepatch\/p\/force$/m);
  t.match(text, /^ {4}not ok 1 pipeline\n {4}# build: kernel build failed$/m, 'an arch that stopped early is a failed leaf with the reason');
  t.match(text, /^not ok 2 x86_64$/m);
});

t.test('the counts a KTAP reader must arrive at', async (t) => {
  t.same(ktapCounts(report), { total: 4, passed: 1, failed: 2, skipped: 1, xfail: 0, xpass: 0 });
});
