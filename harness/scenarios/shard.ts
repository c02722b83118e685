// Sharding: --shard I/N picks a deterministic part of the scenario list, so
// that N machines run one matrix; `klp-harness merge` puts their summaries
// back together (report/merge.ts).
import { usageError } from '../core/errors.js';
import type { Scenario } from './types.js';

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
