// What every report says of a scenario, decided in one place: its result
// word, how a duration is written, and the names of the files a run leaves.
import type { ScenarioOutcome } from './run-report.js';

export type Result = 'PASS' | 'FAIL' | 'SKIP' | 'INTERRUPTED' | 'XFAIL' | 'XPASS';

export function resultOf(s: ScenarioOutcome): Result {
  if (s.interrupted) return 'INTERRUPTED';
  if (s.skipped) return 'SKIP';
  // Decided by known-failures.json: an expected failure, or a pass of one listed as failing.
  if (s.known) return s.known.status === 'xfail' ? 'XFAIL' : 'XPASS';
  return s.ok ? 'PASS' : 'FAIL';
}

/** Seconds with `digits` decimals; `missing` for a timing the scenario does not have. */
export const secs = (ms: number | undefined, digits = 2, missing = '—') => (ms === undefined || !Number.isFinite(ms) ? missing : `${(ms / 1000).toFixed(digits)} s`);

/** The files of a run's folder, written by report/write.ts and pipeline/run.ts, linked by the page and the summary. */
export const ARTIFACTS = {
  summary: 'summary.json',
  junit: 'junit.xml',
  ktap: 'ktap.txt',
  html: 'report.html',
  log: 'harness.log',
} as const;
