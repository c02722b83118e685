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

export function toJUnit(r: RunReport): string {
  const suites: string[] = [];
  let total = 0;
  let failures = 0;
  let errors = 0;
  for (const a of r.arches) {
    const cases: string[] = [];
    let sFail = 0;
    let sErr = 0;
    for (const s of a.scenarios) {
      const known = s.known ? `${s.known.because.join('; ')}` : '';
      const xfail = s.known?.status === 'xfail';
      const xpass = s.known?.status === 'xpass' ? `<system-out>${esc(`XPASS: listed in known-failures.json but passed: ${known}`)}</system-out>` : '';
      if (s.casesAreChecks) {
        // The upstream selftests: one test case per upstream case.
        for (const st of s.steps) {
          for (const c of st.checks) {
            const text = esc(`expected: ${c.expected}\nactual:\n${c.actual}`);
            const bad = c.ok ? xpass : xfail ? `<skipped message="${esc(`expected failure: ${known}`)}"/><system-out>${text}</system-out>` : `<failure message="${esc(c.what)}">${text}</failure>`;
            if (!c.ok && !xfail) sFail++;
            cases.push(`    <testcase classname="klp-harness.${esc(suiteId(a))}.${esc(s.name)}" name="${esc(c.what)}">${bad}</testcase>`);
          }
        }
        // An expected failure that ended on an error (a kernel oops) before any failed check: one case says so.
        if (xfail && s.steps.every((st) => st.checks.every((c) => c.ok))) {
          cases.push(`    <testcase classname="klp-harness.${esc(suiteId(a))}.${esc(s.name)}" name="${esc(s.name)}"><skipped message="${esc(`expected failure: ${known}`)}"/><system-out>${esc(s.error ?? 'failed')}</system-out></testcase>`);
        }
        continue;
      }
      const name = `${s.name}${s.cpu ? ` (${s.cpu})` : ''}`;
      let body = '';
      if (s.skipped) body = `<skipped message="${esc(s.skipped)}"/>`;
      if (xpass) body = xpass;
      if (!s.ok && xfail) {
        const failed = s.steps.flatMap((st) => st.checks.filter((c) => !c.ok).map((c) => `[${st.name}] ${c.what}\n  expected: ${c.expected}\n  actual:   ${c.actual}`));
        body = `<skipped message="${esc(`expected failure: ${known}`)}"/><system-out>${esc([...failed, s.error ?? ''].filter(Boolean).join('\n\n'))}</system-out>`;
      } else if (!s.ok) {
        const failed = s.steps.flatMap((st) =>
          st.checks.filter((c) => !c.ok).map((c) => `[${st.name}] ${c.what}\n  expected: ${c.expected}\n  actual:   ${c.actual}`),
        );
        const text = [...failed, s.error ?? '', s.diagnosis ? `blocking tasks: ${s.diagnosis}` : ''].filter(Boolean).join('\n\n');
        // Interrupted (not run to its end) and kernel or host faults are errors; a failed check is a failure.
        const interrupted = (s as { interrupted?: boolean }).interrupted;
        const tag = s.fault || interrupted ? 'error' : 'failure';
        if (tag === 'error') sErr++;
        else sFail++;
        const type = interrupted ? ' type="interrupted"' : '';
        body = `<${tag}${type} message="${esc((s.error ?? 'failed').split('\n')[0]!)}">${esc(text)}</${tag}>`;
      }
      const timings = Object.entries(s.timings).map(([k, v]) => `${k}=${v}`).join(' ');
      cases.push(
        `    <testcase classname="klp-harness.${esc(suiteId(a))}" name="${esc(name)}" time="${(s.durationMs / 1000).toFixed(3)}">${body}` +
          (timings && !body.includes('<system-out>') ? `<system-out>${esc(timings)}</system-out>` : '') +
          `</testcase>`,
      );
    }
    if (a.error) {
      sErr++;
      cases.push(
        `    <testcase classname="klp-harness.${esc(suiteId(a))}" name="pipeline"><error type="${esc(a.error.kind)}" message="${esc(a.error.message)}">${esc(a.error.report)}</error></testcase>`,
      );
    }
    total += cases.length;
    failures += sFail;
    errors += sErr;
    suites.push(`  <testsuite name="klp-harness ${esc(suiteName(a))}" tests="${cases.length}" failures="${sFail}" errors="${sErr}">\n${cases.join('\n')}\n  </testsuite>`);
  }
  return `<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="klp-harness" tests="${total}" failures="${failures}" errors="${errors}" time="${(r.durationMs / 1000).toFixed(3)}">\n${suites.join('\n')}\n</testsuites>\n`;
}
