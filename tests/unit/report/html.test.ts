// report.html, rendered by a real browser: Debian's chromium driven by
// playwright-core (which downloads no browser of its own). The fixture is the
// summary.json of a real run (x86_64 + ppc64le, power8 and power9) with the
// real failing replace-signal of another run added; those runs predate the
// timeline, so its events and series were made from each scenario's own
// steps, checks and timings, with the names the scenarios record today.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import t from 'tap';
import { chromium, type Browser } from 'playwright-core';
import { esc } from '../../../harness/report/escape.js';
import { timelineSvg, toHTML } from '../../../harness/report/html.js';
import type { RunReport } from '../../../harness/report/run-report.js';
import { fixture, tempDir } from '../../helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const FIXTURE_RUN = '/root/.cache/klp-harness/runs/2026-11-27T13-56-03-203Z';

/** The fixture moved into `dir`, with the files a run leaves for each boot. */
function runFolder(dir: string): RunReport {
  const text = readFileSync(fixture('run-report.json'), 'utf8').split(FIXTURE_RUN).join(dir);
  const report = JSON.parse(text) as RunReport;
  for (const a of report.arches) {
    for (const b of a.boots) {
      mkdirSync(dirname(b.consoleLog), { recursive: true });
      writeFileSync(b.consoleLog, '[    0.000000] Linux version 6.1.192\n');
      writeFileSync(join(dirname(b.consoleLog), `dmesg-${b.scenario}-${b.cpu}.txt`), '[    0.000000] Linux version 6.1.192\n');
    }
  }
  for (const f of ['harness.log', 'summary.json', 'junit.xml', 'ktap.txt']) writeFileSync(join(dir, f), '');
  return report;
}

const scenarios = (r: RunReport) => r.arches.flatMap((a) => a.scenarios.map((s) => ({ ...s, arch: a.arch })));

t.test('text is escaped, in elements and in attributes', async (t) => {
  t.equal(esc(`<a href="x">'&'</a>`), '&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
  const svg = timelineSvg({ name: 'n<script>', arch: 'x', ok: true, steps: [], durationMs: 1, timings: {}, timeline: [{ atMs: 1000, what: '<img src=x onerror=alert(1)>' }] });
  t.notMatch(svg, /<img|<script/);
  t.match(svg, /&lt;img src=x onerror=alert\(1\)&gt;/);
});

t.test('a scenario without a timeline says so instead of an empty chart', async (t) => {
  t.match(timelineSvg({ name: 'sample', arch: 'x', ok: true, steps: [], durationMs: 1, timings: {} }), /no timeline recorded/);
});

t.test('report.html in headless Chromium', { timeout: 180_000 }, async (t) => {
  if (!existsSync(CHROMIUM)) return t.fail(`${CHROMIUM} is missing: apt-get install chromium (scripts/setup-host.sh does)`);
  const dir = tempDir(t, 'klp-html-');
  const report = runFolder(dir);
  const page = join(dir, 'report.html');
  writeFileSync(page, toHTML(report));

  const browser: Browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  t.teardown(() => browser.close());
  const tab = await browser.newPage({ viewport: { width: 1200, height: 1000 } });
  const requests: string[] = [];
  tab.on('request', (r) => requests.push(r.url()));
  await tab.goto(pathToFileURL(page).href);

  t.same(requests.filter((u) => !u.startsWith('file:')), [], 'the page loads nothing from the network');
  t.equal(await tab.locator('script').count(), 0, 'no script');

  for (const s of scenarios(report)) {
    const row = tab.locator(`tr[data-scenario="${s.name}"][data-arch="${s.arch}"][data-cpu="${s.cpu}"]`);
    t.equal(await row.count(), 1, `a row for ${s.arch}/${s.cpu}/${s.name}`);
    const section = tab.locator(`section[data-scenario="${s.name}"][data-arch="${s.arch}"][data-cpu="${s.cpu}"]`);
    const events = await section.locator('svg.timeline g.event').evaluateAll((gs) => gs.map((g) => g.getAttribute('data-event')));
    t.same(events, (s.timeline ?? []).map((e) => e.what), `${s.arch}/${s.cpu}/${s.name}: the timeline has this scenario's events, in order`);
    const texts = await section.locator('svg.timeline text').allTextContents();
    for (const e of s.timeline ?? []) t.ok(texts.some((x) => x.startsWith(e.what)), `${s.name}: "${e.what}" is written on the timeline`);
    const lanes = await section.locator('svg.timeline g.series').evaluateAll((gs) => gs.map((g) => g.getAttribute('data-series')));
    t.same(lanes, [...new Set((s.series ?? []).map((x) => x.name))], `${s.name}: one lane per series`);
  }

  const failed = scenarios(report).filter((s) => !s.ok);
  t.same(failed.map((s) => s.name), ['replace-signal'], 'the fixture has one failing scenario');
  const row = tab.locator('tr[data-scenario="replace-signal"]');
  t.match(await row.getAttribute('class'), /\bfailed\b/, 'its row is marked failed');
  t.match(await row.innerText(), /FAIL/);
  const section = tab.locator('section[data-scenario="replace-signal"]');
  t.match(await section.getAttribute('class'), /\bfailed\b/, 'its section is marked failed');
  const bad = section.locator('table.failed-checks tr.check');
  t.equal(await bad.count(), 1, 'one failed check listed');
  t.equal(await bad.locator('td').nth(1).innerText(), 'rmmod klp_sleeper_lp_replace');
  t.equal(await bad.locator('td.expected').innerText(), '0', 'expected shown');
  t.equal(await bad.locator('td.actual').innerText(), '1', 'actual shown');
  t.equal(await tab.locator('section.scenario.failed').count(), 1, 'no passing scenario is marked failed');
  t.equal(await tab.locator('section.scenario').first().getAttribute('data-scenario'), 'replace-signal', 'failures come first');

  // Links are relative and lead to files of the run folder.
  const hrefs = await row.locator('a[href]:not([href^="#"])').evaluateAll((as) => as.map((a) => a.getAttribute('href') ?? ''));
  t.same(hrefs.sort(), ['x86_64/console-replace-signal-max.log', 'x86_64/dmesg-replace-signal-max.txt'], 'console log and dmesg linked, relative');
  for (const h of hrefs) t.ok(existsSync(join(dir, decodeURI(h))), `${h} exists`);
  t.ok(await tab.locator('a[href="ktap.txt"]').count(), 'the run-level files are linked');

  // A picture of the page (the tables down to the failing scenario, which comes first), in the test's
  // folder: a test run does not rewrite the repository (docs/ holds pictures of real runs).
  const png = join(dir, 'report-example.png');
  const box = await section.boundingBox();
  await tab.screenshot({ path: png, fullPage: true, clip: { x: 0, y: 0, width: 1200, height: Math.ceil((box?.y ?? 1000) + (box?.height ?? 0) + 16) } });
  t.ok(readFileSync(png).subarray(1, 4).toString() === 'PNG', `screenshot written to ${png}`);
});
