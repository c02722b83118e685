// report.html: one self-contained page per run (inline CSS and SVG, no
// script, no network) so it opens from a CI artifact or a mail attachment.
// A table per arch x CPU, then per scenario its failed checks, a timeline on
// the guest clock and links to the files the run left next to the page.
import { existsSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { esc } from './escape.js';
import { ARTIFACTS, resultOf, secs, type Result } from './result.js';
import type { ArchReport, RunReport, ScenarioOutcome } from './run-report.js';
import type { TimelineEvent } from '../scenarios/types.js';


/** The page's style, shared with the trend page so both read alike. */
export const BASE_CSS = `
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2329; margin: 0; background: #f6f7f9; }
main { max-width: 1180px; margin: 0 auto; padding: 16px 20px 40px; }
h1 { font-size: 20px; margin: 8px 0 4px; } h2 { font-size: 16px; margin: 24px 0 8px; } h3 { font-size: 15px; margin: 0 0 6px; }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid #d8dde3; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e7eaee; vertical-align: top; }
th { background: #eef1f4; font-weight: 600; font-size: 13px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
a { color: #1f5fbf; text-decoration: none; } a:hover { text-decoration: underline; }
.badge { display: inline-block; min-width: 86px; text-align: center; padding: 1px 6px; border-radius: 3px; font-size: 12px; font-weight: 700; color: #fff; }
.PASS { background: #2e7d32; } .FAIL { background: #c62828; } .SKIP { background: #78828c; } .INTERRUPTED { background: #e08a00; } .XFAIL { background: #6a1b9a; } .XPASS { background: #ad1457; }
.muted { color: #6b747d; } .mono, pre { font: 12px/1.35 ui-monospace, "DejaVu Sans Mono", monospace; }
`;

const PAGE_CSS = `
.meta { margin: 0 0 12px; } .meta span { margin-right: 16px; }
table.results { table-layout: fixed; } td.artifacts { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
tr.failed td { background: #fdecec; } tr.failed td:first-child { border-left: 4px solid #c62828; }
section.scenario { background: #fff; border: 1px solid #d8dde3; border-radius: 4px; margin: 14px 0; padding: 10px 14px; }
section.scenario.failed { border-left: 5px solid #c62828; }
.why { color: #8e1b1b; white-space: pre-wrap; margin: 4px 0 8px; }
table.checks td pre { margin: 0; white-space: pre-wrap; word-break: break-word; }
table.checks td.actual pre { color: #8e1b1b; }
.artifacts a { margin-right: 14px; } .archerr { background: #fdecec; border: 1px solid #e4a4a4; padding: 6px 10px; margin: 6px 0; }
svg.timeline { display: block; margin: 8px 0; background: #fbfcfd; border: 1px solid #e7eaee; }
details summary { cursor: pointer; color: #4a545e; margin: 6px 0; }
`;

/** Renders the run as one HTML page; links are relative to `dir`, where the page goes. */
export function toHTML(r: RunReport, dir = r.outDir): string {
  const files = (names: string[]) => artifactLinks(names.map((n) => join(r.outDir, n)), dir, r.outDir);
  const all = r.arches.flatMap((a) => a.scenarios.map((s) => ({ a, s })));
  const count = (x: Result) => all.filter(({ s }) => resultOf(s) === x).length;
  // Failures first: the reason someone opens the page.
  const sections = [...all].sort((x, y) => Number(resultOf(y.s) === 'FAIL') - Number(resultOf(x.s) === 'FAIL'));
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>klp-harness run ${esc(r.started)}</title>
<style>${BASE_CSS}${PAGE_CSS}</style></head>
<body><main>
<h1>klp-harness run ${esc(r.started)} <span class="badge ${r.exitCode === 0 ? 'PASS' : r.interrupted ? 'INTERRUPTED' : 'FAIL'}">exit ${r.exitCode}</span></h1>
<p class="meta"><span>${count('PASS')} passed, ${count('FAIL')} failed, ${count('SKIP')} skipped, ${count('INTERRUPTED')} interrupted${count('XFAIL') + count('XPASS') ? `, ${count('XFAIL')} expected failures, ${count('XPASS')} unexpected passes` : ''}</span><span>took ${secs(r.durationMs)}</span>${r.interrupted ? `<span>interrupted: ${esc(r.interrupted)}</span>` : ''}</p>
<p class="meta muted"><span>kernel source: <span class="mono">${esc(r.source.kernelSrc)}</span></span><span>patches: <span class="mono">${esc(r.source.patches)}</span></span></p>
<p class="artifacts">${files([ARTIFACTS.log, ARTIFACTS.summary, ARTIFACTS.junit, ARTIFACTS.ktap])}</p>
${r.arches.map((a) => archTables(a, r.outDir, dir)).join('\n')}
<h2>Scenarios</h2>
${sections.map(({ a, s }) => scenarioSection(a, s, r.outDir, dir)).join('\n')}
</main></body></html>
`;
}

const anchor = (a: ArchReport, s: ScenarioOutcome) => `s-${a.arch}-${s.cpu ?? ''}-${s.name}`.replace(/[^A-Za-z0-9_-]/g, '_');

/** One table per CPU model of the arch (a scenario runs on one CPU, or on each for allCpus ones). */
function archTables(a: ArchReport, outDir: string, dir: string): string {
  const cpus = [...new Set(a.scenarios.map((s) => s.cpu ?? ''))];
  const version = a.kernelVersion ? `linux ${a.kernelVersion}` : 'kernel version unknown';
  // A run over --kernel names each kernel (debian:6.12, debian-image 6.1.0-57 amd64).
  const kernel = a.kernel ? `${a.kernel} (${version})` : version;
  const err = a.error ? `<div class="archerr"><strong>${esc(a.arch)} stopped: ${esc(a.error.kind)} error</strong> (exit ${a.error.exitCode})<pre>${esc(a.error.message)}</pre></div>` : '';
  const build = a.build ? artifactLinks([join(dirname(a.boots[0]?.consoleLog ?? join(outDir, a.arch, 'x')), 'build.log')], dir, outDir) : '';
  const head = `<h2>${esc(a.arch)} · ${esc(kernel)}</h2>${err}${build ? `<p class="artifacts">${build}</p>` : ''}`;
  if (!cpus.length) return head;
  return head + cpus.map((cpu) => cpuTable(a, cpu, outDir, dir)).join('\n');
}

function cpuTable(a: ArchReport, cpu: string, outDir: string, dir: string): string {
  const rows = a.scenarios.filter((s) => (s.cpu ?? '') === cpu).map((s) => {
    const r = resultOf(s);
    const checks = s.steps.flatMap((st) => st.checks);
    const boot = bootOf(a, s);
    return `<tr class="scenario${r === 'FAIL' ? ' failed' : ''}" data-scenario="${esc(s.name)}" data-arch="${esc(a.arch)}" data-cpu="${esc(cpu)}" data-result="${r}">
<td><a href="#${anchor(a, s)}">${esc(s.name)}</a></td><td><span class="badge ${r}">${r}</span></td>
<td class="num">${checks.filter((c) => c.ok).length}/${checks.length}</td><td class="num">${secs(s.timings.stuckSeenMs)}</td><td class="num">${secs(s.timings.remedyToDoneMs)}</td>
<td class="num">${secs(s.durationMs)}</td><td class="num">${secs(boot?.readyMs)}</td><td class="artifacts">${artifactLinks(scenarioFiles(a, s, outDir), dir, outDir)}</td></tr>`;
  });
  return `<h3>${esc(a.arch)} / ${esc(cpu || 'default CPU')} <span class="muted">(${esc(a.kernelVersion ? `linux ${a.kernelVersion}` : 'kernel version unknown')})</span></h3>
<table class="results" data-arch="${esc(a.arch)}" data-cpu="${esc(cpu)}">${COLS}<thead><tr><th>scenario</th><th>result</th><th>checks ok</th><th>stuck seen</th><th>remedy → done</th><th>duration</th><th>boot</th><th>files</th></tr></thead>
<tbody>${rows.join('\n')}</tbody></table>`;
}

/** The same column widths in every table, so the arches line up when read one under the other. */
const COLS = `<colgroup>${[20, 10, 8, 9, 11, 9, 8, 25].map((w) => `<col style="width:${w}%">`).join('')}</colgroup>`;

const bootOf = (a: ArchReport, s: ScenarioOutcome) => a.boots.find((b) => b.scenario === s.name && b.cpu === s.cpu);

/** The files a scenario may have left: its console log(s), dmesg, blocking tasks, QEMU command line. */
function scenarioFiles(a: ArchReport, s: ScenarioOutcome, outDir: string): string[] {
  const boot = bootOf(a, s);
  const label = `${s.name}-${s.cpu ?? ''}`;
  const archDir = boot ? dirname(boot.consoleLog) : join(outDir, a.arch);
  return [
    boot?.consoleLog ?? join(archDir, `console-${label}.log`),
    ...(boot?.stalledConsoleLogs ?? []),
    join(archDir, `dmesg-${label}.txt`),
    join(archDir, `blocking-tasks-${label}.txt`),
    join(archDir, `qemu-command-${label}.txt`),
  ];
}

/**
 * Links to the files that exist, relative to the page. A run folder that was
 * moved (a CI artifact) no longer has the absolute paths summary.json names;
 * the same file under the folder the page sits in is taken then.
 */
function artifactLinks(paths: string[], dir: string, outDir: string): string {
  const found = paths.flatMap((p) => {
    if (existsSync(p)) return [p];
    const moved = join(dir, relative(outDir, p));
    return !relative(outDir, p).startsWith('..') && existsSync(moved) ? [moved] : [];
  });
  return found.map((p) => `<a href="${esc(encodeURI(relative(dir, p)))}">${esc(shortName(p))}</a>`).join(' ');
}

/** "console", "dmesg", ...: the table has no room for the scenario and CPU again. */
function shortName(p: string): string {
  const m = /^(console|dmesg|blocking-tasks|qemu-command)-.*?(-stalled-\d+)?\.(log|txt)$/.exec(basename(p));
  return m ? `${m[1]}${m[2] ? ' (stalled)' : ''}` : basename(p);
}

function scenarioSection(a: ArchReport, s: ScenarioOutcome, outDir: string, dir: string): string {
  const r = resultOf(s);
  const failed = s.steps.flatMap((st) => st.checks.filter((c) => !c.ok).map((c) => ({ step: st.name, ...c })));
  const known = s.known ? `${s.known.status === 'xfail' ? 'expected failure' : 'XPASS: listed as a known failure, but passed'}: ${s.known.because.join('; ')}` : undefined;
  const why = [known, s.skipped ?? (s.ok ? undefined : s.error)].filter(Boolean).join('\n') || undefined;
  const rowsOf = (cs: { step: string; what: string; expected: string; actual: string }[], cls: string) =>
    `<table class="checks ${cls}"><thead><tr><th>step</th><th>check</th><th>expected</th><th>actual</th></tr></thead><tbody>${cs
      .map((c) => `<tr class="check"><td>${esc(c.step)}</td><td>${esc(c.what)}</td><td class="expected"><pre>${esc(c.expected)}</pre></td><td class="actual"><pre>${esc(c.actual)}</pre></td></tr>`)
      .join('')}</tbody></table>`;
  const allChecks = s.steps.flatMap((st) => st.checks.map((c) => ({ step: st.name, ...c })));
  return `<section class="scenario${r === 'FAIL' ? ' failed' : ''}" id="${anchor(a, s)}" data-scenario="${esc(s.name)}" data-arch="${esc(a.arch)}" data-cpu="${esc(s.cpu ?? '')}" data-result="${r}">
<h3>${esc(s.name)} <span class="muted">${esc(a.arch)} / ${esc(s.cpu ?? 'default CPU')}</span> <span class="badge ${r}">${r}</span></h3>
${why ? `<div class="why">${esc(why)}</div>` : ''}
${failed.length ? `<h4>Failed checks</h4>${rowsOf(failed, 'failed-checks')}` : ''}
${timelineSvg(s)}
<p class="artifacts">${artifactLinks(scenarioFiles(a, s, outDir), dir, outDir)}</p>
${allChecks.length ? `<details><summary>all ${allChecks.length} checks</summary>${rowsOf(allChecks, 'all-checks')}</details>` : ''}
</section>`;
}

// ---- timeline ---------------------------------------------------------------

const W = 1100;
const LEFT = 200;
const RIGHT = 24;
const PLOT_W = W - LEFT - RIGHT;
const EVENT_ROW = 17;
const LANE_H = 44;
const COLORS = ['#1f5fbf', '#b4511b', '#6a3d9a', '#2e7d32'];

/**
 * The scenario on the guest's clock: events as marked moments, each series
 * as a step line in its own lane. Readings sampled in separate windows of
 * one series are separate lines, so a gap is not drawn as a held value.
 */
export function timelineSvg(s: ScenarioOutcome): string {
  const events = [...(s.timeline ?? [])].sort((x, y) => x.atMs - y.atMs);
  const lanes = lanesOf(s.series ?? []);
  const times = [...events.map((e) => e.atMs), ...lanes.flatMap((l) => l.segments.flat().map((p) => p.atMs))];
  if (!times.length) return '<p class="muted">no timeline recorded</p>';
  const t0 = Math.min(...times);
  const span = Math.max(Math.max(...times) - t0, 1000);
  const x = (ms: number) => LEFT + ((ms - t0) / span) * PLOT_W;
  const evH = events.length * EVENT_ROW + 8;
  const height = evH + lanes.length * LANE_H + 34;
  const plotBottom = evH + lanes.length * LANE_H;
  const parts = [
    axis(t0, span, x, plotBottom, height),
    ...events.map((e, i) => eventMark(e, i, x, t0, plotBottom)),
    ...lanes.map((l, i) => laneSvg(l, evH + i * LANE_H, x, COLORS[i % COLORS.length]!)),
  ];
  return `<svg class="timeline" data-timeline="${esc(s.name)}" xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" viewBox="0 0 ${W} ${height}" font-family="system-ui, sans-serif" font-size="11">
<title>${esc(`${s.name}: timeline on the guest clock`)}</title>
${parts.join('\n')}
</svg>`;
}

interface Lane {
  name: string;
  levels: string[];
  segments: { atMs: number; value: string }[][];
}

/** Groups series by name (each sampling window a segment) with their readings as levels: numbers high to low, then words. */
function lanesOf(series: NonNullable<ScenarioOutcome['series']>): Lane[] {
  const lanes = new Map<string, Lane>();
  for (const s of series) {
    const lane = lanes.get(s.name) ?? { name: s.name, levels: [], segments: [] };
    lane.segments.push([...s.points].sort((a, b) => a.atMs - b.atMs));
    lanes.set(s.name, lane);
  }
  for (const l of lanes.values()) {
    const values = [...new Set(l.segments.flat().map((p) => p.value))];
    const num = (v: string) => (v.trim() !== '' && Number.isFinite(Number(v)) ? Number(v) : undefined);
    l.levels = values.sort((a, b) => {
      const [na, nb] = [num(a), num(b)];
      if (na !== undefined && nb !== undefined) return nb - na;
      return na !== undefined ? -1 : nb !== undefined ? 1 : a.localeCompare(b);
    });
  }
  return [...lanes.values()];
}

function laneSvg(l: Lane, top: number, x: (ms: number) => number, color: string): string {
  const inner = LANE_H - 16;
  const y = (v: string) => {
    const k = l.levels.indexOf(v);
    return top + 8 + (l.levels.length > 1 ? (k / (l.levels.length - 1)) * inner : inner / 2);
  };
  const labels = l.levels.map((v) => `<text x="${LEFT - 6}" y="${y(v) + 3.5}" text-anchor="end" fill="#6b747d">${esc(v)}</text>`);
  const paths = l.segments.map((seg) => {
    const d = seg.map((p, i) => (i === 0 ? `M${x(p.atMs).toFixed(1)},${y(p.value).toFixed(1)}` : `H${x(p.atMs).toFixed(1)}V${y(p.value).toFixed(1)}`)).join('');
    const dots = seg.map((p) => `<circle cx="${x(p.atMs).toFixed(1)}" cy="${y(p.value).toFixed(1)}" r="1.8" fill="${color}"><title>${esc(`${p.value} at ${(p.atMs / 1000).toFixed(2)} s`)}</title></circle>`);
    return `<path d="${d}" fill="none" stroke="${color}" stroke-width="1.6"/>${dots.join('')}`;
  });
  return `<g class="series" data-series="${esc(l.name)}"><line x1="${LEFT}" x2="${W - RIGHT}" y1="${top + LANE_H - 2}" y2="${top + LANE_H - 2}" stroke="#eef1f4"/>
${laneName(l.name, top)}${labels.join('')}${paths.join('')}</g>`;
}

/** The lane's name left of it, on two lines when it would run into the value labels. */
function laneName(name: string, top: number): string {
  const cut = name.length > 26 ? name.lastIndexOf(' ') : -1;
  const lines = cut > 0 ? [name.slice(0, cut), name.slice(cut + 1)] : [name];
  const y0 = top + LANE_H / 2 + 4 - (lines.length - 1) * 6.5;
  return `<text x="8" y="${y0}" font-weight="600" fill="#1d2329">${lines.map((l, i) => `<tspan x="8" dy="${i ? 13 : 0}">${esc(l)}</tspan>`).join('')}</text>`;
}

/** An event: its own label row at the top, a line down through the lanes to the axis. */
function eventMark(e: TimelineEvent, i: number, x: (ms: number) => number, t0: number, bottom: number): string {
  const ex = x(e.atMs);
  const y = 14 + i * EVENT_ROW;
  const right = ex > LEFT + PLOT_W * 0.62;
  const label = `${e.what}  +${((e.atMs - t0) / 1000).toFixed(2)} s`;
  const color = /done|finished/.test(e.what) ? '#2e7d32' : /stuck/.test(e.what) ? '#c62828' : /written/.test(e.what) ? '#b4511b' : '#1f5fbf';
  return `<g class="event" data-event="${esc(e.what)}" data-at-ms="${e.atMs}"><line x1="${ex.toFixed(1)}" x2="${ex.toFixed(1)}" y1="${y}" y2="${bottom}" stroke="${color}" stroke-opacity="0.45" stroke-dasharray="3,3"/>
<circle cx="${ex.toFixed(1)}" cy="${y - 4}" r="3.5" fill="${color}"/><text x="${(ex + (right ? -7 : 7)).toFixed(1)}" y="${y}" text-anchor="${right ? 'end' : 'start'}" fill="#1d2329">${esc(label)}</text></g>`;
}

/** Ticks every 0.5, 1, 2, 5, ... s from the first moment, and what that moment is in guest uptime. */
function axis(t0: number, span: number, x: (ms: number) => number, bottom: number, height: number): string {
  const step = [500, 1000, 2000, 5000, 10_000, 20_000, 30_000, 60_000].find((s) => span / s <= 12) ?? 120_000;
  const ticks: string[] = [];
  for (let t = 0; t <= span; t += step) {
    ticks.push(`<line x1="${x(t0 + t).toFixed(1)}" x2="${x(t0 + t).toFixed(1)}" y1="${bottom}" y2="${bottom + 4}" stroke="#6b747d"/><text x="${x(t0 + t).toFixed(1)}" y="${bottom + 15}" text-anchor="middle" fill="#6b747d">+${t / 1000} s</text>`);
  }
  return `<g class="axis"><line x1="${LEFT}" x2="${W - RIGHT}" y1="${bottom}" y2="${bottom}" stroke="#6b747d"/>${ticks.join('')}
<text x="8" y="${height - 6}" fill="#6b747d">guest clock; +0 s = uptime ${(t0 / 1000).toFixed(2)} s</text></g>`;
}
