import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { EXIT, HarnessError } from '../../../harness/core/errors.js';
import { PROJECT_ROOT } from '../../../harness/core/paths.js';
import { toJUnit } from '../../../harness/report/junit.js';
import { applyKnownFailures, judge, kernelMatches, knownCounts, loadKnownFailures, parseKnownFailures, type KnownFailure } from '../../../harness/report/known-failures.js';
import { ktapCounts, toKTAP } from '../../../harness/report/ktap.js';
import { overallExit, type ArchReport, type RunReport, type ScenarioOutcome } from '../../../harness/report/run-report.js';
import { formatSummary } from '../../../harness/report/summary.js';
import { ALL_SCENARIOS } from '../../../harness/scenarios/index.js';

const NAMES = { arches: ['x86_64', 'ppc64le'], scenarios: ALL_SCENARIOS.map((s) => s.name), root: PROJECT_ROOT };

const check = (what: string, ok: boolean) => ({ what, expected: 'ok', actual: ok ? 'ok' : 'not ok', ok });
const outcome = (name: string, cpu: string, steps: { name: string; checks: ReturnType<typeof check>[]; error?: string }[], extra: Partial<ScenarioOutcome> = {}): ScenarioOutcome => ({
  name,
  arch: 'x86_64',
  cpu,
  ok: steps.every((s) => !s.error && s.checks.every((c) => c.ok)),
  steps: steps.map((s) => ({ durationMs: 1, ...s })),
  durationMs: 1,
  timings: {},
  ...extra,
});

const ftraceCrash = () =>
  outcome('kselftest', 'max', [{ name: 'upstream test-livepatch.sh', checks: [check('test-livepatch.sh: basic function patching', true)] }, { name: 'upstream test-ftrace.sh', checks: [], error: 'BootError: kernel oops: BUG: unable to handle page fault' }], {
    ok: false,
    fault: 'kernel',
    error: 'BootError: kernel oops',
    casesAreChecks: true,
  });

const ENTRY: KnownFailure = { kernel: 'debian:7.2', arch: 'x86_64', scenario: 'kselftest', case: 'test-ftrace.sh', reason: '7.2 oopses in test-ftrace.sh under TCG', docs: 'README.md#the-kernels-livepatch-selftests' };
const known = { path: '/repo/known-failures.json', entries: [ENTRY] };

function report(arches: ArchReport[]): RunReport {
  return { started: '', durationMs: 1, outDir: '/tmp', cacheDir: '/tmp', source: { kernelSrc: 'k', patches: 'p' }, exitCode: 0, arches, knownFailures: { path: known.path, entries: 1 } };
}
const a72 = (scenarios: ScenarioOutcome[]): ArchReport => ({ arch: 'x86_64', kernel: 'debian:7.2', kernelVersion: '7.2.1', boots: [], scenarios });

t.test('kernel patterns: a --kernel name, a version line (6.1 is not 6.12), or any', async (t) => {
  t.ok(kernelMatches('debian:7.2', { kernel: 'debian:7.2', kernelVersion: '7.2.1' }));
  t.ok(kernelMatches('6.1', { kernelVersion: '6.1.192' }));
  t.ok(kernelMatches('debian:6.1', { kernelVersion: '6.1.192' }), 'a run of the default 6.1 tree, without --kernel');
  t.notOk(kernelMatches('6.1', { kernelVersion: '6.12.48' }));
  t.notOk(kernelMatches('debian:7.2', { kernel: 'debian:6.12', kernelVersion: '6.12.48' }));
  t.ok(kernelMatches('*', {}));
});

t.test('a failure every part of which is covered is XFAIL, and the run exits 0', async (t) => {
  const r = report([a72([ftraceCrash()])]);
  t.equal(overallExit(r), EXIT.kernelFailed, 'without the list: the kernel failed');
  applyKnownFailures(r, known);
  const s = r.arches[0]!.scenarios[0]!;
  t.equal(s.known?.status, 'xfail');
  t.match(s.known?.because[0], /oopses.*\(README\.md#/);
  t.equal(overallExit(r), EXIT.ok);
  t.same(knownCounts(r), { xfail: 1, xpass: 0 });
});

t.test('a failure that matches nothing fails as before', async (t) => {
  // Another kernel, another arch, another CPU, another case: none is covered.
  const other = outcome('kselftest', 'max', [{ name: 'upstream test-state.sh', checks: [check('test-state.sh: system state modification', false)] }], { casesAreChecks: true });
  t.equal(judge([ENTRY], a72([]), other), undefined, 'a case the entry does not name');
  t.equal(judge([ENTRY], { arch: 'x86_64', kernel: 'debian:6.12', kernelVersion: '6.12.48' }, ftraceCrash()), undefined, 'another kernel');
  t.equal(judge([ENTRY], { arch: 'ppc64le', kernel: 'debian:7.2', kernelVersion: '7.2.1' }, ftraceCrash()), undefined, 'another arch');
  t.equal(judge([{ ...ENTRY, cpu: 'power9' }], a72([]), ftraceCrash()), undefined, 'another CPU');
  // Covered in part: the known case failed, and so did another one.
  const both = outcome('kselftest', 'max', [{ name: 'upstream test-state.sh', checks: [check('test-state.sh: x', false)] }, { name: 'upstream test-ftrace.sh', checks: [], error: 'oops' }]);
  t.equal(judge([ENTRY], a72([]), both), undefined);
  const r = report([a72([both])]);
  applyKnownFailures(r, known);
  t.equal(overallExit(r), EXIT.testsFailed);
  // A host fault is never taken for the known cause.
  t.equal(judge([ENTRY], a72([]), { ...ftraceCrash(), fault: 'infra' }), undefined);
});

t.test('a listed scenario that passes is XPASS: counted and shown, the run still passes', async (t) => {
  const passed = outcome('kselftest', 'max', [{ name: 'upstream test-ftrace.sh', checks: [check('test-ftrace.sh: livepatch a traced function', true)] }], { casesAreChecks: true });
  const r = report([a72([passed])]);
  applyKnownFailures(r, known);
  t.equal(passed.known?.status, 'xpass');
  t.equal(overallExit(r), EXIT.ok);
  t.same(knownCounts(r), { xfail: 0, xpass: 1 });
  const summary = formatSummary(r);
  t.match(summary, /kselftest\s+max\s+XPASS/);
  t.match(summary, /xpass kselftest\/max: XPASS \(listed as failing, passed: remove its entry\): 7\.2 oopses/);
  t.match(summary, /known failures: 0 expected \(XFAIL\), 1 unexpected passes \(XPASS\); 1 entries in \/repo\/known-failures\.json/);
  const ktap = toKTAP(r);
  t.match(ktap, /ok 1 upstream test-ftrace\.sh: test-ftrace\.sh: livepatch a traced function # TODO known failure: 7\.2 oopses/);
  t.match(ktap, /# XPASS: listed in known-failures\.json but passed/);
  t.equal(ktapCounts(r).xpass, 1);
  t.match(toJUnit(r), /<testcase [^>]*name="test-ftrace\.sh: livepatch a traced function"><system-out>XPASS: listed in known-failures\.json but passed/);
});

t.test('XFAIL in KTAP (# TODO, the parent not failed), JUnit (skipped with the reason) and the summary', async (t) => {
  const failedCheck = outcome('restart-after-notify-signal', 'power9', [{ name: 'io_uring', checks: [check('round 1: pselect6 via sc', false), check('round 2: nanosleep via sc', true)] }]);
  const ppc: ArchReport = { arch: 'ppc64le', kernel: 'debian:5.10', kernelVersion: '5.10.240', boots: [], scenarios: [failedCheck] };
  const r = report([a72([ftraceCrash()]), ppc]);
  const entries = [ENTRY, { kernel: '5.10', arch: 'ppc64le', scenario: 'restart-after-notify-signal', reason: 'no fix for 5.10', docs: 'docs/upstream/ppc64-notify-signal-restart.md' }];
  applyKnownFailures(r, { path: known.path, entries });
  t.same(knownCounts(r), { xfail: 2, xpass: 0 });
  const ktap = toKTAP(r);
  t.match(ktap, /not ok 1 io_uring: round 1: pselect6 via sc # TODO known failure: no fix for 5\.10/);
  t.match(ktap, /\n {8}ok 2 io_uring: round 2: nanosleep via sc\n/, 'a passing check keeps no directive');
  t.match(ktap, /not ok 1 restart-after-notify-signal power9 # TODO known failure/);
  t.match(ktap, /\nok 2 debian:5\.10 ppc64le linux-5\.10\.240\n/, 'an expected failure does not fail its parent');
  const c = ktapCounts(r);
  // Leaves only: the oops ended kselftest after a passing check, so its TODO is on the scenario line.
  t.equal(c.xfail, 1);
  t.equal(c.failed, 1, 'kunit.py parse, which ignores TODO, counts them as not ok: the counts agree with it');
  const junit = toJUnit(r);
  t.match(junit, /<testcase classname="klp-harness\.debian_7_2\.x86_64\.kselftest" name="kselftest"><skipped message="expected failure: 7\.2 oopses/);
  t.match(junit, /name="restart-after-notify-signal \(power9\)"[^>]*><skipped message="expected failure: no fix for 5\.10/);
  t.notMatch(junit, /<failure/);
  t.match(junit, /failures="0" errors="0"/);
  const summary = formatSummary({ ...r, exitCode: overallExit(r) });
  t.match(summary, /restart-after-notify-signal\s+power9\s+XFAIL/);
  t.match(summary, /known failures: 2 expected \(XFAIL\), 0 unexpected passes \(XPASS\)/);
  t.match(summary, /exit code 0/);
});

t.test('a bad file is a usage error naming the file (exit 4)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'klp-kf-'));
  const bad = (text: string, why: RegExp) => {
    const path = join(dir, 'kf.json');
    writeFileSync(path, text);
    const e = t.throws(() => loadKnownFailures(path, NAMES, true)) as unknown as HarnessError;
    t.equal(e.kind, 'usage');
    t.match(e.message, `known failures ${path}: `);
    t.match(e.message, why);
  };
  bad('{ "failures": [', /not valid JSON/);
  bad('[]', /an object with a "failures" array/);
  bad('{ "failure": [] }', /"failures" array/);
  bad('{ "failures": [], "extra": 1 }', /unknown key "extra"/);
  bad('{ "failures": [ 3 ] }', /failures\[0\]: not an object/);
  const good = { kernel: '6.1', arch: 'ppc64le', scenario: 'race', reason: 'r', docs: 'README.md' };
  bad(JSON.stringify({ failures: [good, { ...good, reason: '' }] }), /failures\[1\]: "reason" must be a non-empty string/);
  bad(JSON.stringify({ failures: [{ ...good, scenarios: 'race' }] }), /unknown field "scenarios"/);
  bad(JSON.stringify({ failures: [{ ...good, arch: 'arm64' }] }), /unknown arch "arm64"/);
  bad(JSON.stringify({ failures: [{ ...good, scenario: 'racer' }] }), /unknown scenario "racer"/);
  bad(JSON.stringify({ failures: [{ ...good, kernel: 'latest' }] }), /bad kernel "latest"/);
  bad(JSON.stringify({ failures: [{ ...good, docs: 'docs/no-such-page.md#x' }] }), /docs "docs\/no-such-page\.md#x" is not a file of the project/);
  bad(JSON.stringify({ failures: [{ ...good, docs: '../etc/passwd' }] }), /is not a file of the project/);
  bad(JSON.stringify({ failures: [{ ...good, case: 7 }] }), /"case" must be a non-empty string/);
  // Asked for and missing: an error; the default file missing: no known failures.
  t.throws(() => loadKnownFailures(join(dir, 'absent.json'), NAMES, true), { message: /no such file/ });
  t.same(loadKnownFailures(join(dir, 'absent.json'), NAMES, false).entries, []);
});

t.test("the project's own known-failures.json is valid", async (t) => {
  // Valid (every field, scenario and docs file checked by the parser); it may be empty when nothing is known to fail.
  const list = loadKnownFailures(join(PROJECT_ROOT, 'known-failures.json'), NAMES, true);
  t.ok(Array.isArray(list.entries));
  t.same(parseKnownFailures(JSON.stringify({ failures: list.entries }), 'x', NAMES), list.entries);
});
