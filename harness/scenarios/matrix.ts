// The transition matrix: each way a transition can stick, and which lever
// (signal, force, reverse, the kernel's own signal) finishes it.
import { LP, Sleeper, type BlockerName } from './sleeper.js';
import type { Scenario, ScenarioContext, StepApi } from './types.js';

/** Seconds of the kernel's one-second retries that count as "stuck". */
const STUCK_SECONDS = 3;

async function loadAndBlock(ctx: ScenarioContext, sl: Sleeper, blocker: BlockerName) {
  let pid = 0;
  await ctx.step('load klp_sleeper and start the blocker', async (s) => {
    await sl.load(s);
    pid = await sl.start(blocker, s);
  });
  return pid;
}

async function patchAndSeeStuck(ctx: ScenarioContext, sl: Sleeper) {
  await ctx.step('patching sticks', async (s) => {
    const t0 = Date.now();
    await sl.insmodPatch(s);
    if (await sl.confirmStuck(s, STUCK_SECONDS, '0')) ctx.timing('stuckSeenMs', Date.now() - t0);
  });
}

/** Writes 1 to a lever and times the transition's end from that write. */
async function remedy(ctx: ScenarioContext, sl: Sleeper, s: StepApi, lever: 'signal' | 'force', initialState: '0' | '1') {
  const w = await ctx.ops.write(sl.file(lever), '1');
  s.equal(`write 1 to ${lever}`, w.ok ? 'accepted' : w.error, 'accepted');
  const ms = await sl.waitDone(s, 10_000, `transition finished after ${lever}`, initialState);
  ctx.timing('remedyToDoneMs', ms);
  return ms;
}

async function signalDoesNotHelp(ctx: ScenarioContext, sl: Sleeper, initialState: '0' | '1') {
  await ctx.step('signal does not free an uninterruptible sleeper', async (s) => {
    const w = await ctx.ops.write(sl.file('signal'), '1');
    s.equal('write 1 to signal', w.ok ? 'accepted' : w.error, 'accepted');
    await sl.confirmStuck(s, STUCK_SECONDS, initialState);
  });
}

async function disableAndWait(ctx: ScenarioContext, sl: Sleeper, s: StepApi) {
  const w = await ctx.ops.write(sl.file('enabled'), '0');
  s.equal('write 0 to enabled', w.ok ? 'accepted' : w.error, 'accepted');
  await sl.waitDone(s, 10_000, 'unpatching finished', '1');
}

const probe = async (sl: Sleeper, s: StepApi, expectOld: number, expectNew: number) => {
  const w = await sl.control('probe');
  s.equal('probe call', w.ok ? 'accepted' : w.error, 'accepted');
  const st = (await sl.status()).probe;
  s.equal('probe ran the original function (calls_old)', String(st?.calls_old), String(expectOld));
  s.equal('probe ran the livepatched function (calls_new)', String(st?.calls_new), String(expectNew));
};

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
      ctx.timing('patchingMs', await sl.waitDone(s, 10_000, 'patching finished', '0'));
      s.equal('enabled', await ctx.ops.read(sl.file('enabled')), '1');
      await probe(sl, s, 1, 1);
    });
    await ctx.step('unpatching completes; the original function runs again', async (s) => {
      await disableAndWait(ctx, sl, s);
      await probe(sl, s, 2, 1);
      s.equal(`rmmod ${LP}`, String((await ctx.ops.rmmod(LP)).code), '0');
    });
  },
};

export const signalUserInt: Scenario = {
  name: 'signal-user-int',
  description: 'an interruptible user task blocks patching; signal frees it and its read restarts with the right data',
  allCpus: true,
  async run(ctx) {
    const sl = new Sleeper(ctx);
    const pid = await loadAndBlock(ctx, sl, 'user-int');
    await patchAndSeeStuck(ctx, sl);
    await ctx.step('the blocking task is the reader', async (s) => {
      s.equal(`/proc/${pid}/patch_state`, await ctx.ops.read(`/proc/${pid}/patch_state`), '0');
    });
    await ctx.step('signal completes the transition before the automatic one', async (s) => {
      const ms = await remedy(ctx, sl, s, 'signal', '0');
      s.equal('finished within 5 s of the write', String(ms <= 5000), 'true');
      s.equal('kernel did not send its own signal yet', String(/signaling remaining tasks/.test(await ctx.ops.dmesg())), 'false');
    });
    await ctx.step('the reader got no real signal and its read restarted', async (s) => {
      s.equal(`reader ${pid} alive`, String(await ctx.ops.exists(`/proc/${pid}`)), 'true');
      const status = await ctx.ops.read(`/proc/${pid}/status`);
      s.equal('SigPnd', /^SigPnd:\s*(\S+)/m.exec(status)?.[1] ?? '?', '0000000000000000');
      s.equal('ShdPnd', /^ShdPnd:\s*(\S+)/m.exec(status)?.[1] ?? '?', '0000000000000000');
      const st = (await sl.status())['user-int'];
      s.equal('klp_sleeper_block() returned -ERESTARTSYS once', String(st?.interrupted), '1');
      s.equal('the restarted read sleeps in the new function', `${st?.sleeping}/${st?.calls_new}`, '1/1');
      await sl.release('user-int', s);
      await sl.checkReader('user-int', s);
    });
    await ctx.step('clean up: unpatch and remove', async (s) => {
      await disableAndWait(ctx, sl, s);
      s.equal(`rmmod ${LP}`, String((await ctx.ops.rmmod(LP)).code), '0');
    });
  },
};

export const signalKthreadInt: Scenario = {
  name: 'signal-kthread-int',
  description: 'an interruptible kthread blocks patching; signal wakes it, it leaves the function, the transition completes',
  async run(ctx) {
    const sl = new Sleeper(ctx);
    const pid = await loadAndBlock(ctx, sl, 'kthread-int');
    await patchAndSeeStuck(ctx, sl);
    await ctx.step('signal wakes the kthread; the transition completes', async (s) => {
      s.equal(`/proc/${pid}/patch_state before`, await ctx.ops.read(`/proc/${pid}/patch_state`), '0');
      await remedy(ctx, sl, s, 'signal', '0');
      const st = (await sl.status())['kthread-int'];
      s.equal('kthread left klp_sleeper_block()', String(st?.sleeping), '0');
      s.equal(`kthread ${pid} alive`, String(await ctx.ops.exists(`/proc/${pid}`)), 'true');
    });
    await ctx.step('clean up: unpatch and remove', async (s) => {
      await disableAndWait(ctx, sl, s);
      s.equal(`rmmod ${LP}`, String((await ctx.ops.rmmod(LP)).code), '0');
    });
  },
};

function forceScenario(name: string, blocker: 'kthread-idle' | 'user-idle', description: string): Scenario {
  return {
    name,
    description,
    async run(ctx) {
      const sl = new Sleeper(ctx);
      await loadAndBlock(ctx, sl, blocker);
      await patchAndSeeStuck(ctx, sl);
      await signalDoesNotHelp(ctx, sl, '0');
      await ctx.step('force completes the transition', async (s) => {
        await remedy(ctx, sl, s, 'force', '0');
        s.match('dmesg', await ctx.ops.dmesg(), /livepatch: forcing remaining tasks to the patched state/);
        s.equal('enabled', await ctx.ops.read(sl.file('enabled')), '1');
      });
      await ctx.step('release; a clean disable after a forced patching lets rmmod work', async (s) => {
        await sl.release(blocker, s);
        if (blocker === 'user-idle') await sl.checkReader('user-idle', s);
        await disableAndWait(ctx, sl, s);
        s.equal(`rmmod ${LP}`, String((await ctx.ops.rmmod(LP)).code), '0');
      });
    },
  };
}

export const forceKthreadIdle = forceScenario('force-kthread-idle', 'kthread-idle', 'an uninterruptible kthread blocks patching; signal does not help; force does');
export const forceUserIdle = forceScenario('force-user-idle', 'user-idle', 'an uninterruptible user task blocks patching; signal does not help; force does');

async function patchCleanly(ctx: ScenarioContext, sl: Sleeper) {
  await ctx.step('load klp_sleeper and patch without a blocker', async (s) => {
    await sl.load(s);
    await sl.insmodPatch(s);
    await sl.waitDone(s, 10_000, 'patching finished', '0');
  });
}

async function unpatchAndSeeStuck(ctx: ScenarioContext, sl: Sleeper) {
  await ctx.step('unpatching sticks', async (s) => {
    const t0 = Date.now();
    const w = await ctx.ops.write(sl.file('enabled'), '0');
    s.equal('write 0 to enabled', w.ok ? 'accepted' : w.error, 'accepted');
    if (await sl.confirmStuck(s, STUCK_SECONDS, '1')) ctx.timing('stuckSeenMs', Date.now() - t0);
  });
}

export const unpatchSignal: Scenario = {
  name: 'unpatch-signal',
  description: 'a reader sleeping in the new function makes disabling stick; signal finishes the unpatching',
  async run(ctx) {
    const sl = new Sleeper(ctx);
    await patchCleanly(ctx, sl);
    await ctx.step('start a reader in the new function', async (s) => {
      await sl.start('user-int', s);
      s.equal('it sleeps in the livepatched function', String((await sl.status())['user-int']?.calls_new), '1');
    });
    await unpatchAndSeeStuck(ctx, sl);
    await ctx.step('signal finishes the unpatching; the read restarts correctly', async (s) => {
      await remedy(ctx, sl, s, 'signal', '1');
      await sl.release('user-int', s);
      await sl.checkReader('user-int', s);
      s.equal(`rmmod ${LP}`, String((await ctx.ops.rmmod(LP)).code), '0');
    });
  },
};

export const unpatchForce: Scenario = {
  name: 'unpatch-force',
  description: 'an uninterruptible reader in the new function makes disabling stick; force finishes it and pins the module',
  async run(ctx) {
    const sl = new Sleeper(ctx);
    await patchCleanly(ctx, sl);
    await ctx.step('start an uninterruptible reader in the new function', async (s) => {
      await sl.start('user-idle', s);
    });
    await unpatchAndSeeStuck(ctx, sl);
    await signalDoesNotHelp(ctx, sl, '1');
    await ctx.step('force finishes the unpatching; the module can never be removed', async (s) => {
      await remedy(ctx, sl, s, 'force', '1');
      s.match('dmesg', await ctx.ops.dmesg(), /livepatch: forcing remaining tasks to the patched state/);
      const r = await ctx.ops.rmmod(LP);
      s.equal(`rmmod ${LP} after a forced unpatching`, r.code === 0 ? 'removed' : 'refused', 'refused');
      await sl.release('user-idle', s);
      await sl.checkReader('user-idle', s);
      const again = await ctx.ops.rmmod(LP);
      s.equal(`rmmod ${LP} even with no task inside it`, again.code === 0 ? 'removed' : 'refused', 'refused');
    });
  },
};

export const reverse: Scenario = {
  name: 'reverse',
  description: 'with patching stuck, writing 0 to enabled reverses the transition, which completes unpatched',
  async run(ctx) {
    const sl = new Sleeper(ctx);
    await loadAndBlock(ctx, sl, 'kthread-idle');
    await patchAndSeeStuck(ctx, sl);
    await ctx.step('write 0 to enabled: the transition reverses and completes', async (s) => {
      const w = await ctx.ops.write(sl.file('enabled'), '0');
      s.equal('write 0 to enabled during the transition', w.ok ? 'accepted' : w.error, 'accepted');
      ctx.timing('remedyToDoneMs', await sl.waitDone(s, 10_000, 'reversed transition finished', '1'));
      s.match('dmesg', await ctx.ops.dmesg(), /'klp_sleeper_lp': unpatching complete/);
      await probe(sl, s, 1, 0);
      s.equal(`rmmod ${LP}`, String((await ctx.ops.rmmod(LP)).code), '0');
      await sl.release('kthread-idle', s);
    });
  },
};

export const autoSignal: Scenario = {
  name: 'auto-signal',
  description: 'with an interruptible blocker and no write to signal, the kernel frees it by itself after about 15 retries',
  async run(ctx) {
    const sl = new Sleeper(ctx);
    await loadAndBlock(ctx, sl, 'user-int');
    await ctx.step('the kernel signals by itself and the transition completes', async (s) => {
      const t0 = Date.now();
      await sl.insmodPatch(s);
      const ms = await sl.waitDone(s, 60_000, 'patching finished without a write to signal', '0');
      ctx.timing('autoSignalMs', Date.now() - t0);
      ctx.timing('guestWaitMs', ms);
      s.match('dmesg', await ctx.ops.dmesg(), /livepatch: signaling remaining tasks/);
      s.equal('took at least 14 s (15 retries)', String(Date.now() - t0 >= 14_000), 'true');
      await sl.release('user-int', s);
      await sl.checkReader('user-int', s);
      await disableAndWait(ctx, sl, s);
    });
  },
};

export const badWrites: Scenario = {
  name: 'bad-writes',
  description: 'signal and force refuse writes with no transition, garbage, and a patch that is not the one in transition',
  async run(ctx) {
    const sl = new Sleeper(ctx);
    const sample = 'livepatch_sample';
    const file = (f: string) => ctx.ops.patchFile(sample, f);
    await ctx.step('load livepatch-sample (complete) and klp_sleeper', async (s) => {
      const ko = await ctx.copyIn(`${ctx.build.buildDir}/samples/livepatch/livepatch-sample.ko`);
      s.equal('insmod livepatch-sample.ko', String((await ctx.ops.insmod(ko)).code), '0');
      const w = await ctx.ops.waitTransition(sample, '0', 10_000);
      s.equal('livepatch_sample transition', w.value, '0');
      await sl.load(s);
    });
    await ctx.step('no transition: 1 is refused, 0 accepted, garbage refused', async (s) => {
      for (const lever of ['signal', 'force']) {
        const one = await ctx.ops.write(file(lever), '1');
        s.equal(`${lever} <- 1`, one.ok ? 'accepted' : one.error, 'Invalid argument');
        const zero = await ctx.ops.write(file(lever), '0');
        s.equal(`${lever} <- 0`, zero.ok ? 'accepted' : zero.error, 'accepted');
        const junk = await ctx.ops.write(file(lever), 'banana');
        s.equal(`${lever} <- banana`, junk.ok ? 'accepted' : junk.error, 'Invalid argument');
      }
      s.equal('livepatch_sample still enabled', await ctx.ops.read(file('enabled')), '1');
      s.equal('livepatch_sample transition', await ctx.ops.read(file('transition')), '0');
    });
    await ctx.step('another patch in transition: writes to this one are refused', async (s) => {
      await sl.start('kthread-idle', s);
      await sl.insmodPatch(s);
      await sl.confirmStuck(s, 2, '0');
      for (const lever of ['signal', 'force']) {
        const w = await ctx.ops.write(file(lever), '1');
        s.equal(`${sample}/${lever} <- 1 while ${LP} is in transition`, w.ok ? 'accepted' : w.error, 'Invalid argument');
        const junk = await ctx.ops.write(sl.file(lever), 'x');
        s.equal(`${LP}/${lever} <- x`, junk.ok ? 'accepted' : junk.error, 'Invalid argument');
      }
      s.equal(`${LP} still in transition`, await ctx.ops.read(sl.file('transition')), '1');
      s.equal(`${LP} still enabled`, await ctx.ops.read(sl.file('enabled')), '1');
      s.equal('the forcing message never appeared', String((await ctx.ops.dmesg()).includes('forcing remaining tasks')), 'false');
    });
    await ctx.step('clean up: reverse and release', async (s) => {
      const w = await ctx.ops.write(sl.file('enabled'), '0');
      s.equal('write 0 to enabled', w.ok ? 'accepted' : w.error, 'accepted');
      await sl.waitDone(s, 10_000, 'reversed transition finished', '1');
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
  unpatchSignal,
  unpatchForce,
  reverse,
  autoSignal,
  badWrites,
];

/**
 * For `klp-harness repro`: how to reach each scenario's stuck state, and the
 * direction of the transition it leaves pending.
 */
export const STUCK_SETUPS: Readonly<Record<string, { initialState: '0' | '1'; setup: (ctx: ScenarioContext) => Promise<void> }>> = {
  'signal-user-int': { initialState: '0', setup: (ctx) => blockThenPatch(ctx, 'user-int') },
  'signal-kthread-int': { initialState: '0', setup: (ctx) => blockThenPatch(ctx, 'kthread-int') },
  'force-kthread-idle': { initialState: '0', setup: (ctx) => blockThenPatch(ctx, 'kthread-idle') },
  'force-user-idle': { initialState: '0', setup: (ctx) => blockThenPatch(ctx, 'user-idle') },
  reverse: { initialState: '0', setup: (ctx) => blockThenPatch(ctx, 'kthread-idle') },
  'auto-signal': { initialState: '0', setup: (ctx) => blockThenPatch(ctx, 'user-int') },
  'unpatch-signal': { initialState: '1', setup: (ctx) => patchThenBlockThenUnpatch(ctx, 'user-int') },
  'unpatch-force': { initialState: '1', setup: (ctx) => patchThenBlockThenUnpatch(ctx, 'user-idle') },
};

async function blockThenPatch(ctx: ScenarioContext, blocker: BlockerName) {
  const sl = new Sleeper(ctx);
  await loadAndBlock(ctx, sl, blocker);
  await patchAndSeeStuck(ctx, sl);
}

async function patchThenBlockThenUnpatch(ctx: ScenarioContext, blocker: BlockerName) {
  const sl = new Sleeper(ctx);
  await patchCleanly(ctx, sl);
  await ctx.step(`start ${blocker} in the new function`, async (s) => {
    await sl.start(blocker, s);
  });
  await unpatchAndSeeStuck(ctx, sl);
}
