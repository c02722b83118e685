// The debug kernel (kconfigs/debug.config: lockdep, sleep-in-atomic) on
// x86_64 and the race scenario on it: writers racing transitions, then the
// console check that fails on any lockdep or BUG report.
import { join } from 'node:path';
import t from 'tap';
import { getArch } from '../../harness/core/arch.js';
import { createLogger } from '../../harness/core/log.js';
import { PROJECT_ROOT } from '../../harness/core/paths.js';
import { runMain } from '../../harness/pipeline/run.js';
import { race } from '../../harness/scenarios/race.js';
import { formatSummary } from '../../harness/report/summary.js';

const logger = createLogger(process.env.KLP_HARNESS_VERBOSE ? 'verbose' : 'normal');
const report = await runMain({ arches: [getArch('x86_64')], scenarios: [race], kconfigExtra: [join(PROJECT_ROOT, 'kconfigs/debug.config')], logger });
t.comment(formatSummary(report));

const arch = report.arches[0]!;
t.notOk(arch.error, 'the debug kernel built, booted and ran', { report: arch.error?.report });
const r = arch.scenarios.find((s) => s.name === 'race');
t.ok(r, 'the race scenario ran');
t.equal(r?.skipped, undefined, 'not skipped: this kernel has lockdep');
for (const step of r?.steps ?? []) {
  t.test(step.name, async (t) => {
    t.notOk(step.error, 'no error in this step', { error: step.error });
    for (const c of step.checks) {
      if (c.pattern) t.match(c.actual, new RegExp(c.pattern.source, c.pattern.flags), c.what);
      else if (c.measured) t.ok(c.ok, `${c.what}: ${c.actual}, ${c.expected}`);
      else t.equal(c.actual, c.expected, c.what);
    }
  });
}
t.ok(r?.ok, 'race passed', { error: r?.error });
t.not(arch.build?.dir, undefined);
t.match(arch.build?.dir ?? '', /builds\/x86_64-/, 'a build directory of its own');
