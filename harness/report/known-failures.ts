// Known failures (known-failures.json at the project root, or --known-failures
// FILE): failures with a known cause, each with a reason and a link into the
// docs. A failure they all cover is reported as expected (XFAIL) and does not
// fail the run; a scenario one of them names that passes is reported as
// XPASS, counted and shown, so the list cannot rot; any other failure fails
// as before. Read once at the start of a run; a bad file is a usage error.
import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, join, normalize } from 'node:path';
import { usageError } from '../core/errors.js';
import type { ArchReport, RunReport, ScenarioOutcome } from './run-report.js';

export const KNOWN_FAILURES_FILE = 'known-failures.json';

export interface KnownFailure {
  /** `debian:7.2`, a version line (`6.1` matches 6.1.192, not 6.12), or `*`. */
  kernel: string;
  /** An arch name or `*`. */
  arch: string;
  /** A CPU model; absent or `*`: any. */
  cpu?: string;
  scenario: string;
  /**
   * A part of the scenario: text found in a failed check's name (a selftest
   * case is one: `test-ftrace.sh: livepatch a traced function ...`) or in
   * the name of the step that ended on an error. Absent: the whole scenario.
   */
  case?: string;
  reason: string;
  /** A path into the project's docs, with an optional #anchor: README.md#... or docs/.... */
  docs: string;
}

export interface KnownFailures {
  path: string;
  entries: KnownFailure[];
}

/** What a known failure made of a scenario's outcome. */
export interface KnownOutcome {
  status: 'xfail' | 'xpass';
  /** The entries that applied, as "reason (docs)". */
  because: string[];
}

const FIELDS = new Set(['kernel', 'arch', 'cpu', 'scenario', 'case', 'reason', 'docs']);
const REQUIRED = ['kernel', 'arch', 'scenario', 'reason', 'docs'] as const;

/** What a file's entries may name: the known arches and scenarios, and the root their docs links are under. */
export interface KnownNames {
  arches: readonly string[];
  scenarios: readonly string[];
  root: string;
}

/** Parses and checks a known-failures file's text; every problem is a usage error naming the file (and the entry). */
export function parseKnownFailures(text: string, path: string, names: KnownNames): KnownFailure[] {
  const bad = (what: string) => usageError(`known failures ${path}: ${what}`, { hint: `fix or remove the file (format: README.md, "Known failures")` });
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw bad(`not valid JSON: ${(e as Error).message}`);
  }
  const list = (data as { failures?: unknown } | null)?.failures;
  if (typeof data !== 'object' || data === null || Array.isArray(data) || !Array.isArray(list)) throw bad('expected an object with a "failures" array');
  const unknownTop = Object.keys(data).filter((k) => k !== 'failures' && k !== 'comment');
  if (unknownTop.length) throw bad(`unknown key${unknownTop.length > 1 ? 's' : ''} ${unknownTop.map((k) => `"${k}"`).join(', ')} (only "failures" and "comment")`);
  return list.map((raw, i) => {
    const at = (what: string) => bad(`failures[${i}]: ${what}`);
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw at('not an object');
    const e = raw as Record<string, unknown>;
    const extra = Object.keys(e).filter((k) => !FIELDS.has(k));
    if (extra.length) throw at(`unknown field${extra.length > 1 ? 's' : ''} ${extra.map((k) => `"${k}"`).join(', ')} (fields: ${[...FIELDS].join(', ')})`);
    for (const k of REQUIRED) if (typeof e[k] !== 'string' || !(e[k] as string).trim()) throw at(`"${k}" must be a non-empty string`);
    for (const k of ['cpu', 'case'] as const) if (e[k] !== undefined && (typeof e[k] !== 'string' || !(e[k] as string).trim())) throw at(`"${k}" must be a non-empty string when given`);
    const entry = e as unknown as KnownFailure;
    if (entry.arch !== '*' && !names.arches.includes(entry.arch)) throw at(`unknown arch "${entry.arch}" (use one of: ${names.arches.join(', ')}, *)`);
    if (!names.scenarios.includes(entry.scenario)) throw at(`unknown scenario "${entry.scenario}" (use one of: ${names.scenarios.join(', ')})`);
    if (entry.kernel !== '*' && !/^(debian:)?\d+\.\d+(\.\d+)*$/.test(entry.kernel)) throw at(`bad kernel "${entry.kernel}" (debian:X.Y, a version such as 6.1, or *)`);
    const file = entry.docs.split('#')[0]!;
    if (!file || isAbsolute(file) || normalize(file).startsWith('..') || !existsSync(join(names.root, file))) throw at(`docs "${entry.docs}" is not a file of the project (a path such as README.md#anchor)`);
    return entry;
  });
}

/** Reads a known-failures file. A missing default file is an empty list; a missing file that was asked for is a usage error. */
export function loadKnownFailures(path: string, names: KnownNames, asked: boolean): KnownFailures {
  if (!existsSync(path)) {
    if (asked) throw usageError(`known failures ${path}: no such file`, { hint: 'give an existing file to --known-failures' });
    return { path, entries: [] };
  }
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw usageError(`known failures ${path}: cannot read it: ${(e as Error).message}`);
  }
  return { path, entries: parseKnownFailures(text, path, names) };
}

/** `6.1` matches 6.1 and 6.1.192, not 6.12; `debian:6.1` matches that --kernel name, or a run of a 6.1 tree. */
export function kernelMatches(pattern: string, a: Pick<ArchReport, 'kernel' | 'kernelVersion'>): boolean {
  if (pattern === '*') return true;
  if (a.kernel === pattern) return true;
  const line = pattern.replace(/^debian:/, '');
  const v = a.kernelVersion ?? '';
  return v === line || v.startsWith(`${line}.`);
}

/** The entries that name this scenario on this kernel, arch and CPU. */
export function entriesFor(entries: readonly KnownFailure[], a: Pick<ArchReport, 'arch' | 'kernel' | 'kernelVersion'>, s: Pick<ScenarioOutcome, 'name' | 'cpu'>): KnownFailure[] {
  return entries.filter((e) => e.scenario === s.name && (e.arch === '*' || e.arch === a.arch) && (!e.cpu || e.cpu === '*' || e.cpu === s.cpu) && kernelMatches(e.kernel, a));
}

/** What failed in a scenario, by name: each failed check (`step: check`), each step that ended on an error without one, or the scenario's error. */
export function failedParts(s: ScenarioOutcome): string[] {
  const parts = s.steps.flatMap((st) => {
    const failed = st.checks.filter((c) => !c.ok).map((c) => `${st.name}: ${c.what}`);
    return failed.length ? failed : st.error ? [st.name] : [];
  });
  return parts.length || s.ok ? parts : [s.error?.split('\n')[0] ?? 'failed'];
}

const covers = (e: KnownFailure, part: string) => e.case === undefined || part.includes(e.case);
const because = (es: KnownFailure[]) => es.map((e) => `${e.reason} (${e.docs})`);

/**
 * Decides one outcome: XFAIL when it failed (a check or the kernel; not the
 * host, not an interrupt) and every failed part is covered by an entry;
 * XPASS when it passed and an entry names it (or one of its passing checks);
 * otherwise nothing (it fails or passes as before).
 */
export function judge(entries: readonly KnownFailure[], a: Pick<ArchReport, 'arch' | 'kernel' | 'kernelVersion'>, s: ScenarioOutcome): KnownOutcome | undefined {
  const mine = entriesFor(entries, a, s);
  if (!mine.length || s.skipped || s.interrupted || s.fault === 'infra' || s.fault === 'usage') return undefined;
  if (!s.ok) {
    const parts = failedParts(s);
    const used = mine.filter((e) => parts.some((p) => covers(e, p)));
    return parts.every((p) => mine.some((e) => covers(e, p))) ? { status: 'xfail', because: because(used) } : undefined;
  }
  // Passed: every entry for it is stale, as is a case entry whose check passed.
  return { status: 'xpass', because: because(mine) };
}

/** Marks every scenario outcome of a report that the known failures decide (s.known). */
export function applyKnownFailures(report: RunReport, known: KnownFailures | undefined): void {
  if (!known?.entries.length) return;
  for (const a of report.arches) for (const s of a.scenarios) s.known = judge(known.entries, a, s);
}

/** How many outcomes are expected failures and how many passed against the list. */
export function knownCounts(report: RunReport): { xfail: number; xpass: number } {
  const all = report.arches.flatMap((a) => a.scenarios);
  return { xfail: all.filter((s) => s.known?.status === 'xfail').length, xpass: all.filter((s) => s.known?.status === 'xpass').length };
}
