// Sharding and merging: --shard I/N picks a deterministic part of the
// scenario list; `merge` puts shard summaries back into one report.
import { readFileSync } from 'node:fs';
import { usageError } from './errors.js';
import { overallExit, type ArchReport, type RunReport } from './pipeline.js';
import type { Scenario } from './scenarios/types.js';

/** Parses "I/N" (1-based). */
export function parseShard(value: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(value.trim());
  const index = Number(m?.[1]);
  const count = Number(m?.[2]);
  if (!m || count < 1 || index < 1 || index > count) {
    throw usageError(`bad --shard '${value}'`, { hint: 'use I/N with 1 <= I <= N, e.g. --shard 2/3' });
  }
  return { index, count };
}

/** Scenario i (0-based, in registry order) belongs to shard (i mod N) + 1. */
export function shardScenarios<T extends Pick<Scenario, 'name'>>(all: readonly T[], shard: { index: number; count: number }): T[] {
  return all.filter((_, i) => i % shard.count === shard.index - 1);
}

/** Merges shard summaries into one: per arch, scenarios in registry order. */
export function mergeReports(reports: RunReport[], order: readonly string[], outDir: string): RunReport {
  if (reports.length === 0) throw usageError('merge needs at least one summary.json');
  const rank = (name: string) => (order.indexOf(name) < 0 ? order.length : order.indexOf(name));
  const arches = new Map<string, ArchReport>();
  for (const r of reports) {
    for (const a of r.arches) {
      const m = arches.get(a.arch) ?? { ...a, boots: [], scenarios: [], error: undefined };
      m.boots.push(...a.boots);
      m.scenarios.push(...a.scenarios);
      m.error ??= a.error;
      m.build ??= a.build;
      m.image ??= a.image;
      arches.set(a.arch, m);
    }
  }
  const merged: RunReport = {
    started: reports.map((r) => r.started).sort()[0]!,
    durationMs: Math.max(...reports.map((r) => r.durationMs)),
    outDir,
    cacheDir: reports[0]!.cacheDir,
    source: reports[0]!.source,
    arches: [...arches.values()].sort((a, b) => a.arch.localeCompare(b.arch)),
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
    return JSON.parse(readFileSync(path, 'utf8')) as RunReport;
  } catch (e) {
    throw usageError(`cannot read summary ${path}: ${(e as Error).message}`, { hint: 'give the summary.json files that runs wrote' });
  }
}
