// The transition matrix: each way a transition can stick, and which lever
// (signal, force, reverse, the kernel's own signal) finishes it. A stuck
// scenario is declared by its setup (blocker and direction) and its remedy;
// `klp-harness repro` replays the setup alone.
import { guestBound, timeout } from '../core/timeouts.js';
import { LP, LP_REPLACE, Sleeper, type BlockerName, type UserBlocker } from './sleeper.js';
import { DEFAULT_VCPUS, Skipped, type Scenario, type ScenarioContext, type StepApi, type StuckSetup } from './types.js';

const AUTO_SIGNAL = /livepatch: signaling remaining tasks/;
const FORCING = /livepatch: forcing remaining tasks to the patched state/;

/** Loads the sleeper, starts the blocker and waits until the transition is stuck; returns the blocker's pid. */
export async function reachStuck(ctx: ScenarioContext, sl: Sleeper, stuck: StuckSetup, afterLoad?: { title: string; fn: (s: StepApi) => Promise<void> }): Promise<number> {
  let pid = 0;
  if (stuck.direction === 'patching') {
    await ctx.step(`load klp_sleeper and start ${stuck.blocker}${stuck.thread ? ` in the second thread of a process (leader ${stuck.thread === 'busy' ? 'running' : 'asleep in futex_wait'})` : ''}`, async (s) => {
      await sl.load(s);
      // A busy leader runs until it has switched (patch_state 1 while patching), then waits.
      pid = await sl.start(stuck.blocker, s, stuck.thread, '1');
      // thread-blocker makes its own system calls (sc on ppc64le), not glibc's choice.
      if (stuck.blocker.startsWith('user-') && !stuck.thread) await syscallInstruction(ctx, s, pid);
    });
    // Checks made while stuck go in the same sampling as the stuck proof: the lever's write comes early, far from the kernel's own signal.
    await ctx.step(`patching sticks${afterLoad ? `; ${afterLoad.title}` : ''}`, async (s) => {
      const t0 = Date.now();
      await sl.insmodPatch(s);
      if (afterLoad) await afterLoad.fn(s);
      if (await sl.confirmStuck(s, '0', pid)) ctx.timing('stuckSeenMs', Date.now() - t0);
    });
    return pid;
  }
  await ctx.step('load klp_sleeper and patch without a blocker', async (s) => {
    await sl.load(s);
    await sl.insmodPatch(s);
    await sl.waitDone(s, 'patching finished', '0');
  });
  await ctx.step(`start ${stuck.blocker} in the new function`, async (s) => {
    pid = await sl.start(stuck.blocker, s);
    s.equal('it sleeps in the livepatched function (calls_new)', (await sl.blocker(stuck.blocker))?.calls_new ?? 'none', 1);
    if (stuck.blocker.startsWith('user-')) await syscallInstruction(ctx, s, pid);
  });
  if (stuck.direction === 'replacing') {
    const repl = sl.withPatch(LP_REPLACE);
    await ctx.step(`loading the atomic-replace patch ${LP_REPLACE} sticks`, async (s) => {
      const t0 = Date.now();
      await repl.insmodPatch(s);
      if (await repl.confirmStuck(s, '0', pid)) ctx.timing('stuckSeenMs', Date.now() - t0);
      s.equal(`${LP} still enabled while it is being replaced`, await ctx.ops.read(sl.file('enabled')), '1');
    });
    return pid;
  }
  await ctx.step('unpatching sticks', async (s) => {
    const t0 = Date.now();
    await sl.disableTimed(s);
    if (await sl.confirmStuck(s, '1', pid)) ctx.timing('stuckSeenMs', Date.now() - t0);
  });
  return pid;
}

/** A scenario that makes a transition stick as `stuck` says, then applies `remedy`. */
function stuckScenario(
  def: Omit<Scenario, 'run' | 'stuck'> & {
    stuck: StuckSetup;
    /** Checks made while the stuck state is being proven (writes that must change nothing). */
    whileStuck?: (ctx: ScenarioContext, sl: Sleeper) => { title: string; fn: (s: StepApi) => Promise<void> };
    remedy: (ctx: ScenarioContext, sl: Sleeper, pid: number) => Promise<void>;
  },
): Scenario {
  const { remedy, whileStuck, ...rest } = def;
  return {
    ...rest,
    async run(ctx) {
      const sl = new Sleeper(ctx);
      await remedy(ctx, sl, await reachStuck(ctx, sl, def.stuck, whileStuck?.(ctx, sl)));
    },
  };
}

/** Which patches the kernel's force pins, from the generation record; undefined (and noted) without one. */
function forcePins(ctx: ScenarioContext): 'removed' | 'all' | undefined {
  const g = ctx.expect.generation;
  if (!g) ctx.unchecked(`which modules force pins (${ctx.expect.noGeneration})`);
  return g?.forcePins;
}

/** Per thread of a process: the leader's and the blocking thread's patch_state. */
async function threadStates(ctx: ScenarioContext, s: StepApi, tid: number, initial: '0' | '1'): Promise<number> {
  const tgid = Number(/^Tgid:\s*(\d+)/m.exec(await ctx.ops.read(`/proc/${tid}/status`))?.[1] ?? 0);
  s.equal(`the blocker ${tid} is not its process's leader (Tgid ${tgid})`, tgid !== tid && tgid > 0 ? 'another thread' : 'the leader', 'another thread');
  const r = (await ctx.ops.run(`for t in /proc/${tgid}/task/*; do read s < $t/patch_state; echo "\${t##*/} $s"; done`)).stdout.trim().split('\n');
  const states = new Map(r.map((l) => l.split(' ') as [string, string]));
  s.equal(`threads of process ${tgid}`, states.size, 2);
  s.equal(`/proc/${tgid}/task/${tgid}/patch_state (the leader, not in the function)`, states.get(String(tgid)) ?? 'none', initial === '0' ? '1' : '0');
  s.equal(`/proc/${tgid}/task/${tid}/patch_state (the blocking thread)`, states.get(String(tid)) ?? 'none', initial);
  return tgid;
}

/** The patch_state a blocker keeps while the transition is stuck. */
export const initialOf = (stuck: StuckSetup): '0' | '1' => (stuck.direction === 'unpatching' ? '1' : '0');
/** The patch whose transition is left pending. */
export const pendingPatchOf = (stuck: StuckSetup): string => (stuck.direction === 'replacing' ? LP_REPLACE : LP);

/** The kernel's own periodic signal must not have been what finished the transition. */
async function noAutoSignal(ctx: ScenarioContext, s: StepApi) {
  s.equal('the kernel\'s own fake signal ("signaling remaining tasks")', AUTO_SIGNAL.test(await ctx.ops.dmesg()) ? 'sent' : 'not sent', 'not sent');
}

const AT_HWCAP2 = 26;
const PPC_FEATURE2_SCV = 0x0010_0000n;

/**
 * ppc64le: which system call instruction the blocker's glibc uses on this
 * CPU (scv where AT_HWCAP2 has PPC_FEATURE2_SCV, else sc). A restarted
 * syscall returns through that instruction's own exit path.
 */
async function syscallInstruction(ctx: ScenarioContext, s: StepApi, pid: number) {
  const want = ctx.cpu ? ctx.arch.syscallByCpu?.[ctx.cpu] : undefined;
  if (!want) return;
  const hwcap2 = (await ctx.ops.auxv(pid)).get(AT_HWCAP2);
  const used = hwcap2 === undefined ? 'no AT_HWCAP2' : hwcap2 & PPC_FEATURE2_SCV ? 'scv' : 'sc';
  s.equal(`system call instruction of pid ${pid} on ${ctx.cpu} (AT_HWCAP2 0x${hwcap2?.toString(16) ?? '?'})`, used, want);
  ctx.logger.info(`  ${ctx.arch.name}/${ctx.cpu}: the blocker enters the kernel with '${used}' (AT_HWCAP2 0x${hwcap2?.toString(16) ?? '?'})`);
}

const countOf = (text: string, re: RegExp) => text.split('\n').filter((l) => re.test(l)).length;

/** The transition finished exactly once in this direction (dmesg). */
async function completedOnce(ctx: ScenarioContext, s: StepApi, direction: 'patching' | 'unpatching') {
  s.equal(`"'${LP}': ${direction} complete" lines in dmesg`, countOf(await ctx.ops.dmesg(), new RegExp(`'${LP}': ${direction} complete`)), 1);
}

const probe = async (sl: Sleeper, s: StepApi, expectOld: number, expectNew: number) => {
  s.accepted('probe call', await sl.control('probe'));
  const st = await sl.blocker('probe');
  s.equal('probe ran the original function (calls_old)', st?.calls_old ?? 'none', expectOld);
  s.equal('probe ran the livepatched function (calls_new)', st?.calls_new ?? 'none', expectNew);
};

/** rmmod's outcome as a reading: "removed", or its error text. */
async function rmmod(ctx: ScenarioContext, mod: string): Promise<string> {
  const r = await ctx.ops.rmmod(mod);
  return r.code === 0 ? 'removed' : r.stderr.trim() || `exit ${r.code}`;
}

/**
 * Disables a patch and removes its module. The module reference is dropped
 * in klp_free_patch_async(), after `transition` reads 0: wait for the
 * patch's directory to go first.
 */
async function disableAndRemove(ctx: ScenarioContext, sl: Sleeper, s: StepApi) {
  s.accepted(`write 0 to ${sl.patch}/enabled`, await ctx.ops.write(sl.file('enabled'), '0'));
  await sl.waitDone(s, 'unpatching finished', '1');
  await patchGone(ctx, s, sl.patch);
  s.equal(`rmmod ${sl.patch}`, await rmmod(ctx, sl.patch), 'removed');
}

/** A disable that completes, after which the module is still pinned (refcnt 1, rmmod refused). */
async function disableAndStayPinned(ctx: ScenarioContext, sl: Sleeper, s: StepApi) {
  s.accepted(`write 0 to ${sl.patch}/enabled`, await ctx.ops.write(sl.file('enabled'), '0'));
  await sl.waitDone(s, 'unpatching finished', '1');
  await patchGone(ctx, s, sl.patch);
  s.equal(`/sys/module/${sl.patch}/refcnt`, await ctx.ops.read(`/sys/module/${sl.patch}/refcnt`), '1');
  s.match(`rmmod ${sl.patch} (pinned by the forced transition)`, await rmmod(ctx, sl.patch), /Resource temporarily unavailable/);
}

/** Waits until the kernel freed a patch (its sysfs directory is gone). */
async function patchGone(ctx: ScenarioContext, s: StepApi, patch: string, what = '') {
  const g = await ctx.ops.waitGone(`/sys/kernel/livepatch/${patch}/enabled`, timeout('transition', ctx.arch));
  s.equal(`/sys/kernel/livepatch/${patch}${what}`, g.gone ? 'gone' : 'still present', 'gone');
}

const alive = async (ctx: ScenarioContext, pid: number) => ((await ctx.ops.exists(`/proc/${pid}`)) ? 'alive' : 'gone');

/**
 * Writes 1 to signal for a blocker it cannot free, and shows why with the
 * blocker's counters: an uninterruptible or killable sleeper is not woken
 * at all; a looping kthread is woken by each write (written twice: a
 * kernel that wakes a kthread only once per transition fails the second)
 * but stays in the function. Where the kernel has no signal file and the
 * inputs do not promise one, this is noted as not checked.
 */
async function signalDoesNotFree(ctx: ScenarioContext, sl: Sleeper, blocker: BlockerName) {
  if (!(await ctx.has(sl.patch, 'signal', `that signal does not free ${blocker}`))) return;
  await ctx.step(`signal does not free ${blocker}`, async (s) => {
    const writes = blocker === 'kthread-loop' ? 2 : 1;
    const start = await sl.blocker(blocker);
    for (let n = 1; n <= writes; n++) {
      const before = (await sl.blocker(blocker))?.wakeups ?? NaN;
      await sl.signalOnce(s, `write ${n} of 1 to signal`);
      if (blocker === 'kthread-loop') {
        // The fake signal wakes an interruptible kthread; a looping one goes straight back to its nap.
        const woken = ((await sl.waitStatus(blocker, (st) => st.wakeups > before))?.wakeups ?? NaN) - before;
        s.atLeast(`${blocker} wake-ups inside klp_sleeper_block() since write ${n}`, woken, 1, 'count');
      }
    }
    await sl.stillStuck(s, `after writing 1 to signal${writes > 1 ? ' twice' : ''}`);
    const after = await sl.blocker(blocker);
    if (blocker !== 'kthread-loop') s.equal(`${blocker} wake-ups inside klp_sleeper_block() since the write`, (after?.wakeups ?? NaN) - (start?.wakeups ?? NaN), 0);
    s.equal(`${blocker} still sleeps in the function`, after?.sleeping ?? 'none', 1);
    s.equal(`${blocker} interrupted (-ERESTARTSYS)`, after?.interrupted ?? 'none', 0);
  });
}

export const noBlocker: Scenario = {
  name: 'no-blocker',
  description: 'without a blocker, patching and unpatching complete; new code runs after patching, old after unpatching',
  async run(ctx) {
    const sl = new Sleeper(ctx);
    await ctx.step('load klp_sleeper; the original function runs', async (s) => {
      await sl.load(s);
      await probe(sl, s, 1, 0);
    });
    await ctx.step('patching completes; the new function runs', async (s) => {
      await sl.insmodPatch(s);
      ctx.timing('patchingMs', await sl.waitDone(s, 'patching finished', '0'));
      s.equal('enabled', await ctx.ops.read(sl.file('enabled')), '1');
      await probe(sl, s, 1, 1);
    });
    await ctx.step('unpatching completes; the original function runs again', async (s) => {
      s.accepted('write 0 to enabled', await ctx.ops.write(sl.file('enabled'), '0'));
      await sl.waitDone(s, 'unpatching finished', '1');
      await probe(sl, s, 2, 1);
      await patchGone(ctx, s, LP);
      s.equal(`rmmod ${LP}`, await rmmod(ctx, LP), 'removed');
    });
  },
};

export const signalUserInt = stuckScenario({
  name: 'signal-user-int',
  description: 'an interruptible user task blocks patching; 0 changes nothing; signal (twice) frees it at once and its read restarts with the right data',
  allCpus: true,
  needs: ['signal', 'force'],
  stuck: { blocker: 'user-int', direction: 'patching' },
  // The 0 writes come before the stuck proof, so that its sampling also shows they changed nothing.
  whileStuck: (ctx, sl) => ({
    title: '0 to signal and to force while in transition: accepted, nothing woken',
    fn: async (s) => {
      s.equal('transition before the 0 writes', await ctx.ops.read(sl.file('transition')), '1');
      s.accepted('write 0 to signal', await ctx.ops.write(sl.file('signal'), '0'));
      s.accepted('write 0 to force', await ctx.ops.write(sl.file('force'), '0'));
    },
  }),
  async remedy(ctx, sl, pid) {
    await ctx.step('after the 0 writes and the stuck proof: the reader was neither woken nor interrupted', async (s) => {
      const st = await sl.blocker('user-int');
      s.equal('reader wake-ups inside klp_sleeper_block()', st?.wakeups ?? 'none', 0);
      s.equal('reader interrupted', st?.interrupted ?? 'none', 0);
    });
    await ctx.step('1 to signal, twice: the transition completes once, before the automatic signal', async (s) => {
      await sl.lever(s, 'signal', '1', '0', { times: 2 });
      await noAutoSignal(ctx, s);
      await completedOnce(ctx, s, 'patching');
    });
    await ctx.step('the reader got no real signal and its read restarted in the new function', async (s) => {
      s.equal(`reader ${pid}`, await alive(ctx, pid), 'alive');
      const status = await ctx.ops.read(`/proc/${pid}/status`);
      s.equal('SigPnd', /^SigPnd:\s*(\S+)/m.exec(status)?.[1] ?? '?', '0000000000000000');
      s.equal('ShdPnd', /^ShdPnd:\s*(\S+)/m.exec(status)?.[1] ?? '?', '0000000000000000');
      const st = await sl.blocker('user-int');
      s.equal('klp_sleeper_block() returned -ERESTARTSYS (interrupted)', st?.interrupted ?? 'none', 1);
      s.equal('woken inside the function (wakeups)', st?.wakeups ?? 'none', 1);
      s.equal('the restarted read sleeps in the new function (sleeping/calls_new)', `${st?.sleeping}/${st?.calls_new}`, '1/1');
      await sl.release('user-int', s);
      await sl.checkReader('user-int', s);
    });
    await ctx.step('clean up: unpatch and remove', (s) => disableAndRemove(ctx, sl, s));
  },
});

export const signalKthreadInt = stuckScenario({
  name: 'signal-kthread-int',
  description: 'an interruptible kthread blocks patching; signal wakes it (no signal for a kthread), it leaves the function, the transition completes at once',
  needs: ['signal'],
  stuck: { blocker: 'kthread-int', direction: 'patching' },
  async remedy(ctx, sl, pid) {
    await ctx.step('signal wakes the kthread; the transition completes', async (s) => {
      await sl.lever(s, 'signal', '1', '0');
      await noAutoSignal(ctx, s);
      const st = await sl.blocker('kthread-int');
      s.equal('kthread left klp_sleeper_block() (sleeping)', st?.sleeping ?? 'none', 0);
      s.equal('kthread woken inside the function (wakeups)', st?.wakeups ?? 'none', 1);
      s.equal('kthread was woken, not signalled (interrupted)', st?.interrupted ?? 'none', 0);
      s.equal(`kthread ${pid}`, await alive(ctx, pid), 'alive');
    });
    await ctx.step('clean up: unpatch and remove', (s) => disableAndRemove(ctx, sl, s));
  },
});

/**
 * After a forced patching: release the blocker, then, where the kernel's
 * generation pins only patches being removed, a clean disable lets rmmod
 * work; where it pins every patch, the module stays pinned.
 */
async function afterForcedPatching(ctx: ScenarioContext, sl: Sleeper, blocker: StuckSetup['blocker']) {
  const pins = forcePins(ctx);
  const title =
    pins === 'removed'
      ? 'release; a clean disable after a forced patching lets rmmod work (only patches being removed are pinned)'
      : pins === 'all'
        ? 'release; after a forced patching the module stays pinned even once disabled (this generation pins every patch)'
        : 'release and disable';
  await ctx.step(title, async (s) => {
    await sl.release(blocker, s);
    if (blocker.startsWith('user-')) await sl.checkReader(blocker as UserBlocker, s);
    if (pins === 'removed') {
      await disableAndRemove(ctx, sl, s);
      s.equal(`/sys/module/${LP}`, (await ctx.ops.exists(`/sys/module/${LP}`)) ? 'present' : 'gone', 'gone');
    } else if (pins === 'all') await disableAndStayPinned(ctx, sl, s);
    else {
      s.accepted(`write 0 to ${sl.patch}/enabled`, await ctx.ops.write(sl.file('enabled'), '0'));
      await sl.waitDone(s, 'unpatching finished', '1');
    }
  });
}

function forceScenario(name: string, blocker: StuckSetup['blocker'], description: string, allCpus = false): Scenario {
  return stuckScenario({
    name,
    description,
    allCpus,
    needs: ['force'],
    uses: ['signal'],
    stuck: { blocker, direction: 'patching' },
    async remedy(ctx, sl) {
      await signalDoesNotFree(ctx, sl, blocker);
      await ctx.step('force completes the transition', async (s) => {
        await sl.lever(s, 'force', '1', '0');
        s.match('dmesg', await ctx.ops.dmesg(), FORCING);
        s.equal('enabled', await ctx.ops.read(sl.file('enabled')), '1');
      });
      await afterForcedPatching(ctx, sl, blocker);
    },
  });
}

export const forceKthreadIdle = forceScenario('force-kthread-idle', 'kthread-idle', 'an uninterruptible kthread blocks patching; signal does not wake it; force finishes at once');
export const forceUserIdle = forceScenario('force-user-idle', 'user-idle', 'an uninterruptible user task blocks patching; signal does not wake it; force finishes at once', true);

export const forceUserKillable = forceScenario('force-user-killable', 'user-killable', 'a killable user task (TASK_KILLABLE) blocks patching; the fake signal is not fatal and does not wake it; force finishes at once', true);
export const forceKthreadLoop = forceScenario('force-kthread-loop', 'kthread-loop', 'a kthread napping in a loop inside the function blocks patching; signal wakes it but it stays inside; force finishes at once');

export const signalThread = stuckScenario({
  name: 'signal-thread',
  // Its leader runs on the other CPU while the kernel tries to switch the process (on one CPU it would be preempted).
  vcpus: 2,
  description: 'the second thread of a process, its leader running until it has switched, blocks patching in an interruptible read; the kernel names the thread, its patch_state stays 0 while the leader\'s is 1; signal frees it and its read restarts in the new function',
  needs: ['signal'],
  stuck: { blocker: 'user-int', direction: 'patching', thread: 'busy' },
  async remedy(ctx, sl, tid) {
    await ctx.step('per thread: the leader switched, the blocking thread did not', (s) => threadStates(ctx, s, tid, '0').then(() => {}));
    await ctx.step('signal frees the thread; the transition completes', async (s) => {
      await sl.lever(s, 'signal', '1', '0');
      await noAutoSignal(ctx, s);
      const st = await sl.blocker('user-int');
      s.equal('the thread was interrupted once (-ERESTARTSYS)', st?.interrupted ?? 'none', 1);
      s.equal('its restarted read sleeps in the new function (sleeping/calls_new)', `${st?.sleeping}/${st?.calls_new}`, '1/1');
      await sl.release('user-int', s);
      await sl.checkReader('user-int', s);
    });
    await ctx.step('clean up: unpatch and remove', (s) => disableAndRemove(ctx, sl, s));
  },
});

export const forceThread = stuckScenario({
  name: 'force-thread',
  description: 'the second thread of a process, its leader asleep in futex_wait, blocks patching in an uninterruptible read; per thread patch_state; signal does not free it; force does',
  needs: ['force'],
  uses: ['signal'],
  stuck: { blocker: 'user-idle', direction: 'patching', thread: 'sleep' },
  async remedy(ctx, sl, tid) {
    await ctx.step('per thread: the sleeping leader switched, the blocking thread did not', (s) => threadStates(ctx, s, tid, '0').then(() => {}));
    await signalDoesNotFree(ctx, sl, 'user-idle');
    await ctx.step('force completes the transition', async (s) => {
      await sl.lever(s, 'force', '1', '0');
      s.match('dmesg', await ctx.ops.dmesg(), FORCING);
    });
    await afterForcedPatching(ctx, sl, 'user-idle');
  },
});

export const unpatchSignal = stuckScenario({
  name: 'unpatch-signal',
  description: 'a reader sleeping in the new function makes disabling stick; signal finishes the unpatching at once; the restarted read runs the original',
  allCpus: true,
  needs: ['signal'],
  stuck: { blocker: 'user-int', direction: 'unpatching' },
  async remedy(ctx, sl) {
    await ctx.step('signal finishes the unpatching; the read restarts in the original function', async (s) => {
      await sl.lever(s, 'signal', '1', '1');
      await noAutoSignal(ctx, s);
      const st = await sl.blocker('user-int');
      s.equal('interrupted once (-ERESTARTSYS)', st?.interrupted ?? 'none', 1);
      s.equal('the restarted read runs the original (calls_old)', st?.calls_old ?? 'none', 1);
      s.equal('calls_new (the first sleep only)', st?.calls_new ?? 'none', 1);
      await sl.release('user-int', s);
      await sl.checkReader('user-int', s);
      await patchGone(ctx, s, LP);
      s.equal(`rmmod ${LP}`, await rmmod(ctx, LP), 'removed');
    });
  },
});

export const unpatchForce = stuckScenario({
  name: 'unpatch-force',
  description: 'an uninterruptible reader in the new function makes disabling stick; force finishes it, the patch is freed but its module stays pinned (refcnt 1); the reader returns through the new code',
  allCpus: true,
  needs: ['force'],
  uses: ['signal'],
  stuck: { blocker: 'user-idle', direction: 'unpatching' },
  async remedy(ctx, sl) {
    await signalDoesNotFree(ctx, sl, 'user-idle');
    await ctx.step('force finishes the unpatching; the patch is freed', async (s) => {
      await sl.lever(s, 'force', '1', '1');
      s.match('dmesg', await ctx.ops.dmesg(), FORCING);
      // The patch's kobject goes in klp_free_patch_async(), after transition reads 0.
      await patchGone(ctx, s, LP);
    });
    await ctx.step('why the module stays: the forced patch keeps its module reference', async (s) => {
      s.equal(`/sys/module/${LP}/refcnt`, await ctx.ops.read(`/sys/module/${LP}/refcnt`), '1');
      s.match(`rmmod ${LP} while a reader sleeps in its code`, await rmmod(ctx, LP), /Resource temporarily unavailable/);
    });
    await ctx.step('the reader returns safely through the new code; the module stays pinned', async (s) => {
      await sl.release('user-idle', s);
      await sl.checkReader('user-idle', s);
      const st = await sl.blocker('user-idle');
      s.equal('it slept and returned in the livepatched function (calls_new/calls_old)', `${st?.calls_new}/${st?.calls_old}`, '1/0');
      await probe(sl, s, 1, 0);
      s.match(`rmmod ${LP} with no task inside it`, await rmmod(ctx, LP), /Resource temporarily unavailable/);
      s.equal(`/sys/module/${LP}/refcnt`, await ctx.ops.read(`/sys/module/${LP}/refcnt`), '1');
    });
  },
});

export const replaceSignal = stuckScenario({
  name: 'replace-signal',
  description: 'an atomic-replace patch loads while a reader sleeps in the first patch\'s function; signal completes the replace at once; the replaced patch goes and its module can be removed',
  allCpus: true,
  needs: ['signal'],
  stuck: { blocker: 'user-int', direction: 'replacing' },
  async remedy(ctx, sl) {
    const repl = sl.withPatch(LP_REPLACE);
    await ctx.step('signal on the replacing patch completes the replace', async (s) => {
      await repl.lever(s, 'signal', '1', '0');
      await noAutoSignal(ctx, s);
      await patchGone(ctx, s, LP, ' (replaced)');
      const st = await sl.blocker('user-int');
      s.equal('interrupted once (-ERESTARTSYS)', st?.interrupted ?? 'none', 1);
      s.equal('the restarted read sleeps in the replacing version (calls_new/calls_repl)', `${st?.calls_new}/${st?.calls_repl}`, '1/1');
    });
    await ctx.step('a replace finished by signal pins nothing', async (s) => {
      s.equal(`rmmod ${LP} (replaced, not forced)`, await rmmod(ctx, LP), 'removed');
      await sl.release('user-int', s);
      await sl.checkReader('user-int', s);
      await disableAndRemove(ctx, repl, s);
    });
  },
});

export const replaceForce = stuckScenario({
  name: 'replace-force',
  description: 'an atomic-replace patch loads while an uninterruptible reader sleeps in the first patch\'s function; signal does not wake it; force completes the replace; the replaced module is pinned, the replacing one is not',
  allCpus: true,
  needs: ['force'],
  uses: ['signal'],
  stuck: { blocker: 'user-idle', direction: 'replacing' },
  async remedy(ctx, sl) {
    const repl = sl.withPatch(LP_REPLACE);
    await signalDoesNotFree(ctx, repl, 'user-idle');
    await ctx.step('force on the replacing patch completes the replace', async (s) => {
      await repl.lever(s, 'force', '1', '0');
      s.match('dmesg', await ctx.ops.dmesg(), FORCING);
      await patchGone(ctx, s, LP, ' (replaced)');
    });
    await ctx.step('the replaced patch\'s module is pinned (refcnt 1, rmmod refused)', async (s) => {
      s.equal(`/sys/module/${LP}/refcnt`, await ctx.ops.read(`/sys/module/${LP}/refcnt`), '1');
      s.match(`rmmod ${LP} (replaced by a forced transition)`, await rmmod(ctx, LP), /Resource temporarily unavailable/);
    });
    await ctx.step('the reader returns through the replaced code; the replacing patch is pinned only where force pins every patch', async (s) => {
      await sl.release('user-idle', s);
      await sl.checkReader('user-idle', s);
      const st = await sl.blocker('user-idle');
      s.equal('it slept and returned in the first patch\'s version (calls_new/calls_repl)', `${st?.calls_new}/${st?.calls_repl}`, '1/0');
      await probe(sl, s, 0, 0);
      s.equal('probe ran the replacing version (calls_repl)', (await sl.blocker('probe'))?.calls_repl ?? 'none', 1);
      const pins = forcePins(ctx);
      if (pins === 'removed') await disableAndRemove(ctx, repl, s);
      else if (pins === 'all') await disableAndStayPinned(ctx, repl, s);
      s.equal(`/sys/module/${LP}/refcnt (still pinned)`, await ctx.ops.read(`/sys/module/${LP}/refcnt`), '1');
    });
  },
});

/** After a replace was reversed: the replaced patch is still enabled, done, and its version of the function runs. */
async function replacedStillInEffect(ctx: ScenarioContext, sl: Sleeper, s: StepApi) {
  s.equal(`${LP}/enabled (the replaced patch)`, await ctx.ops.read(sl.file('enabled')), '1');
  s.equal(`${LP}/transition`, await ctx.ops.read(sl.file('transition')), '0');
  s.accepted('probe call', await sl.control('probe'));
  const st = await sl.blocker('probe');
  s.equal(`probe ran ${LP}'s version (calls_old/calls_new/calls_repl)`, `${st?.calls_old}/${st?.calls_new}/${st?.calls_repl}`, '0/1/0');
  const dmesg = await ctx.ops.dmesg();
  s.equal(`"'${LP_REPLACE}': patching complete" lines in dmesg`, countOf(dmesg, new RegExp(`'${LP_REPLACE}': patching complete`)), 0);
  s.equal(`"'${LP_REPLACE}': unpatching complete" lines in dmesg`, countOf(dmesg, new RegExp(`'${LP_REPLACE}': unpatching complete`)), 1);
}

export const replaceReverse = stuckScenario({
  name: 'replace-reverse',
  description: 'an atomic-replace patch is stuck on an uninterruptible reader in the first patch\'s function; writing 0 to its enabled reverses the replace: the replaced patch stays enabled and its version runs, the replacing one is freed, nothing is pinned',
  stuck: { blocker: 'user-idle', direction: 'replacing' },
  async remedy(ctx, sl) {
    const repl = sl.withPatch(LP_REPLACE);
    await ctx.step(`0 to ${LP_REPLACE}/enabled: the replace reverses and completes`, async (s) => {
      await repl.lever(s, 'enabled', '0', '1');
      await patchGone(ctx, s, LP_REPLACE, ' (the reversed replacing patch, freed)');
      await replacedStillInEffect(ctx, sl, s);
    });
    await ctx.step('nothing is pinned: both modules go once the reader is released', async (s) => {
      s.equal(`rmmod ${LP_REPLACE}`, await rmmod(ctx, LP_REPLACE), 'removed');
      await sl.release('user-idle', s);
      await sl.checkReader('user-idle', s);
      const st = await sl.blocker('user-idle');
      s.equal(`the reader slept and returned in ${LP}'s version (calls_new/calls_repl)`, `${st?.calls_new}/${st?.calls_repl}`, '1/0');
      await disableAndRemove(ctx, sl, s);
    });
  },
});

export const replaceReverseForce: Scenario = {
  name: 'replace-reverse-force',
  description: 'a replace is stuck (a reader in the first patch\'s function), then its reversal too (a second reader, started mid-transition, sleeps in the replacing version); force on the replacing patch ends the reversal: the replaced patch stays enabled and in effect and is not pinned, the replacing one is pinned where the generation pins patches being removed',
  needs: ['force'],
  expectedSeconds: 20,
  stuck: { blocker: 'user-idle', direction: 'replacing' },
  async run(ctx) {
    const sl = new Sleeper(ctx);
    const repl = sl.withPatch(LP_REPLACE);
    await reachStuck(ctx, sl, { blocker: 'user-idle', direction: 'replacing' });
    let second = 0;
    await ctx.step('a second reader, started while the replace is pending, sleeps in the replacing version', async (s) => {
      second = await sl.start('user-killable', s);
      const st = await sl.blocker('user-killable');
      s.equal('it runs the replacing version (calls_new/calls_repl)', `${st?.calls_new}/${st?.calls_repl}`, '0/1');
      s.equal(`/proc/${second}/patch_state`, await ctx.ops.read(`/proc/${second}/patch_state`), '1');
    });
    await ctx.step(`0 to ${LP_REPLACE}/enabled: the reversal sticks on the second reader`, async (s) => {
      await repl.disableTimed(s);
      await repl.confirmStuck(s, '1', second);
    });
    await ctx.step(`force on ${LP_REPLACE} ends the reversal`, async (s) => {
      await repl.lever(s, 'force', '1', '1', { blockers: [second] });
      s.match('dmesg', await ctx.ops.dmesg(), FORCING);
      await patchGone(ctx, s, LP_REPLACE, ' (the reversed replacing patch, freed)');
      await replacedStillInEffect(ctx, sl, s);
    });
    const pins = forcePins(ctx);
    await ctx.step(`${LP_REPLACE}, removed by the forced reversal, ${pins === 'removed' ? 'is pinned' : 'is pinned'}; ${LP} ${pins === 'all' ? 'is pinned too (every patch)' : 'is not'}`, async (s) => {
      s.equal(`/sys/module/${LP_REPLACE}/refcnt`, await ctx.ops.read(`/sys/module/${LP_REPLACE}/refcnt`), '1');
      s.match(`rmmod ${LP_REPLACE} (removed by a forced transition)`, await rmmod(ctx, LP_REPLACE), /Resource temporarily unavailable/);
      await sl.release('user-idle', s);
      await sl.release('user-killable', s);
      await sl.checkReader('user-idle', s);
      await sl.checkReader('user-killable', s);
      if (pins === 'removed') await disableAndRemove(ctx, sl, s);
      else if (pins === 'all') await disableAndStayPinned(ctx, sl, s);
    });
  },
};

export const reverse = stuckScenario({
  name: 'reverse',
  description: 'with patching stuck, writing 0 to enabled reverses the transition, which completes unpatched at once',
  stuck: { blocker: 'kthread-idle', direction: 'patching' },
  async remedy(ctx, sl) {
    await ctx.step('write 0 to enabled: the transition reverses and completes', async (s) => {
      await sl.lever(s, 'enabled', '0', '1');
      s.match('dmesg', await ctx.ops.dmesg(), new RegExp(`'${LP}': unpatching complete`));
      s.equal(`"'${LP}': patching complete" lines in dmesg`, countOf(await ctx.ops.dmesg(), new RegExp(`'${LP}': patching complete`)), 0);
      await probe(sl, s, 1, 0);
      await patchGone(ctx, s, LP);
      s.equal(`rmmod ${LP}`, await rmmod(ctx, LP), 'removed');
      await sl.release('kthread-idle', s);
    });
  },
});

export const autoSignal: Scenario = {
  name: 'auto-signal',
  expectedSeconds: 20,
  description: 'with an interruptible blocker and no write to signal, the kernel frees it by itself in the try after SIGNALS_TIMEOUT failed ones (15: the generation record), no sooner and no later',
  async run(ctx) {
    const sl = new Sleeper(ctx);
    let pid = 0;
    await ctx.step('load klp_sleeper and start user-int', async (s) => {
      await sl.load(s);
      pid = await sl.start('user-int', s);
    });
    await ctx.step('the kernel signals by itself and the transition completes', async (s) => {
      const t0 = Date.now();
      await sl.insmodPatch(s);
      const ms = await sl.waitDone(s, 'patching finished without a write to signal', '0', timeout('autoSignal', ctx.arch));
      ctx.timing('autoSignalMs', Date.now() - t0);
      ctx.timing('guestWaitMs', ms);
      const dmesg = await ctx.ops.dmesg();
      s.match('dmesg', dmesg, AUTO_SIGNAL);
      s.atLeast('insmod -> transition done (guest clock; 15 retries of ~1 s)', ms, guestBound('autoSignalAtLeast', ctx.arch), 'ms');
      // The kernel's own count: each try that found the reader in the function printed one line, the signalling try too.
      const upTo = dmesg.split('\n');
      const at = upTo.findIndex((l) => AUTO_SIGNAL.test(l));
      const tries = countOf(upTo.slice(0, at + 1).join('\n'), new RegExp(`:${pid} is sleeping on function klp_sleeper_block`));
      const gen = ctx.expect.generation;
      if (gen) s.equal(`tries that found pid ${pid} in the function, up to the kernel's own signal (SIGNALS_TIMEOUT + 1)`, tries, gen.signalsTimeout + 1);
      else ctx.unchecked(`how many tries come before the kernel's own signal (${ctx.expect.noGeneration}): ${tries} seen`);
      s.equal('the reader was interrupted once', (await sl.blocker('user-int'))?.interrupted ?? 'none', 1);
      await sl.release('user-int', s);
      await sl.checkReader('user-int', s);
      await disableAndRemove(ctx, sl, s);
    });
  },
};

export const badWrites: Scenario = {
  name: 'bad-writes',
  description: 'signal and force refuse writes with no transition, garbage, and a patch that is not the one in transition',
  async run(ctx) {
    if (ctx.expect.noSampleModule) throw new Skipped(ctx.expect.noSampleModule);
    const sl = new Sleeper(ctx);
    const sample = 'livepatch_sample';
    const file = (f: string) => ctx.ops.patchFile(sample, f);
    let pid = 0;
    await ctx.step('load livepatch-sample (complete) and klp_sleeper', async (s) => {
      const ko = await ctx.copyIn(`${ctx.build.buildDir}/samples/livepatch/livepatch-sample.ko`);
      s.equal('insmod livepatch-sample.ko', (await ctx.ops.insmod(ko)).code ?? 'no exit status', 0);
      const w = await ctx.ops.waitTransition(sample, '0', timeout('transition', ctx.arch));
      s.equal('livepatch_sample transition', w.value, '0');
      await sl.load(s);
    });
    const levers: ('signal' | 'force')[] = [];
    for (const lever of ['signal', 'force'] as const) if (await ctx.has(sample, lever, `the writes to ${lever}`)) levers.push(lever);
    await ctx.step('no transition: 1 is refused, 0 accepted, garbage refused', async (s) => {
      for (const lever of levers) {
        s.refused(`${lever} <- 1`, await ctx.ops.write(file(lever), '1'), 'Invalid argument');
        s.accepted(`${lever} <- 0`, await ctx.ops.write(file(lever), '0'));
        s.refused(`${lever} <- banana`, await ctx.ops.write(file(lever), 'banana'), 'Invalid argument');
      }
      s.equal('livepatch_sample still enabled', await ctx.ops.read(file('enabled')), '1');
      s.equal('livepatch_sample transition', await ctx.ops.read(file('transition')), '0');
    });
    await ctx.step('another patch in transition: writes to this one are refused', async (s) => {
      pid = await sl.start('kthread-idle', s);
      await sl.insmodPatch(s);
      await sl.confirmStuck(s, '0', pid, guestBound('noChangeSpan', ctx.arch));
      for (const lever of levers) {
        s.refused(`${sample}/${lever} <- 1 while ${LP} is in transition`, await ctx.ops.write(file(lever), '1'), 'Invalid argument');
        s.refused(`${LP}/${lever} <- x`, await ctx.ops.write(sl.file(lever), 'x'), 'Invalid argument');
      }
      s.equal(`${LP} still in transition`, await ctx.ops.read(sl.file('transition')), '1');
      s.equal(`${LP} still enabled`, await ctx.ops.read(sl.file('enabled')), '1');
      s.equal('the forcing message', FORCING.test(await ctx.ops.dmesg()) ? 'printed' : 'never printed', 'never printed');
    });
    await ctx.step('clean up: reverse and release', async (s) => {
      s.accepted('write 0 to enabled', await ctx.ops.write(sl.file('enabled'), '0'));
      await sl.waitDone(s, 'reversed transition finished', '1');
      await sl.release('kthread-idle', s);
    });
  },
};

export const MATRIX: readonly Scenario[] = [
  noBlocker,
  signalUserInt,
  signalKthreadInt,
  forceKthreadIdle,
  forceUserIdle,
  forceUserKillable,
  forceKthreadLoop,
  signalThread,
  forceThread,
  unpatchSignal,
  unpatchForce,
  replaceSignal,
  replaceForce,
  replaceReverse,
  replaceReverseForce,
  reverse,
  autoSignal,
  badWrites,
];

/** For `klp-harness repro`: the scenarios that have a stuck state, by name. */
export function stuckSetupOf(name: string): StuckSetup | undefined {
  return MATRIX.find((s) => s.name === name)?.stuck;
}
/** The vCPUs a run gives the named scenario's guests (repro gives its guest the same). */
export const vcpusOf = (name: string | undefined): number => MATRIX.find((s) => s.name === name)?.vcpus ?? DEFAULT_VCPUS;
export const stuckScenarioNames = (): string[] => MATRIX.filter((s) => s.stuck).map((s) => s.name);
