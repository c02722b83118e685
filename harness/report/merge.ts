// Merging: `merge` puts the summaries of shards (scenarios/shard.ts) back
// into one report.
import { readFileSync } from 'node:fs';
import { usageError } from '../core/errors.js';
import { overallExit, type ArchReport, type RunReport } from './run-report.js';

/** Merges shard summaries into one: per arch, scenarios in registry order. */
export function mergeReports(reports: RunReport[], order: readonly string[], outDir: string): RunReport {
  if (reports.length === 0) throw usageError('merge needs at least one summary.json');
  const rank = (name: string) => (order.indexOf(name) < 0 ? order.length : order.indexOf(name));
  const arches = new Map<string, ArchReport>();
  for (const r of reports) {
    for (const a of r.arches) {
      // Kernel and arch together name a column of the matrix.
      const id = `${a.kernel ?? ''}/${a.arch}`;
      const m = arches.get(id) ?? { ...a, boots: [], scenarios: [], error: undefined };
      m.boots.push(...a.boots);
      m.scenarios.push(...a.scenarios);
      m.error ??= a.error;
      m.build ??= a.build;
      m.image ??= a.image;
      arches.set(id, m);
    }
  }
  const merged: RunReport = {
    started: reports.map((r) => r.started).sort()[0]!,
    durationMs: Math.max(...reports.map((r) => r.durationMs)),
    outDir,
    cacheDir: reports[0]!.cacheDir,
    source: reports[0]!.source,
    knownFailures: reports.find((r) => r.knownFailures)?.knownFailures,
    arches: [...arches.values()].sort((a, b) => (a.kernel ?? '').localeCompare(b.kernel ?? '', 'en', { numeric: true }) || a.arch.localeCompare(b.arch)),
    exitCode: 0,
  };
  for (const a of merged.arches) {
    // Stable sort: CPU models keep the order the arch record gives them.
    a.scenarios.sort((x, y) => rank(x.name) - rank(y.name));
    a.boots.sort((x, y) => rank(x.scenario) - rank(y.scenario));
  }
  merged.exitCode = overallExit(merged);
  return merged;
}

export function readSummary(path: string): RunReport {
  try {
    const r = JSON.parse(readFileSync(path, 'utf8')) as RunReport;
    // Summaries written before the field's rename.
    for (const a of r.arches ?? []) for (const b of a.boots ?? []) (b as { readyMs?: number; bootMs?: number }).readyMs ??= (b as { bootMs?: number }).bootMs;
    return r;
  } catch (e) {
    throw usageError(`cannot read summary ${path}: ${(e as Error).message}`, { hint: 'give the summary.json files that runs wrote' });
  }
}

/**
 * What a merge lacks, from what each summary says it was asked to run (its
 * scenario selection and shard): shards not given, and scenarios of the
 * selection that no summary reports for an arch that did not fail outright.
 */
export function missingFromMerge(reports: RunReport[], merged: RunReport): string[] {
  const sel = reports.map((r) => r.selection).filter((s): s is NonNullable<RunReport['selection']> => !!s);
  if (sel.length === 0) return [];
  const out: string[] = [];
  const counts = [...new Set(sel.map((s) => s.shard?.count ?? 1))];
  if (counts.length > 1) out.push(`summaries from different shardings (${counts.map((c) => `N=${c}`).join(', ')})`);
  const count = Math.max(...counts);
  const have = new Set(sel.map((s) => s.shard?.index ?? 1));
  const absent = Array.from({ length: count }, (_, i) => i + 1).filter((i) => !have.has(i));
  if (absent.length) out.push(`shard${absent.length > 1 ? 's' : ''} ${absent.map((i) => `${i}/${count}`).join(', ')} not given`);
  const wanted = [...new Set(sel.flatMap((s) => s.scenarios))];
  for (const a of merged.arches) {
    if (a.error) continue;
    const ran = new Set(a.scenarios.map((s) => s.name));
    const lost = wanted.filter((n) => !ran.has(n));
    if (lost.length) out.push(`${a.arch}: no result for ${lost.join(', ')}`);
  }
  return out;
}
