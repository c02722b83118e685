// A livepatched function that a tracer also watches: the function tracer and
// livepatch share the function's ftrace site (livepatch's ops modify the
// return address, IPMODIFY; the tracer's only record). Upstream's
// test-ftrace.sh checks the same on one of the kernel's own functions; this
// runs it on the harness's module, on every kernel and arch, without the
// selftests: the function must keep running when its tracer goes and comes
// back (before any livepatch: 7.2 x86_64 oopsed there, see
// docs/upstream/x86-ftrace-callback-jmp-7.2.md), the patched function must keep
// running, traced, and after the tracer goes, and the kernel must not complain.
import { timeout } from '../core/timeouts.js';
import { LP, Sleeper } from './sleeper.js';
import type { Scenario, ScenarioContext, StepApi } from './types.js';

const FUNC = 'klp_sleeper_block';
/** tracefs, mounted by the scenario where the kernel has not. */
const TRACING = '/sys/kernel/tracing';

/** One direct call of the function (the module's probe), and which version ran, by the module's counters. */
async function probe(sl: Sleeper, s: StepApi, calls: { old: number; new: number }, what: string) {
  s.accepted(`probe call (${what})`, await sl.control('probe'));
  const st = await sl.blocker('probe');
  s.equal(`${what}: the original function ran (calls_old)`, st?.calls_old ?? 'none', calls.old);
  s.equal(`${what}: the livepatched function ran (calls_new)`, st?.calls_new ?? 'none', calls.new);
}

/** How many times the trace buffer shows the function entered. */
async function traced(ctx: ScenarioContext): Promise<number> {
  const r = await ctx.ops.run(`grep -c ' ${FUNC} <-' ${TRACING}/trace || true`);
  return Number(r.stdout.trim()) || 0;
}

export const tracedPatch: Scenario = {
  name: 'traced-patch',
  description: `a function tracer on ${FUNC} while it is livepatched: the new function runs while traced and after the tracer goes, every call is traced, no oops`,
  async run(ctx) {
    const sl = new Sleeper(ctx);
    await ctx.step(`load klp_sleeper; trace ${FUNC} with the function tracer`, async (s) => {
      await sl.load(s);
      await ctx.ops.must(`[ -e ${TRACING}/trace ] || mount -t tracefs nodev ${TRACING}; cd ${TRACING} && echo 0 > tracing_on && echo > trace && echo ${FUNC} > set_ftrace_filter && echo function > current_tracer && echo 1 > tracing_on`);
      s.equal('current_tracer', await ctx.ops.read(`${TRACING}/current_tracer`), 'function');
      s.equal('set_ftrace_filter (its first word)', (await ctx.ops.read(`${TRACING}/set_ftrace_filter`)).split(' ')[0] ?? '', FUNC);
      await probe(sl, s, { old: 1, new: 0 }, 'traced, not patched');
      s.equal(`entries of ${FUNC} in the trace`, await traced(ctx), 1);
    });
    await ctx.step('the tracer goes and comes back, no livepatch yet: the function runs, traced', async (s) => {
      // The tracer's ops keeps its trampoline, which is now updated in place
      // instead of built: 7.2 x86_64 without patches/7.2/0002 wrote a JMP there.
      await ctx.ops.must(`cd ${TRACING} && echo nop > current_tracer && echo > trace && echo ${FUNC} > set_ftrace_filter && echo function > current_tracer`);
      s.equal('current_tracer', await ctx.ops.read(`${TRACING}/current_tracer`), 'function');
      await probe(sl, s, { old: 2, new: 0 }, 'traced again');
      s.equal(`entries of ${FUNC} in the trace`, await traced(ctx), 1);
    });
    await ctx.step('patch it while traced: the new function runs, and is still traced', async (s) => {
      await sl.insmodPatch(s);
      ctx.timing('patchingMs', await sl.waitDone(s, 'patching finished', '0'));
      await probe(sl, s, { old: 2, new: 1 }, 'traced and patched');
      s.equal(`entries of ${FUNC} in the trace`, await traced(ctx), 2);
    });
    await ctx.step('the tracer goes: the live patch stays in effect', async (s) => {
      await ctx.ops.must(`cd ${TRACING} && echo nop > current_tracer && echo > set_ftrace_filter`);
      s.equal('current_tracer', await ctx.ops.read(`${TRACING}/current_tracer`), 'nop');
      await probe(sl, s, { old: 2, new: 2 }, 'patched, tracer gone');
    });
    await ctx.step('trace again, then unpatch: the original function runs again, traced', async (s) => {
      await ctx.ops.must(`cd ${TRACING} && echo > trace && echo ${FUNC} > set_ftrace_filter && echo function > current_tracer`);
      s.accepted('write 0 to enabled', await ctx.ops.write(sl.file('enabled'), '0'));
      await sl.waitDone(s, 'unpatching finished', '1');
      await ctx.ops.waitGone(`/sys/kernel/livepatch/${LP}/enabled`, timeout('transition', ctx.arch));
      await probe(sl, s, { old: 3, new: 2 }, 'traced, unpatched');
      s.equal(`entries of ${FUNC} in the trace`, await traced(ctx), 1);
      await ctx.ops.must(`cd ${TRACING} && echo nop > current_tracer && echo > set_ftrace_filter`);
      s.equal(`rmmod ${LP}`, (await ctx.ops.rmmod(LP)).code ?? 'no exit status', 0);
    });
  },
};
