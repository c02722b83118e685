// The human summary printed at the end of a run.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { knownCounts } from './known-failures.js';
import { ARTIFACTS, resultOf, secs as secsOf } from './result.js';
import type { ArchReport, RunReport } from './run-report.js';

const secs = (ms?: number) => secsOf(ms, 1, '-');

export function formatSummary(r: RunReport): string {
  const out: string[] = ['', 'klp-harness summary'];
  out.push(`  source: ${r.source.kernelSrc} + ${r.source.patches} (${r.source.reused ? 'cached' : 'prepared'} ${secs(r.source.durationMs)})`);
  for (const a of r.arches) {
    out.push(`  ${a.kernel ? `${a.kernel} ` : ''}${a.arch} (linux ${a.kernelVersion ?? '?'})`);
    out.push(`    build:        ${a.build ? `${secs(a.build.durationMs)}${a.build.reused ? ' (cached, no make)' : ''}` : '-'}`);
    out.push(`    image:        ${a.image ? `${secs(a.image.durationMs)}${a.image.reused ? ' (cached)' : ''}` : '-'}`);
    out.push(...guestLines(a.boots));
    if (a.scenarios.length) {
      const rows = a.scenarios.map((s) => {
        const { stuckSeenMs, remedyToDoneMs, ...rest } = s.timings;
        const other = Object.entries(rest).map(([k, v]) => `${k}=${secs(v)}`).join(' ');
        const checks = s.steps.reduce((n, st) => n + st.checks.length, 0);
        const word = resultOf(s);
        const result = word === 'FAIL' && s.fault ? `FAIL (${s.fault})` : word;
        return [s.name, s.cpu ?? '', result, String(checks), secs(stuckSeenMs), secs(remedyToDoneMs), secs(s.durationMs), other];
      });
      out.push(...table(['scenario', 'cpu', 'result', 'checks', 'stuck seen', 'remedy->done', 'total', 'other'], rows).map((l) => `    ${l}`));
    }
    for (const s of a.scenarios.filter((x) => x.skipped)) out.push(`    skipped ${s.name}${s.cpu ? `/${s.cpu}` : ''}: ${s.skipped}`);
    for (const s of a.scenarios.filter((x) => x.known)) {
      const what = s.known!.status === 'xfail' ? 'expected failure' : 'XPASS (listed as failing, passed: remove its entry)';
      out.push(`    ${s.known!.status} ${s.name}${s.cpu ? `/${s.cpu}` : ''}: ${what}: ${s.known!.because.join('; ')}`);
    }
    if (a.error) out.push(`    error: ${a.error.kind}: ${a.error.message}`);
  }
  if (r.interrupted) out.push(`  interrupted: ${r.interrupted}; scenarios marked INTERRUPTED did not run to their end`);
  const all = r.arches.flatMap((a) => a.scenarios);
  const skipped = all.filter((s) => s.skipped).length;
  const passed = all.filter((s) => s.ok && !s.skipped && !s.known).length;
  const known = knownCounts(r);
  const expected = known.xfail || known.xpass ? `, ${known.xfail} expected failures (XFAIL), ${known.xpass} unexpected passes (XPASS)` : '';
  out.push(`  ${passed} passed, ${all.length - passed - skipped - known.xfail - known.xpass} failed, ${skipped} skipped${expected}`);
  for (const s of all.filter((x) => x.unchecked?.length)) out.push(`    not checked in ${s.arch} ${s.name}${s.cpu ? `/${s.cpu}` : ''}: ${s.unchecked!.join('; ')}`);
  for (const s of all.filter((x) => x.retried)) out.push(`    ${s.arch} ${s.name}${s.cpu ? `/${s.cpu}` : ''} ran twice: ${s.retried}`);
  // Its own line: expected failures do not fail the run, unexpected passes are to be removed from the list.
  if (r.knownFailures) out.push(`  known failures: ${known.xfail} expected (XFAIL), ${known.xpass} unexpected passes (XPASS); ${r.knownFailures.entries} entries in ${r.knownFailures.path}`);
  out.push(`  total: ${secs(r.durationMs)}, exit code ${r.exitCode}`);
  out.push(`  artifacts: ${r.outDir}`);
  out.push(`  summary:   ${r.outDir}/${ARTIFACTS.summary}`);
  out.push(`  junit:     ${r.outDir}/${ARTIFACTS.junit}`);
  out.push(`  ktap:      ${r.outDir}/${ARTIFACTS.ktap}`);
  out.push(`  page:      ${r.outDir}/report.html`);
  // A run over several kernels keeps each kernel's log in its own folder.
  const kernels = [...new Set(r.arches.map((a) => a.kernel).filter(Boolean))];
  // (a run of one binary kernel names it too, and keeps its log at the top)
  out.push(kernels.length && !existsSync(join(r.outDir, ARTIFACTS.log)) ? `  logs:      ${r.outDir}/<version>/${ARTIFACTS.log} (one folder per kernel)` : `  log:       ${r.outDir}/${ARTIFACTS.log}`);
  return out.join('\n') + '\n';
}

/** A plain-text table: columns padded to their widest cell. */
export function table(head: string[], rows: string[][]): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)];
}

/** One line per guest when few, else one per kind (booted, restored) with the median, the slowest and the CPU the guests used. */
function guestLines(boots: ArchReport['boots']): string[] {
  const cpu = (bs: typeof boots) => (bs.some((b) => b.cpuMs !== undefined) ? `, QEMU CPU ${secs(bs.reduce((s, b) => s + (b.cpuMs ?? 0), 0))} in all` : '');
  const out: string[] = [];
  for (const [label, kind] of [['restore to SSH', boots.filter((b) => b.restoredFrom)], ['boot to SSH   ', boots.filter((b) => !b.restoredFrom)]] as const) {
    if (kind.length === 0) continue;
    if (kind.length <= 3) {
      for (const b of kind) out.push(`    ${label}: ${secs(b.readyMs)} (cpu ${b.cpu})`);
      continue;
    }
    const ms = kind.map((b) => b.readyMs ?? 0).sort((x, y) => x - y);
    out.push(`    ${label}: median ${secs(ms[Math.floor(ms.length / 2)])}, slowest ${secs(ms[ms.length - 1])} over ${kind.length} guests${cpu(kind)}`);
  }
  const problem = boots.find((b) => b.snapshotProblem)?.snapshotProblem;
  if (problem) out.push(`    snapshots:    ${problem}`);
  return out;
}
