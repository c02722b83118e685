// The summary's count line: skips are counted apart from passes, and what a
// scenario could not check, or why it ran twice, is listed.
import t from 'tap';
import { formatSummary } from '../../../harness/report/summary.js';
import type { RunReport } from '../../../harness/report/run-report.js';
import type { ScenarioReport } from '../../../harness/scenarios/types.js';

const scenario = (name: string, ok: boolean, extra: Partial<ScenarioReport> = {}): ScenarioReport => ({ name, arch: 'x86_64', cpu: 'max', ok, steps: [], durationMs: 1, timings: {}, ...extra });

t.test('passed, failed and skipped, with what was not checked', async (t) => {
  const report = {
    started: '',
    durationMs: 1,
    outDir: '/tmp',
    cacheDir: '/tmp',
    source: { kernelSrc: 'k', patches: 'p' },
    exitCode: 1,
    arches: [
      {
        arch: 'x86_64',
        boots: [],
        scenarios: [
          scenario('sample', true),
          scenario('force-user-idle', true, { unchecked: ['that signal does not free user-idle: this kernel has no .../signal'] }),
          scenario('signal-user-int', true, { skipped: 'this kernel has no .../signal' }),
          scenario('replace-force', false),
          scenario('signal-kthread-int', true, { attempts: 2, retried: 'first run inconclusive: the kernel signalled first' }),
        ],
      },
    ],
  } as unknown as RunReport;
  const text = formatSummary(report);
  t.match(text, /^ {2}3 passed, 1 failed, 1 skipped$/m);
  t.match(text, /not checked in x86_64 force-user-idle\/max: that signal does not free user-idle/);
  t.match(text, /x86_64 signal-kthread-int\/max ran twice: first run inconclusive: the kernel signalled first/);
});
