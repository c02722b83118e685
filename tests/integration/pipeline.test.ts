// End to end on real kernels: build (or reuse) both, boot each in QEMU, run
// every scenario over SSH (KLP_HARNESS_SCENARIOS=a,b narrows it). Every
// assertion compares a reading from the guest with what was expected.
import { join } from 'node:path';
import t from 'tap';
import { archNames, parseArchList } from '../../harness/core/arch.js';
import { buildKernel } from '../../harness/kernel/build.js';
import { createLogger } from '../../harness/core/log.js';
import { PROJECT_ROOT } from '../../harness/core/paths.js';
import { runMain } from '../../harness/pipeline/run.js';
import { pickScenarios } from '../../harness/scenarios/index.js';
import { formatSummary } from '../../harness/report/summary.js';
import { kselftest } from '../../harness/scenarios/kselftest.js';
import { ktapCounts } from '../../harness/report/ktap.js';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const arches = parseArchList(process.env.KLP_HARNESS_ARCHES ?? archNames().join(','));
const logger = createLogger(process.env.KLP_HARNESS_VERBOSE ? 'verbose' : 'normal');
const only = process.env.KLP_HARNESS_SCENARIOS?.split(',').filter(Boolean);
// The upstream selftests run too unless the list was narrowed.
const scenarios = only ? pickScenarios(only) : [...pickScenarios(undefined), kselftest];
const report = await runMain({ arches, scenarios, logger });
t.comment(formatSummary(report));
t.comment(`artifacts: ${report.outDir}`);

for (const a of report.arches) {
  t.test(a.arch, async (t) => {
    t.notOk(a.error, `${a.arch} built, booted and ran without a harness or kernel error`, { report: a.error?.report });
    t.ok(a.build, 'kernel built or reused');
    for (const b of a.boots) t.ok((b.readyMs ?? 0) > 0, `ready (booted or restored) to SSH on cpu ${b.cpu} in ${b.readyMs} ms`);
    t.ok(a.scenarios.length > 0, 'scenarios ran');
    for (const s of a.scenarios) {
      t.test(`${s.name}${s.cpu ? ` (${s.cpu})` : ''}`, { skip: s.skipped ?? false }, async (t) => {
        for (const step of s.steps) {
          t.test(step.name, async (t) => {
            t.notOk(step.error, 'no error in this step', { error: step.error });
            t.ok(step.checks.length > 0, 'the step read something from the guest');
            for (const c of step.checks) {
              if (c.pattern) t.match(c.actual, new RegExp(c.pattern.source, c.pattern.flags), c.what);
              else if (c.measured) {
                const { value, limit, bound } = c.measured;
                t.ok(bound === 'atMost' ? value <= limit : value >= limit, `${c.what}: ${c.actual}, ${c.expected}`, { value, limit });
              } else t.equal(c.actual, c.expected, c.what);
            }
          });
        }
        t.ok(s.ok, `scenario ${s.name} passed`, { error: s.error });
      });
    }
    if (a.build && !a.error) {
      t.test('a second run reuses the cached kernel build (no make)', async (t) => {
        const again = await buildKernel({
          arch: parseArchList(a.arch)[0]!,
          tree: report.source.tree!,
          treeKey: report.source.treeKey!,
          series: report.source.series!,
          generation: report.source.generation!,
          kconfigDir: join(PROJECT_ROOT, 'kconfigs'),
          cacheDir: report.cacheDir,
          logger,
        });
        t.equal(again.reused, true, 'build reused');
        t.equal(again.buildDir, a.build!.dir, 'same build directory');
      });
    }
  });
}

t.test('ktap.txt reads back through the kernel\'s own parser (kunit.py parse) with the same counts', async (t) => {
  const ktap = join(report.outDir, 'ktap.txt');
  const kunit = join(report.source.tree ?? '', 'tools/testing/kunit/kunit.py');
  t.ok(existsSync(ktap), 'ktap.txt written');
  t.ok(existsSync(kunit), `kunit.py in the unpacked tree (${kunit})`);
  // kunit.py exits non-zero when a test failed; the counts are what matter here.
  const out = spawnSync('python3', [kunit, 'parse', ktap], { encoding: 'utf8', maxBuffer: 64 << 20 }).stdout ?? '';
  const line = /Ran (\d+) tests?: ?(.*)$/m.exec(out);
  t.ok(line, 'kunit.py printed its "Ran N tests" line', { tail: out.split('\n').slice(-5).join('\n') });
  const counts = Object.fromEntries([...(line?.[2] ?? '').matchAll(/(\w+): (\d+)/g)].map((m) => [m[1]!, Number(m[2])]));
  const ours = ktapCounts(report);
  t.equal(Number(line?.[1]), ours.total, 'tests');
  t.equal(counts.passed ?? 0, ours.passed, 'passed');
  t.equal(counts.failed ?? 0, ours.failed, 'failed');
  t.equal(counts.skipped ?? 0, ours.skipped, 'skipped');
  t.equal(counts.crashed ?? 0, 0, 'nothing the parser calls crashed');
  t.notMatch(out, /\[ERROR\]/, 'no parse errors');
});
