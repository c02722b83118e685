// The scenario runner against a stand-in guest: a missing per-patch file
// skips only when the run's inputs do not promise it (else it fails), an
// optional one is noted as not checked, a failed check fails, and the
// console/taint check always runs.
import t from 'tap';
import { ARCHES } from '../../../harness/core/arch.js';
import type { GuestOps } from '../../../harness/vm/guestops.js';
import { createLogger } from '../../../harness/core/log.js';
import type { QemuVM } from '../../../harness/vm/qemu.js';
import { runScenario } from '../../../harness/scenarios/runner.js';
import { Inconclusive, type Expectations, type Scenario } from '../../../harness/scenarios/types.js';
import { procStat } from '../../../harness/proc/stat.js';

const NOTHING_PROMISED: Expectations = { promised: {}, required: [], noGeneration: 'no generation record for linux 9.9' };

/** A guest whose sysfs has only the files listed; taint reads `taint`. */
function fakeGuest(files: string[], taint = '0', expect: Expectations = NOTHING_PROMISED) {
  const ops = {
    exists: async (p: string) => files.includes(p),
    read: async (p: string) => (p === '/proc/sys/kernel/tainted' ? taint : ''),
  } as unknown as GuestOps;
  const vm = { events: [] } as unknown as QemuVM;
  return { arch: ARCHES.x86_64!, ops, vm, build: {} as never, tree: '/nowhere', modules: {} as never, logger: createLogger('quiet', () => {}), expect };
}

const needsSignal: Scenario = {
  name: 'needs-signal',
  description: '',
  needs: ['signal'],
  async run(ctx) {
    await ctx.step('load the patch', async (s) => {
      s.equal('insmod', 0, 0);
      await ctx.requireFeatures('p');
      s.equal('never reached on a kernel without signal', 'ran', 'not run');
    });
  },
};

t.test('a kernel without the signal file skips the scenario when nothing promises it, and says why', async (t) => {
  const r = await runScenario(needsSignal, fakeGuest(['/sys/kernel/livepatch/p/force']));
  t.equal(r.ok, true);
  t.match(r.skipped, /no \/sys\/kernel\/livepatch\/p\/signal/);
  t.equal(r.steps[0]!.checks.length, 1, 'checks after the detection did not run');
});

t.test('a promised file that is missing fails the scenario, naming the promise; so does --require', async (t) => {
  const promised = await runScenario(needsSignal, fakeGuest([], '0', { ...NOTHING_PROMISED, promised: { signal: 'the series says it adds it (patches/adds)' } }));
  t.equal(promised.ok, false);
  t.equal(promised.skipped, undefined);
  const c = promised.steps.flatMap((s) => s.checks).find((c) => !c.ok)!;
  t.match(c.what, /signal \(promised: the series says it adds it/);
  t.equal(c.expected, 'present');
  const required = await runScenario(needsSignal, fakeGuest([], '0', { ...NOTHING_PROMISED, required: ['signal'] }));
  t.equal(required.ok, false);
  t.match(required.error, /--require signal|per-patch files/);
});

t.test('an optional file: absent and not promised is noted as not checked; absent and promised fails at the end', async (t) => {
  const usesSignal: Scenario = {
    name: 'uses-signal',
    description: '',
    uses: ['signal'],
    async run(ctx) {
      if (await ctx.has('p', 'signal', 'that signal does not help')) await ctx.step('signal', async (s) => void s.equal('ran', 1, 1));
      await ctx.step('force', async (s) => void s.equal('force worked', 1, 1));
    },
  };
  const plain = await runScenario(usesSignal, fakeGuest([]));
  t.equal(plain.ok, true);
  t.match(plain.unchecked?.[0], /that signal does not help: this kernel has no \/sys\/kernel\/livepatch\/p\/signal/);
  t.same(plain.steps.map((s) => s.name), ['force', 'console clean and taint explained'], 'the rest still ran');
  const broken = await runScenario(usesSignal, fakeGuest([], '0', { ...NOTHING_PROMISED, promised: { signal: 'the series says it adds it' } }));
  t.equal(broken.ok, false);
  t.ok(broken.steps.find((s) => s.name === 'force')?.checks.every((c) => c.ok), 'force was still tested');
  t.match(broken.error, /per-patch files the run's inputs promise/);
});

t.test('a kernel with the file runs the scenario, and a failed check fails it', async (t) => {
  const r = await runScenario(needsSignal, fakeGuest(['/sys/kernel/livepatch/p/signal']));
  t.equal(r.ok, false);
  t.equal(r.skipped, undefined);
  t.match(r.error, /never reached on a kernel without signal/);
});

t.test('an inconclusive run is marked so (to be run again), as the host\'s fault, never as a failed check', async (t) => {
  const early: Scenario = {
    name: 'early',
    description: '',
    async run(ctx) {
      await ctx.step('write signal', async () => {
        throw new Inconclusive('the kernel signalled first');
      });
    },
  };
  const r = await runScenario(early, fakeGuest([]));
  t.equal(r.inconclusive, 'the kernel signalled first');
  t.equal(r.ok, false);
  t.equal(r.fault, 'infra');
  t.match(r.error, /^inconclusive: the kernel signalled first/);
  t.notOk(r.steps.some((s) => s.checks.some((c) => !c.ok)), 'no check failed');
});

t.test('an unexplained taint fails a scenario whose checks all held', async (t) => {
  const fine: Scenario = { name: 'fine', description: '', run: async (ctx) => ctx.step('read', async (s) => void s.equal('x', 1, 1)) };
  const clean = await runScenario(fine, fakeGuest([], String((1 << 12) | (1 << 15))));
  t.equal(clean.ok, true, 'O and K taints are explained');
  const warned = await runScenario(fine, fakeGuest([], String(1 << 9)));
  t.equal(warned.ok, false, 'W (a WARN) fails it');
  t.match(warned.steps.at(-1)!.checks.at(-1)!.actual, /W\(bit 9\)/);
});

t.test("each step records its guest's QEMU CPU: the process's CPU from /proc across the step, none without a process", async (t) => {
  // The "QEMU" is a child that burns CPU only while the second step runs (SIGCONT/SIGSTOP around it).
  const { spawn } = await import('node:child_process');
  const burner = spawn(process.execPath, ['-e', 'for (;;);'], { stdio: 'ignore' });
  t.teardown(() => burner.kill('SIGKILL'));
  burner.kill('SIGSTOP');
  const base = { ...fakeGuest([]), vm: { events: [], pid: burner.pid } as unknown as QemuVM };
  const twoSteps: Scenario = {
    name: 'two-steps',
    description: '',
    async run(ctx) {
      await ctx.step('idle', async () => new Promise((r) => setTimeout(r, 300)));
      await ctx.step('busy', async () => {
        // Until it has burnt 200 ms by its own count (on a loaded host 300 ms of wall gave it 30 ms).
        const cpu0 = procStat(burner.pid!)!.cpuMs;
        burner.kill('SIGCONT');
        const deadline = Date.now() + 20_000;
        while (procStat(burner.pid!)!.cpuMs - cpu0 < 200 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        burner.kill('SIGSTOP');
      });
    },
  };
  const r = await runScenario(twoSteps, base);
  const idle = r.steps.find((s) => s.name === 'idle')!;
  const busy = r.steps.find((s) => s.name === 'busy')!;
  t.ok(idle.qemuCpuMs !== undefined && idle.qemuCpuMs <= 20, `a stopped process used no CPU in its step (${idle.qemuCpuMs} ms)`);
  t.ok(busy.qemuCpuMs !== undefined && busy.qemuCpuMs >= 200, `a busy one: the 200 ms it burnt in the step, at least (${busy.qemuCpuMs} ms)`);
  const none = await runScenario(twoSteps, fakeGuest([]));
  t.equal(none.steps[0]!.qemuCpuMs, undefined, 'no QEMU process: no figure, not 0');
});
