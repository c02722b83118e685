// `klp-harness merge --out DIR SUMMARY.json...`: shards back into one report.
import { resolve } from 'node:path';
import { usageError } from '../core/errors.js';
import { mergeReports, missingFromMerge, readSummary } from '../report/merge.js';
import { formatSummary } from '../report/summary.js';
import { writeReportFiles } from '../report/write.js';
import { SCENARIOS } from '../scenarios/index.js';
import { commandOptions } from './options.js';

export const parseMerge = commandOptions('merge', { out: { type: 'string', arg: 'DIR', help: 'where the merged report and JUnit file go' } } as const);

export function mergeCommand({ values, positionals: files }: ReturnType<typeof parseMerge>): number {
  if (!values.out || files.length === 0) throw usageError('merge needs --out DIR and at least one summary.json');
  const reports = files.map(readSummary);
  const merged = mergeReports(reports, SCENARIOS.map((s) => s.name), resolve(values.out));
  const missing = missingFromMerge(reports, merged);
  writeReportFiles(merged, { missing: missing.length ? missing : undefined });
  process.stdout.write(formatSummary(merged));
  if (missing.length) {
    // The merged report is written (it holds what did run), but an incomplete set must not pass.
    throw usageError(`merge is missing part of the run: ${missing.join('; ')}`, {
      hint: "give every shard's summary.json (a shard whose job died left none: run it again)",
    });
  }
  return merged.exitCode;
}
