// Several binary kernels in one run (--kernel debian-image:6.1,debian-image:6.12):
// one run each in <out>/<name>/, then one merged report, as for source kernels.
import { join } from 'node:path';
import { cacheRoot } from '../core/cache.js';
import { wasInterrupted } from '../proc/supervisor.js';
import { mergeReports } from '../report/merge.js';
import type { RunReport } from '../report/run-report.js';
import { writeReportFiles } from '../report/write.js';
import { ALL_SCENARIOS } from '../scenarios/index.js';
import type { BinarySource } from './prepare-binary.js';
import { runMain, runStamp, type RunOptions } from './run.js';

export async function runImages(base: RunOptions, sources: (BinarySource & { line: string })[]): Promise<RunReport> {
  if (sources.length === 1) return runMain({ ...base, binary: sources[0] });
  const out = base.outDir ?? join(cacheRoot(base.cacheDir), 'runs', `${runStamp()}-images`);
  const reports: RunReport[] = [];
  for (const s of sources) {
    if (wasInterrupted()) break;
    reports.push(await runMain({ ...base, binary: s, outDir: join(out, s.name.replace(/[^\w.-]+/g, '-')) }));
  }
  const merged = mergeReports(reports, ALL_SCENARIOS.map((s) => s.name), out);
  writeReportFiles(merged);
  return merged;
}
