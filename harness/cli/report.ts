// `klp-harness report RUN_DIR...`: one trend page over several runs.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { EXIT, usageError } from '../core/errors.js';
import { loadRun, REPORT_USAGE, toTrendHTML } from '../report/trend.js';
import { commandOptions } from './options.js';

export const parseReport = commandOptions('report', { out: { type: 'string', arg: 'FILE', help: 'the page to write (default: trend.html)' } } as const);

/** Reads the summaries, writes the page, says where. */
export function reportCommand({ values, positionals: paths }: ReturnType<typeof parseReport>): number {
  if (!paths.length) throw usageError('report needs at least one run folder or summary.json', { hint: REPORT_USAGE });
  const runs = paths.map(loadRun).sort((a, b) => a.started.localeCompare(b.started));
  const file = resolve(values.out ?? 'trend.html');
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, toTrendHTML(runs));
  process.stdout.write(`klp-harness report: ${runs.length} run(s) from ${runs[0]!.started} to ${runs.at(-1)!.started}: ${file}\n`);
  return EXIT.ok;
}
