// The trend page: `klp-harness report DIR...` puts several runs' summaries
// (nightly artifacts) side by side in time order, so a flaky scenario or a
// stuck time that creeps up shows at a glance. One self-contained HTML file.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { usageError } from '../core/errors.js';
import { esc } from './escape.js';
import { BASE_CSS } from './html.js';
import { ARTIFACTS, resultOf, secs, type Result } from './result.js';
import { readSummary } from './merge.js';
import type { RunReport, ScenarioOutcome } from './run-report.js';

export const REPORT_USAGE = 'klp-harness report RUN_DIR|summary.json... [--out FILE] (default FILE: trend.html)';

/** A run folder (its summary.json) or a summary.json itself; anything else is bad usage naming the path. */
export function loadRun(path: string): RunReport {
  const file = existsSync(path) && statSync(path).isDirectory() ? join(path, ARTIFACTS.summary) : path;
  if (!existsSync(file)) throw usageError(`no summary.json at ${path}`, { hint: `give run folders or their summary.json: ${REPORT_USAGE}` });
  const r = readSummary(file);
  if (!r || typeof r.started !== 'string' || !Array.isArray(r.arches)) throw usageError(`${file} is not a klp-harness summary (no started or arches)`, { hint: REPORT_USAGE });
  return r;
}

interface Row {
  arch: string;
  cpu: string;
  name: string;
  /** Per run, in time order; undefined where that run did not have the scenario. */
  cells: (ScenarioOutcome | undefined)[];
}

/** One row per scenario x arch x CPU. */
function rowsOf(runs: RunReport[]): Row[] {
  const rows = new Map<string, Row>();
  runs.forEach((r, i) => {
    for (const a of r.arches) {
      for (const s of a.scenarios) {
        const key = `${a.arch}\0${s.cpu ?? ''}\0${s.name}`;
        const row = rows.get(key) ?? { arch: a.arch, cpu: s.cpu ?? '', name: s.name, cells: runs.map(() => undefined) };
        row.cells[i] = s;
        rows.set(key, row);
      }
    }
  });
  // An arch's rows together (in the order the arches first appear), each in the order it first appears.
  const arches = [...new Set([...rows.values()].map((r) => r.arch))];
  return [...rows.values()].sort((a, b) => arches.indexOf(a.arch) - arches.indexOf(b.arch));
}

const TREND_CSS = `
td.cell { width: 16px; padding: 0; border: 1px solid #fff; } td.cell span { display: block; height: 22px; }
td.absent span { background: repeating-linear-gradient(45deg, #eef1f4, #eef1f4 3px, #fff 3px, #fff 6px); }
tr.flaky td.name::after { content: "flaky"; margin-left: 6px; font-size: 11px; font-weight: 700; color: #8a5a00; background: #fff1d6; padding: 0 4px; border-radius: 3px; }
td.spark { white-space: nowrap; } td.spark svg { vertical-align: middle; } td.spark span { font-size: 12px; color: #4a545e; margin-left: 4px; }
th.run { writing-mode: vertical-rl; transform: rotate(180deg); font-weight: 400; font-size: 11px; padding: 4px 0; }
.legend span.badge { min-width: 0; margin-right: 6px; }
`;

const METRICS: { key: string; title: string; of: (s: ScenarioOutcome) => number | undefined }[] = [
  { key: 'stuckSeenMs', title: 'stuck seen', of: (s) => s.timings.stuckSeenMs },
  { key: 'remedyToDoneMs', title: 'remedy → done', of: (s) => s.timings.remedyToDoneMs },
  { key: 'durationMs', title: 'duration', of: (s) => (s.interrupted || s.skipped ? undefined : s.durationMs) },
];

export function toTrendHTML(runs: RunReport[]): string {
  const rows = rowsOf(runs);
  const head = runs.map((r, i) => `<th class="run" title="${esc(r.outDir)}">${i + 1}. ${esc(r.started.slice(0, 16).replace('T', ' '))}</th>`).join('');
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>klp-harness trend: ${runs.length} runs</title>
<style>${BASE_CSS}${TREND_CSS}</style></head>
<body><main>
<h1>klp-harness trend: ${runs.length} run(s), ${esc(runs[0]?.started ?? '')} to ${esc(runs.at(-1)?.started ?? '')}</h1>
<p class="legend muted">oldest run on the left. <span class="badge PASS">PASS</span><span class="badge FAIL">FAIL</span><span class="badge SKIP">SKIP</span><span class="badge INTERRUPTED">INTERRUPTED</span> hatched: not in that run. Lines: the timing per run, lowest to highest of the row.</p>
<table class="trend"><thead><tr><th>scenario</th><th>arch / CPU</th>${head}${METRICS.map((m) => `<th>${esc(m.title)}</th>`).join('')}</tr></thead>
<tbody>
${rows.map(rowHTML).join('\n')}
</tbody></table>
</main></body></html>
`;
}

function rowHTML(row: Row): string {
  const results = row.cells.map((s) => (s ? resultOf(s) : undefined));
  const flaky = results.includes('PASS') && results.includes('FAIL');
  const cells = row.cells.map((s, i) => cellHTML(s, results[i]));
  const sparks = METRICS.map((m) => `<td class="spark">${sparkline(row.cells.map((s) => (s ? m.of(s) : undefined)), m.key)}</td>`);
  return `<tr class="scenario${flaky ? ' flaky' : ''}" data-scenario="${esc(row.name)}" data-arch="${esc(row.arch)}" data-cpu="${esc(row.cpu)}">
<td class="name">${esc(row.name)}</td><td>${esc(row.arch)} / ${esc(row.cpu || 'default')}</td>${cells.join('')}${sparks.join('')}</tr>`;
}

function cellHTML(s: ScenarioOutcome | undefined, r: Result | undefined): string {
  if (!s || !r) return '<td class="cell absent" title="not in this run"><span></span></td>';
  const why = s.skipped ?? (s.ok ? '' : s.error ?? '');
  return `<td class="cell ${r}" data-result="${r}" title="${esc(`${r} in ${secs(s.durationMs)}${why ? `: ${why}` : ''}`)}"><span class="${r}"></span></td>`;
}

const SW = 150;
const SH = 26;

/**
 * A small line of one timing over the runs: x is the run's place (so it
 * lines up with the result cells), y the value between the row's lowest and
 * highest. A run without the value breaks the line. The last value is written next to it.
 */
export function sparkline(values: (number | undefined)[], metric: string): string {
  const known = values.filter((v): v is number => v !== undefined && Number.isFinite(v));
  if (!known.length) return '<span class="muted">—</span>';
  const [lo, hi] = [Math.min(...known), Math.max(...known)];
  const x = (i: number) => (values.length > 1 ? 4 + (i / (values.length - 1)) * (SW - 8) : SW / 2);
  const y = (v: number) => (hi > lo ? SH - 4 - ((v - lo) / (hi - lo)) * (SH - 8) : SH / 2);
  const segments: string[][] = [[]];
  values.forEach((v, i) => {
    if (v === undefined || !Number.isFinite(v)) segments.push([]);
    else segments.at(-1)!.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`);
  });
  const lines = segments.filter((s) => s.length > 1).map((s) => `<polyline points="${s.join(' ')}" fill="none" stroke="#1f5fbf" stroke-width="1.5"/>`);
  const dots = values.map((v, i) => (v === undefined || !Number.isFinite(v) ? '' : `<circle cx="${x(i).toFixed(1)}" cy="${y(v).toFixed(1)}" r="2" fill="#1f5fbf"><title>${esc(`run ${i + 1}: ${secs(v)}`)}</title></circle>`));
  const last = known.at(-1)!;
  return `<svg class="sparkline" data-metric="${esc(metric)}" xmlns="http://www.w3.org/2000/svg" width="${SW}" height="${SH}" viewBox="0 0 ${SW} ${SH}"><title>${esc(`${metric}: ${secs(lo)} to ${secs(hi)}`)}</title>${lines.join('')}${dots.join('')}</svg><span>${secs(last)}</span>`;
}
