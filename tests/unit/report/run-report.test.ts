// overallExit: each outcome's exit code (pass, skip, failed check, kernel, infra,
// usage, interrupted, an arch's own error, known failures), and that the most
// serious one wins whichever arch or scenario it is in.
import t from 'tap';
import { EXIT } from '../../../harness/core/errors.js';
import { overallExit, type ArchReport, type RunReport, type ScenarioOutcome } from '../../../harness/report/run-report.js';

const scenario = (name: string, ok: boolean, extra: Partial<ScenarioOutcome> = {}): ScenarioOutcome => ({ name, arch: 'x86_64', cpu: 'max', ok, steps: [], durationMs: 1, timings: {}, ...extra });
const arch = (name: string, scenarios: ScenarioOutcome[], extra: Partial<ArchReport> = {}): ArchReport => ({ arch: name, boots: [], scenarios, ...extra });
const run = (arches: ArchReport[], extra: Partial<RunReport> = {}): RunReport => ({ started: '', durationMs: 1, outDir: '/o', cacheDir: '/c', source: { kernelSrc: 'k', patches: 'p' }, arches, exitCode: 0, ...extra });
const one = (s: ScenarioOutcome) => overallExit(run([arch('x86_64', [s])]));
const archError = (exitCode: number) => ({ kind: 'x', message: 'x', report: 'x', exitCode });

const passed = () => scenario('sample', true);
const failedCheck = () => scenario('reverse', false, { error: 'check failed in step: transition' });
const kernelFault = () => scenario('kselftest', false, { fault: 'kernel', error: 'BootError: kernel oops' });
const infraFault = () => scenario('force', false, { fault: 'infra', error: 'InfraError: ssh died' });
const usageFault = () => scenario('user-patch', false, { fault: 'usage', error: 'UsageError: the workload failed at once' });
const interrupted = () => scenario('race', false, { fault: 'infra', interrupted: true, error: 'interrupted' });

t.test('each outcome alone gives its exit code', async (t) => {
  t.equal(overallExit(run([])), EXIT.ok, 'nothing run');
  t.equal(overallExit(run([arch('x86_64', [])])), EXIT.ok, 'an arch with no scenarios and no error');
  t.equal(one(passed()), EXIT.ok);
  t.equal(one(scenario('signal-user-int', true, { skipped: 'this kernel has no .../signal' })), EXIT.ok, 'skipped');
  t.equal(one(scenario('x', true, { unchecked: ['a lever the inputs do not promise'] })), EXIT.ok, 'passed with something unchecked');
  t.equal(one(scenario('x', true, { attempts: 2, retried: 'first run inconclusive' })), EXIT.ok, 'passed on the second run');
  t.equal(one(failedCheck()), EXIT.testsFailed);
  t.equal(one(kernelFault()), EXIT.kernelFailed);
  t.equal(one(infraFault()), EXIT.infra);
  t.equal(one(usageFault()), EXIT.usage);
  t.equal(one(interrupted()), EXIT.interrupted);
  t.equal(one(scenario('x', true, { fault: 'kernel' })), EXIT.ok, 'a fault on a scenario that passed does not count');
});

t.test('an interrupted scenario is interrupted, whatever its fault says', async (t) => {
  t.equal(one(scenario('x', false, { interrupted: true })), EXIT.interrupted);
  t.equal(one(scenario('x', false, { interrupted: true, fault: 'kernel' })), EXIT.interrupted);
  t.equal(one(scenario('x', true, { interrupted: true })), EXIT.interrupted, 'even one that had not failed yet');
});

t.test('an arch\'s own error counts as its exit code', async (t) => {
  t.equal(overallExit(run([arch('ppc64le', [], { error: archError(EXIT.kernelFailed) })])), EXIT.kernelFailed, 'its build failed');
  t.equal(overallExit(run([arch('ppc64le', [], { error: archError(EXIT.infra) })])), EXIT.infra, 'a host tool was missing');
  t.equal(overallExit(run([arch('ppc64le', [], { error: archError(EXIT.usage) })])), EXIT.usage);
  t.equal(overallExit(run([arch('ppc64le', [passed()], { error: archError(EXIT.interrupted) })])), EXIT.interrupted);
  t.equal(overallExit(run([arch('x86_64', [passed()]), arch('ppc64le', [], { error: archError(EXIT.kernelFailed) })])), EXIT.kernelFailed, 'one arch failing fails the run');
  t.equal(overallExit(run([arch('ppc64le', [failedCheck()], { error: archError(EXIT.infra) })])), EXIT.infra, 'more serious than its failed scenario');
  t.equal(overallExit(run([arch('ppc64le', [infraFault()], { error: archError(EXIT.kernelFailed) })])), EXIT.infra, 'less serious than its infra fault');
});

t.test('the most serious wins: interrupted > usage > infra > kernel > failed check > ok, in any order', async (t) => {
  const bySeverity = [
    [interrupted, EXIT.interrupted],
    [usageFault, EXIT.usage],
    [infraFault, EXIT.infra],
    [kernelFault, EXIT.kernelFailed],
    [failedCheck, EXIT.testsFailed],
    [passed, EXIT.ok],
  ] as const;
  for (let i = 0; i < bySeverity.length; i++) {
    const present = bySeverity.slice(i).map(([make]) => make());
    const expected = bySeverity[i]![1];
    t.equal(overallExit(run([arch('x86_64', present)])), expected, `worst is ${expected}: in one arch`);
    t.equal(overallExit(run([arch('x86_64', [...present].reverse())])), expected, `worst is ${expected}: reversed`);
    // The worst alone on the second arch, the rest on the first.
    t.equal(overallExit(run([arch('x86_64', present.slice(1)), arch('ppc64le', present.slice(0, 1))])), expected, `worst is ${expected}: on another arch`);
  }
});

t.test('a run interrupted as a whole is interrupted, even if everything that ran passed', async (t) => {
  t.equal(overallExit(run([arch('x86_64', [passed()])], { interrupted: 'SIGTERM' })), EXIT.interrupted);
  t.equal(overallExit(run([], { interrupted: 'SIGINT' })), EXIT.interrupted, 'before anything ran');
  t.equal(overallExit(run([arch('x86_64', [usageFault()])], { interrupted: 'SIGINT' })), EXIT.interrupted, 'over a usage fault');
});

t.test('known failures: an expected failure does not fail the run, an unexpected pass passes, others still count', async (t) => {
  const xfail = { status: 'xfail' as const, because: ['7.2 oopses in test-ftrace.sh (README.md#x)'] };
  t.equal(one({ ...kernelFault(), known: xfail }), EXIT.ok, 'an expected kernel failure');
  t.equal(one({ ...failedCheck(), known: xfail }), EXIT.ok, 'an expected failed check');
  t.equal(one({ ...passed(), known: { status: 'xpass', because: ['stale entry (README.md#x)'] } }), EXIT.ok, 'XPASS: the run still passes');
  t.equal(overallExit(run([arch('x86_64', [{ ...kernelFault(), known: xfail }, failedCheck()])])), EXIT.testsFailed, 'a failure it does not cover fails as before');
  t.equal(overallExit(run([arch('x86_64', [{ ...kernelFault(), known: xfail }]), arch('ppc64le', [kernelFault()])])), EXIT.kernelFailed, 'the same failure on an arch it does not cover');
  t.equal(one({ ...interrupted(), known: xfail }), EXIT.interrupted, 'an interrupt is never taken for an expected failure');
  t.equal(overallExit(run([arch('x86_64', [{ ...kernelFault(), known: xfail }], { error: archError(EXIT.infra) })])), EXIT.infra, 'nor is the arch\'s own error');
});

t.test('the exit code is worked out from the outcomes, not taken from the report', async (t) => {
  t.equal(overallExit(run([arch('x86_64', [passed()])], { exitCode: EXIT.testsFailed })), EXIT.ok);
  t.equal(overallExit(run([arch('x86_64', [failedCheck()])], { exitCode: EXIT.ok })), EXIT.testsFailed);
});
