// JUnit XML for CI dashboards: one test case per arch x scenario (x CPU),
// failures carrying the guest readings; an arch that did not get as far as
// its scenarios gets one errored case with the harness's report. A failure
// known-failures.json expects is <skipped> with its reason (the failure in
// system-out); a listed scenario that passed says XPASS in system-out.
import { esc } from './escape.js';
import type { ArchReport, RunReport } from './run-report.js';

/** Suites carry kernel and arch: `debian:6.12 x86_64` (or the kernel version when no --kernel was given). */
const suiteName = (a: ArchReport) => `${a.kernel ?? (a.kernelVersion ? `linux-${a.kernelVersion}` : '')} ${a.arch}`.trim();
const suiteId = (a: ArchReport) => (a.kernel ? `${a.kernel.replace(/[:.]/g, '_')}.${a.arch}` : a.arch);

/** Test cases of one suite and how many of them failed or errored. */
interface Cases {
  lines: string[];
  failures: number;
  errors: number;
}

type Scenario = ArchReport['scenarios'][number];

export function toJUnit(r: RunReport): string {
  const suites: string[] = [];
  const all: Cases = { lines: [], failures: 0, errors: 0 };
  for (const a of r.arches) {
    const c: Cases = { lines: [], failures: 0, errors: 0 };
    for (const s of a.scenarios) (s.casesAreChecks ? checkCases : scenarioCase)(a, s, c);
    if (a.error) {
      c.errors++;
      c.lines.push(`    <testcase classname="klp-harness.${esc(suiteId(a))}" name="pipeline"><error type="${esc(a.error.kind)}" message="${esc(a.error.message)}">${esc(a.error.report)}</error></testcase>`);
    }
    all.lines.push(...c.lines);
    all.failures += c.failures;
    all.errors += c.errors;
    suites.push(`  <testsuite name="klp-harness ${esc(suiteName(a))}" tests="${c.lines.length}" failures="${c.failures}" errors="${c.errors}">\n${c.lines.join('\n')}\n  </testsuite>`);
  }
  return `<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="klp-harness" tests="${all.lines.length}" failures="${all.failures}" errors="${all.errors}" time="${(r.durationMs / 1000).toFixed(3)}">\n${suites.join('\n')}\n</testsuites>\n`;
}

const knownOf = (s: Scenario) => ({
  reason: s.known ? s.known.because.join('; ') : '',
  xfail: s.known?.status === 'xfail',
  xpass: s.known?.status === 'xpass' ? `<system-out>${esc(`XPASS: listed in known-failures.json but passed: ${s.known.because.join('; ')}`)}</system-out>` : '',
});

const failedChecks = (s: Scenario) => s.steps.flatMap((st) => st.checks.filter((c) => !c.ok).map((c) => `[${st.name}] ${c.what}\n  expected: ${c.expected}\n  actual:   ${c.actual}`));

/** The upstream selftests: one test case per upstream case. */
function checkCases(a: ArchReport, s: Scenario, out: Cases): void {
  const { reason, xfail, xpass } = knownOf(s);
  const classname = `klp-harness.${esc(suiteId(a))}.${esc(s.name)}`;
  for (const st of s.steps) {
    for (const c of st.checks) {
      const text = esc(`expected: ${c.expected}\nactual:\n${c.actual}`);
      const bad = c.ok ? xpass : xfail ? `<skipped message="${esc(`expected failure: ${reason}`)}"/><system-out>${text}</system-out>` : `<failure message="${esc(c.what)}">${text}</failure>`;
      if (!c.ok && !xfail) out.failures++;
      out.lines.push(`    <testcase classname="${classname}" name="${esc(c.what)}">${bad}</testcase>`);
    }
  }
  const noFailedCheck = s.steps.every((st) => st.checks.every((c) => c.ok));
  // An expected failure that ended on an error (a kernel oops) before any failed check: one case says so.
  if (xfail && noFailedCheck) {
    out.lines.push(`    <testcase classname="${classname}" name="${esc(s.name)}"><skipped message="${esc(`expected failure: ${reason}`)}"/><system-out>${esc(s.error ?? 'failed')}</system-out></testcase>`);
  } else if (!s.ok && noFailedCheck) {
    // Ended without a failed check (a kernel oops in an upstream script, an interrupt): the passing cases must not read as a pass.
    out.lines.push(`    <testcase classname="${classname}" name="${esc(s.name)}">${scenarioFailure(s, out)}</testcase>`);
  } else if (s.skipped && !s.steps.some((st) => st.checks.length)) {
    out.lines.push(`    <testcase classname="${classname}" name="${esc(s.name)}"><skipped message="${esc(s.skipped)}"/></testcase>`);
  }
}

/** The <error> (interrupted, a kernel or host fault) or <failure> element of a scenario that did not pass, counted in out. */
function scenarioFailure(s: Scenario, out: Cases): string {
  const text = [...failedChecks(s), s.error ?? '', s.diagnosis ? `blocking tasks: ${s.diagnosis}` : ''].filter(Boolean).join('\n\n');
  const interrupted = (s as { interrupted?: boolean }).interrupted;
  const tag = s.fault || interrupted ? 'error' : 'failure';
  if (tag === 'error') out.errors++;
  else out.failures++;
  const type = interrupted ? ' type="interrupted"' : '';
  return `<${tag}${type} message="${esc((s.error ?? 'failed').split('\n')[0]!)}">${esc(text)}</${tag}>`;
}

/** One test case per arch x scenario (x CPU). */
function scenarioCase(a: ArchReport, s: Scenario, out: Cases): void {
  const { reason, xfail, xpass } = knownOf(s);
  const name = `${s.name}${s.cpu ? ` (${s.cpu})` : ''}`;
  let body = s.skipped ? `<skipped message="${esc(s.skipped)}"/>` : '';
  if (xpass) body = xpass;
  if (!s.ok && xfail) {
    body = `<skipped message="${esc(`expected failure: ${reason}`)}"/><system-out>${esc([...failedChecks(s), s.error ?? ''].filter(Boolean).join('\n\n'))}</system-out>`;
  } else if (!s.ok) {
    // Interrupted (not run to its end) and kernel or host faults are errors; a failed check is a failure.
    body = scenarioFailure(s, out);
  }
  const timings = Object.entries(s.timings).map(([k, v]) => `${k}=${v}`).join(' ');
  out.lines.push(
    `    <testcase classname="klp-harness.${esc(suiteId(a))}" name="${esc(name)}" time="${(s.durationMs / 1000).toFixed(3)}">${body}` +
      (timings && !body.includes('<system-out>') ? `<system-out>${esc(timings)}</system-out>` : '') +
      `</testcase>`,
  );
}
