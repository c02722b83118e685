// restart-after-notify-signal: a system call woken by TIF_NOTIFY_SIGNAL alone
// must restart as if nothing happened, on every kernel and arch, with no
// livepatch needed. restart-canary (guest/modules/restart-canary.c) sleeps in
// pselect6, nanosleep, pselect6 through each entry instruction of the CPU
// (ppc64le: sc, and scv on POWER9; x86_64: syscall), woken mid-sleep by
//  1. an io_uring timeout: its completion is queued as task work with
//     TWA_SIGNAL, i.e. set_notify_signal();
//  2. livepatch's fake signal (also set_notify_signal() since 5.11), where the
//     kernel has our `signal` file: two blockers that no fake signal frees keep
//     the transition pending in both directions, and each reversal makes the
//     canaries pending again before the write to `signal`.
// Each round must return 0 after its whole time (not -EINTR or -EINVAL, and
// not early: a stale nanosleep restart block run by restart_syscall()).
// The -no-rfi-flush variant boots with the arch's words that turn off the
// exit-path L1D flush (ppc64: no_rfi_flush), whose fallback decides whether
// scv gets its arguments back (docs/upstream/ppc64-notify-signal-restart.md).
import type { ArchRecord } from '../core/arch.js';
import { timeout } from '../core/timeouts.js';
import { guestSleep, TICK_OPEN } from '../vm/guestops.js';
import { q } from '../vm/ssh.js';
import { entryPaths, parseRounds, ROUND_CALLS, roundChecks } from './canary-rounds.js';
import { LP, Sleeper } from './sleeper.js';
import { Skipped, type Scenario, type ScenarioContext, type StepApi } from './types.js';

const CANARY = 'restart-canary';
/** Each sleep, and when the io_uring timeout fires inside it. */
const URING_SLEEP_MS = 1000;
const URING_WAKE_MS = 200;
/** Fake-signal rounds: long enough for several reversals (one every KICK_MS) inside each. */
const EXTERNAL_SLEEP_MS = 3000;
const KICK_MS = 700;

/** Runs the canaries of every entry path at once, each writing its lines to a file and to the console. */
function canaryCommand(paths: string[], wake: string, sleepMs: number, tag: string): string {
  return paths
    .map((p) => {
      const out = `/tmp/rn-${tag}-${p}`;
      // Each line also goes to /dev/kmsg: the console outlives SSH when a restart goes wrong in the SSH server.
      // chmod here: loading the sleeper copies every guest program in again (without the mode).
      const body = `chmod +x /root/${CANARY}; /root/${CANARY} ${p} rounds ${wake} ${sleepMs} ${ROUND_CALLS.join(' ')} 2>&1 | while read -r l; do echo "$l" >> ${out}.out; echo "$l" > /dev/kmsg; done; echo done > ${out}.end`;
      return `setsid sh -c ${q(body)} < /dev/null > /dev/null 2>&1 &`;
    })
    .join(' ');
}

/** Checks every round of every path: the expected number of rounds, then each one's readings. */
function checkRounds(s: StepApi, paths: string[], output: string, source: string) {
  const rounds = parseRounds(output);
  for (const p of paths) {
    const mine = rounds.filter((r) => r.mode === p);
    // Too few: what the canaries printed instead (a usage line, io_uring_setup failing).
    const other = output.split('\n').filter((l) => l.includes('restart-canary') && !/: round \d+:/.test(l)).join('; ');
    s.equal(`rounds reported via ${p} (${source})`, mine.length === ROUND_CALLS.length ? mine.length : `${mine.length}${other ? `; the canary said: ${other.slice(-400)}` : ''}`, ROUND_CALLS.length);
    for (const r of mine) for (const c of roundChecks(r)) s.equal(c.what, c.actual, c.expected);
  }
}

async function canaryIn(ctx: ScenarioContext): Promise<void> {
  await ctx.copyIn(ctx.modules.modules[CANARY]!);
  await ctx.ops.must(`chmod +x /root/${CANARY}; rm -f /tmp/rn-*`);
}

/** Waits in the guest until every canary of `tag` wrote its end marker. */
async function waitCanaries(ctx: ScenarioContext, paths: string[], tag: string, ms: number) {
  const ends = paths.map((p) => `[ -e /tmp/rn-${tag}-${p}.end ]`).join(' && ');
  // Builtins per look (a usleep was a fork and an exec each, 60 ms of emulated CPU per second of waiting).
  return ctx.ops.run(`${TICK_OPEN}i=0; while ! { ${ends}; }; do ${guestSleep(100)} i=$((i+1)); [ $i -ge ${Math.ceil(ms / 100)} ] && exit 1; done; cat /tmp/rn-${tag}-*.out 2>/dev/null; exit 0`, ms + timeout('guestCommand', ctx.arch));
}

async function uringRounds(ctx: ScenarioContext, paths: string[]) {
  await ctx.step(`io_uring task work wakes ${paths.join(', ')} sleepers; each call restarts (no livepatch)`, async (s) => {
    await ctx.ops.must(canaryCommand(paths, `uring:${URING_WAKE_MS}`, URING_SLEEP_MS, 'uring'));
    const r = await waitCanaries(ctx, paths, 'uring', ROUND_CALLS.length * URING_SLEEP_MS * 4 + 5000);
    s.equal('canaries finished within their time (guest clock)', r.code ?? 'no exit status', 0);
    for (const x of parseRounds(r.stdout)) ctx.logger.info(`  ${ctx.arch.name}${ctx.cpu ? `/${ctx.cpu}` : ''} ${x.line}`);
    checkRounds(s, paths, r.stdout, 'io_uring');
  });
}

/**
 * A transition that never ends by itself: a killable reader sleeps in the
 * original klp_sleeper_block() and an idle one in the livepatched copy,
 * neither woken by a fake signal, so each direction has a blocker.
 */
async function stuckBothWays(ctx: ScenarioContext, sl: Sleeper, s: StepApi) {
  await sl.load(s);
  await sl.insmodPatch(s);
  const w = await ctx.ops.waitTransition(LP, '0', timeout('transition', ctx.arch));
  s.equal('patching (no blocker yet) finished', w.value, '0');
  await sl.start('user-idle', s);
  s.accepted('write 0 to enabled (unpatching: the idle reader holds it)', await ctx.ops.write(sl.file('enabled'), '0'));
  await sl.start('user-killable', s);
  const st = await sl.status();
  s.equal('user-idle sleeps in the livepatched function (calls_new)', st['user-idle']?.calls_new ?? 'none', 1);
  s.equal('user-killable sleeps in the original function (calls_old)', st['user-killable']?.calls_old ?? 'none', 1);
  s.equal('transition', await ctx.ops.read(sl.file('transition')), '1');
}

/**
 * Reverses the transition every KICK_MS and writes `signal` right after, so
 * the canaries (switched since the last reversal) are pending and get the
 * fake signal, until every canary ended. Runs detached: a wrong restart in
 * the SSH server (dropbear sleeps in pselect6 too) ends the connection.
 */
function kickerCommand(paths: string[]): string {
  const P = `/sys/kernel/livepatch/${LP}`;
  const ends = paths.map((p) => `[ -e /tmp/rn-fake-${p}.end ]`).join(' && ');
  const body =
    `v=1; kicks=0; bad=0; i=0; while ! { ${ends}; }; do usleep ${KICK_MS * 1000}; ` +
    `if echo $v > ${P}/enabled && echo 1 > ${P}/signal; then kicks=$((kicks+1)); else bad=$((bad+1)); fi; v=$((1-v)); ` +
    `i=$((i+1)); [ $i -ge 100 ] && break; done; echo "kicks=$kicks bad=$bad" > /tmp/rn-kicks`;
  return `setsid sh -c ${q(body)} < /dev/null > /dev/null 2>&1 &`;
}

async function fakeSignalRounds(ctx: ScenarioContext, paths: string[]) {
  const sl = new Sleeper(ctx);
  let lever = true;
  await ctx.step('a livepatch transition that neither direction can finish', async (s) => {
    await stuckBothWays(ctx, sl, s);
    // Absent on a kernel without the series: the io_uring rounds above are the
    // reproducer, and the report says what was not checked. Absent where the
    // series promises it: the series failing (a failed check, from ctx.has).
    lever = await ctx.has(sl.patch, 'signal', 'that a fake signal restarts the sleepers it wakes');
  });
  if (lever) await fakeSignalStep(ctx, paths);
  await ctx.step('the blockers released, the transition ends', async (s) => {
    await sl.release('user-idle', s);
    await sl.release('user-killable', s);
    const w = await ctx.ops.waitTransition(LP, '0', timeout('transition', ctx.arch));
    s.equal('transition (or the patch freed)', w.value === 'gone' ? '0' : w.value, '0');
  });
}

async function fakeSignalStep(ctx: ScenarioContext, paths: string[]) {
  await ctx.step(`livepatch's fake signal wakes ${paths.join(', ')} sleepers; each call restarts`, async (s) => {
    await ctx.ops.must(`${canaryCommand(paths, 'external', EXTERNAL_SLEEP_MS, 'fake')} ${kickerCommand(paths)}`);
    const budget = ROUND_CALLS.length * EXTERNAL_SLEEP_MS * 4 + 5000;
    const r = await waitCanaries(ctx, paths, 'fake', budget).catch((e: Error) => e);
    const lost = r instanceof Error ? r.message : r.code === null ? 'the command ended without an exit status' : undefined;
    if (lost) {
      // SSH went with the SSH server: what the canaries said is on the console.
      await new Promise((res) => setTimeout(res, EXTERNAL_SLEEP_MS * ROUND_CALLS.length));
      checkRounds(s, paths, ctx.vm.console.last().join('\n'), 'from the console');
      s.equal('SSH to the guest while fake signals fly', `lost (${lost})`, 'kept');
      return;
    }
    if (r instanceof Error) throw r;
    s.equal('canaries finished within their time (guest clock)', r.code ?? 'no exit status', 0);
    for (const x of parseRounds(r.stdout)) ctx.logger.info(`  ${ctx.arch.name}${ctx.cpu ? `/${ctx.cpu}` : ''} ${x.line}`);
    const kicks = (await ctx.ops.run('i=0; while [ ! -e /tmp/rn-kicks ] && [ $i -lt 30 ]; do usleep 100000; i=$((i+1)); done; cat /tmp/rn-kicks')).stdout.trim();
    s.equal('reversals whose enabled or signal write failed', /bad=(\d+)/.exec(kicks)?.[1] ?? kicks, '0');
    checkRounds(s, paths, r.stdout, 'fake signal');
  });
}

/** The kernel's own words about its exit flush: what it patched, or that the command line turned it off. */
async function exitFlush(ctx: ScenarioContext): Promise<string> {
  return (await ctx.ops.run(`dmesg | grep -E 'rfi-flush|l1d_flush|L1D' | sed 's/^\\[[^]]*\\] *//'`)).stdout.trim();
}

const noFlushOnArch = (arch: ArchRecord) => `${arch.name} has no exit-path flush that touches system call registers (no exitFlushOff in its arch record)`;

function restartScenario(name: string, flushOff: boolean): Scenario {
  return {
    name,
    allCpus: true,
    expectedSeconds: 30,
    uses: ['signal'],
    description: flushOff
      ? 'as restart-after-notify-signal, booted with the exit-path L1D flush turned off (ppc64: no_rfi_flush)'
      : 'sleepers woken by io_uring task work (set_notify_signal(), no livepatch) and by the fake signal restart their system calls through every entry instruction: 0 after the whole sleep, never -EINTR, -EINVAL or early',
    kernelArgs: flushOff ? (arch: ArchRecord) => arch.exitFlushOff?.args ?? [] : undefined,
    notFor: flushOff ? (arch: ArchRecord) => (arch.exitFlushOff ? undefined : noFlushOnArch(arch)) : undefined,
    async run(ctx) {
      const off = ctx.arch.exitFlushOff;
      if (flushOff && !off) throw new Skipped(noFlushOnArch(ctx.arch));
      const paths = entryPaths(ctx.arch.syscallByCpu, ctx.cpu);
      await ctx.step('the canary and the kernel command line', async (s) => {
        await canaryIn(ctx);
        s.equal(`/root/${CANARY} in the guest, executable`, (await ctx.ops.run(`[ -x /root/${CANARY} ] && echo executable`)).stdout.trim(), 'executable');
        const flush = await exitFlush(ctx);
        ctx.logger.info(`  ${ctx.arch.name}${ctx.cpu ? `/${ctx.cpu}` : ''} ${name}: entry paths ${paths.join(', ')}; exit flush: ${flush.replace(/\n/g, '; ') || 'no line'}`);
        if (flushOff && off) {
          s.match('/proc/cmdline', await ctx.ops.read('/proc/cmdline'), new RegExp(`(^| )${off.args.join(' ')}( |$)`));
          s.match("the kernel's word on its exit flush (dmesg)", flush, new RegExp(off.proof));
        }
      });
      await uringRounds(ctx, paths);
      await fakeSignalRounds(ctx, paths);
    },
  };
}

export const restartAfterNotifySignal = restartScenario('restart-after-notify-signal', false);
export const restartAfterNotifySignalNoFlush = restartScenario('restart-after-notify-signal-no-rfi-flush', true);
