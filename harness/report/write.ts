// Writes a run's (or a merge's) four reports into its folder.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { toHTML } from './html.js';
import { toJUnit } from './junit.js';
import { toKTAP } from './ktap.js';
import type { RunReport } from './run-report.js';
import { ARTIFACTS } from './result.js';

/** summary.json (with `extra` fields, e.g. a merge's missing shards), junit.xml, ktap.txt and report.html in report.outDir. */
export function writeReportFiles(report: RunReport, extra: Record<string, unknown> = {}): void {
  mkdirSync(report.outDir, { recursive: true });
  writeFileSync(join(report.outDir, ARTIFACTS.summary), JSON.stringify({ ...report, ...extra }, null, 2) + '\n');
  writeFileSync(join(report.outDir, ARTIFACTS.junit), toJUnit(report));
  writeFileSync(join(report.outDir, ARTIFACTS.ktap), toKTAP(report));
  writeFileSync(join(report.outDir, ARTIFACTS.html), toHTML(report));
}
