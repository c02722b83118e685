// The matrix over kernels (--kernel): one run per kernel, then one merged
// report over kernel x arch x scenario.
import { join } from 'node:path';
import { cacheRoot } from '../core/cache.js';
import { wasInterrupted } from '../proc/supervisor.js';
import { exitCodeFor, HarnessError } from '../core/errors.js';
import { projectPath } from '../core/paths.js';
import { kernelTarball, type KernelRecord } from '../kernel/kernels.js';
import { mergeReports } from '../report/merge.js';
import type { RunReport } from '../report/run-report.js';
import { writeReportFiles } from '../report/write.js';
import { SCENARIOS } from '../scenarios/index.js';
import { kselftest } from '../scenarios/kselftest.js';
import { runMain, runStamp, type RunOptions } from './run.js';

/**
 * One run per kernel (its source fetched, its own series unless --patches),
 * each in <out>/<kernel line>/, then one merged report in <out>. A kernel
 * that fails to fetch, patch or build does not stop the others.
 */
export async function runKernels(base: RunOptions, kernels: KernelRecord[]): Promise<RunReport> {
  const cacheDir = cacheRoot(base.cacheDir);
  const out = base.outDir ?? join(cacheDir, 'runs', `${runStamp()}-kernels`);
  const reports: RunReport[] = [];
  for (const k of kernels) {
    if (wasInterrupted()) break;
    const dir = join(out, k.line);
    try {
      const { tarball, version } = await kernelTarball(k, cacheDir, base.logger, base.rebuild?.includes('source'));
      base.logger.info(`kernel ${k.name}: ${tarball} (${version})`);
      reports.push(await runMain({ ...base, kernel: k, kernelSrc: tarball, patches: base.patches ?? projectPath(k.series), outDir: dir }));
    } catch (e) {
      // The kernel never got to a run of its own: one failed column in the report, with why.
      const err = e instanceof HarnessError ? e : new HarnessError('infra', String(e));
      base.logger.info(`kernel ${k.name}: ${err.message}`);
      reports.push({
        started: new Date().toISOString(),
        durationMs: 0,
        outDir: dir,
        cacheDir,
        source: { kernelSrc: k.package, patches: k.series },
        arches: base.arches.map((a) => ({ arch: a.name, kernel: k.name, boots: [], scenarios: [], error: { kind: err.kind, message: err.message, report: err.report(), exitCode: exitCodeFor(err) } })),
        exitCode: exitCodeFor(err),
      });
    }
  }
  const merged = mergeReports(reports, [...SCENARIOS.map((s) => s.name), kselftest.name], out);
  writeReportFiles(merged);
  return merged;
}
