// The scenario runner against a stand-in guest: skips with the kernel's
// reason when a per-patch file is missing, fails on a failed check, and
// always runs the console/taint check.
import t from 'tap';
import { ARCHES } from '../../../harness/core/arch.js';
import type { GuestOps } from '../../../harness/vm/guestops.js';
import { createLogger } from '../../../harness/core/log.js';
import type { QemuVM } from '../../../harness/vm/qemu.js';
import { runScenario } from '../../../harness/scenarios/runner.js';
import type { Scenario } from '../../../harness/scenarios/types.js';

/** A guest whose sysfs has only the files listed; taint reads `taint`. */
function fakeGuest(files: string[], taint = '0') {
  const ops = {
    exists: async (p: string) => files.includes(p),
    read: async (p: string) => (p === '/proc/sys/kernel/tainted' ? taint : ''),
  } as unknown as GuestOps;
  const vm = { events: [] } as unknown as QemuVM;
  return { arch: ARCHES.x86_64!, ops, vm, build: {} as never, tree: '/nowhere', modules: {} as never, logger: createLogger('quiet', () => {}) };
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

t.test('a kernel without the signal file skips the scenario and says why', async (t) => {
  const r = await runScenario(needsSignal, fakeGuest(['/sys/kernel/livepatch/p/force']));
  t.equal(r.ok, true);
  t.match(r.skipped, /no \/sys\/kernel\/livepatch\/p\/signal/);
  t.equal(r.steps[0]!.checks.length, 1, 'checks after the detection did not run');
});

t.test('a kernel with the file runs the scenario, and a failed check fails it', async (t) => {
  const r = await runScenario(needsSignal, fakeGuest(['/sys/kernel/livepatch/p/signal']));
  t.equal(r.ok, false);
  t.equal(r.skipped, undefined);
  t.match(r.error, /never reached on a kernel without signal/);
});

t.test('an unexplained taint fails a scenario whose checks all held', async (t) => {
  const fine: Scenario = { name: 'fine', description: '', run: async (ctx) => ctx.step('read', async (s) => void s.equal('x', 1, 1)) };
  const clean = await runScenario(fine, fakeGuest([], String((1 << 12) | (1 << 15))));
  t.equal(clean.ok, true, 'O and K taints are explained');
  const warned = await runScenario(fine, fakeGuest([], String(1 << 9)));
  t.equal(warned.ok, false, 'W (a WARN) fails it');
  t.match(warned.steps.at(-1)!.checks.at(-1)!.actual, /W\(bit 9\)/);
});
