// The kernel's livepatch-sample module: patch, check the new /proc/cmdline,
// check our series' signal file refuses a write with no transition, unpatch,
// remove.
import { join } from 'node:path';
import { timeout } from '../core/timeouts.js';
import { Skipped, type Scenario } from './types.js';

const PATCH = 'livepatch_sample';
const PATCHED_CMDLINE = 'this has been live patched';

export const sample: Scenario = {
  name: 'sample',
  description: 'livepatch-sample.ko patches and unpatches cleanly; signal without a transition gives EINVAL',
  uses: ['signal'],
  async run(ctx) {
    const { ops } = ctx;
    if (ctx.expect.noSampleModule) throw new Skipped(ctx.expect.noSampleModule);
    const original = await ops.read('/proc/cmdline');
    let ko = '';
    await ctx.step('load livepatch-sample.ko', async (s) => {
      ko = await ctx.copyIn(join(ctx.build.buildDir, 'samples/livepatch/livepatch-sample.ko'));
      const r = await ops.insmod(ko);
      s.equal('insmod exit status', r.code ?? 'no exit status', 0);
    });
    await ctx.step('patching completes', async (s) => {
      const w = await ops.waitTransition(PATCH, '0', timeout('transition', ctx.arch));
      ctx.timing('patchingMs', w.waitedMs);
      s.equal('transition', w.value, '0');
      s.equal('enabled', await ops.read(ops.patchFile(PATCH, 'enabled')), '1');
      s.equal('/proc/cmdline', await ops.read('/proc/cmdline'), PATCHED_CMDLINE);
      s.match('dmesg', await ops.dmesg(), new RegExp(`'${PATCH}': patching complete`));
    });
    // The per-patch signal file comes with our series: missing while the inputs promise it fails; else this step is noted as not checked.
    const signalFile = ops.patchFile(PATCH, 'signal');
    if (await ctx.has(PATCH, 'signal', 'that signal without a transition is refused')) {
      await ctx.step('signal without a transition is refused', async (s) => {
        s.refused('write 1 to signal', await ops.write(signalFile, '1'), 'Invalid argument');
        s.equal('transition after the write', await ops.read(ops.patchFile(PATCH, 'transition')), '0');
      });
    }
    await ctx.step('unpatching completes', async (s) => {
      s.accepted('write 0 to enabled', await ops.write(ops.patchFile(PATCH, 'enabled'), '0'));
      const w = await ops.waitTransition(PATCH, '0', timeout('transition', ctx.arch));
      ctx.timing('unpatchingMs', w.waitedMs);
      // Since 5.1 a disabled patch is freed at the end of unpatching: its directory goes away.
      s.equal('transition (or the patch freed)', w.value === 'gone' ? '0' : w.value, '0');
      s.match('dmesg', await ops.dmesg(), new RegExp(`'${PATCH}': unpatching complete`));
      s.equal('/proc/cmdline', await ops.read('/proc/cmdline'), original);
    });
    await ctx.step('rmmod succeeds', async (s) => {
      const r = await ops.rmmod(PATCH);
      s.equal('rmmod exit status', r.code ?? 'no exit status', 0);
      s.equal(`/sys/kernel/livepatch/${PATCH}`, (await ops.exists(`/sys/kernel/livepatch/${PATCH}`)) ? 'present' : 'gone', 'gone');
    });
  },
};
