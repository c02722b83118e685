// Writes to the livepatch sysfs files racing transitions, for a bounded
// time on the guest clock: several guest processes write signal, force
// and enabled and read transition while a driver starts patching
// transitions, the writers reverse and finish them, and the driver
// disables and removes the patch. Only success or EINVAL may come back (or
// a file that is not there between two patches: ENOENT when it is gone,
// ENODEV from sysfs while the patch's kobject is being removed); no transition may hang;
// the console check after every scenario catches lockdep and
// sleep-in-atomic reports. Meant for a kernel built with
// kconfigs/debug.config; a kernel without lockdep skips it.
import type { ConsoleEvent } from '../vm/console.js';
import { NOW_MS } from '../vm/guestops.js';
import { q } from '../vm/ssh.js';
import { guestBound, hostMs, timeout } from '../core/timeouts.js';
import { delay } from '../core/poll.js';
import { LP, Sleeper } from './sleeper.js';
import { Skipped, type Scenario, type ScenarioContext, type StepApi } from './types.js';

/** guest/modules/restart-canary.c, copied in with the modules. */
const CANARY = 'restart-canary';
const CANARY_LINE = /restart-canary: \S+ via \S+ returned/;

/**
 * The canaries one guest runs: each system call entry path of its CPU
 * (ppc64le: sc always, scv where the CPU has it; x86_64: syscall), each in
 * pselect6 (restarted in place) and nanosleep (restarted through
 * restart_syscall).
 */
export function canariesFor(byCpu: Readonly<Record<string, 'scv' | 'sc'>> | undefined, cpu: string | undefined): [string, string][] {
  const paths = byCpu ? [...new Set(['sc', (cpu && byCpu[cpu]) || 'sc'])] : ['syscall'];
  return paths.flatMap((p) => [[p, 'pselect6'] as [string, string], [p, 'nanosleep'] as [string, string]]);
}

const RESTARTED = 'every sleep restarted (none returned)';
/** What the canaries said on the console, without the kernel's timestamps. */
const canaryWords = (events: readonly ConsoleEvent[]) =>
  events
    .filter((e) => e.kind === 'restart')
    .map((e) => e.line.replace(/^.*?restart-canary: /, ''))
    .join('; ');

/** Guest seconds of racing, and writer processes. */
const RACE_SECONDS = 20;
const WRITERS = 3;

/** Where the race's scripts find the patch, its module and their scratch files (the guest's, or a unit test's). */
export interface RacePaths {
  /** The patch's sysfs directory. */
  lp: string;
  /** The livepatch module the driver loads. */
  module: string;
  /** Prefix of the scratch files (stop, pause, counts, hangs). */
  tmp: string;
}
const GUEST_PATHS: RacePaths = { lp: `/sys/kernel/livepatch/${LP}`, module: `/root/${LP}.ko`, tmp: '/tmp/race-' };

/**
 * One writer: loops over its writes until `stop` exists, counting each
 * outcome; unexpected error texts go to its log. While `pause` exists it
 * writes nothing and says so with `paused<id>` (the driver's settle, below).
 * Builtins only.
 */
export function writerScript(id: number, writes: string[], paths: RacePaths = GUEST_PATHS): string {
  const P = paths.lp;
  const T = paths.tmp;
  const one = (file: string, value: string) =>
    `if { echo ${value} > ${P}/${file}; } 2>${T}e${id}; then ok=$((ok+1)); else read m < ${T}e${id}; ` +
    `case "$m" in *"Invalid argument"*) inval=$((inval+1));; *"can't create"*|*"No such file"*|*nonexistent*|*"No such device"*) absent=$((absent+1));; ` +
    `*) other=$((other+1)); echo "${file}=${value}: $m" >> ${T}other${id};; esac; fi; `;
  return (
    `ok=0; inval=0; absent=0; other=0; reads=0; while [ ! -e ${T}stop ]; do ` +
    `if [ -e ${T}pause ]; then : > ${T}paused${id}; while [ -e ${T}pause ] && [ ! -e ${T}stop ]; do usleep 20000; done; rm -f ${T}paused${id}; continue; fi; ` +
    writes.map((w) => one(...(w.split('=') as [string, string]))).join('') +
    `read v 2>/dev/null < ${P}/transition && reads=$((reads+1)); done; echo "$ok $inval $absent $other $reads" > ${T}count${id}`
  );
}

/** The driver's bounds, all on the guest's clock. */
export interface DriverBounds {
  /** Guest ms of racing (a cycle starts until then). */
  raceMs: number;
  /** Guest ms a wait runs with the writers racing before they are paused. */
  settleMs: number;
  /** Guest ms the writers have to pause, and then the transition to end. */
  hangMs: number;
  /** Writer processes that must say they paused. */
  writers: number;
}

/**
 * The driver: loads the patch (a transition that the blocked reader makes
 * stick), waits until the writers finished or reversed it, disables it,
 * waits until the kernel freed it and removes the module; again until the
 * time is up.
 *
 * Writers that keep reversing a transition may keep it pending for as long
 * as they run: each reversal needs every task to switch again before the
 * kernel's next try, and the reader switches only after a signal that came
 * after the reversal. That is the admin's doing, not a hang. So a wait that
 * passes `settleMs` settles instead: the driver pauses the writers and waits
 * until each says it paused (a writer still in a write or read `hangMs` later
 * is a hang: a sysfs access that does not return), writes what its wait
 * needs again (the removal wait: enabled 0, since the last writer may have
 * reversed the disabling), then signal once, and waits `hangMs`. Only a
 * transition that does not end then counts as a hang (and ends the race):
 * with nobody reversing it and its blocker signalled, a kernel must finish it.
 */
export function driverScript(b: DriverBounds, paths: RacePaths = GUEST_PATHS): string {
  const P = paths.lp;
  const T = paths.tmp;
  const W = b.writers;
  const quiet =
    `q0=$ms; while :; do n=0; for f in ${T}paused*; do [ -e "$f" ] && n=$((n+1)); done; [ $n -ge ${W} ] && break; now_ms; ` +
    `if [ $((ms - q0)) -ge ${b.hangMs} ]; then hangs=$((hangs+1)); echo "hang: $((${W} - n)) of ${W} writers still in a write or read ${b.hangMs} ms after the pause" >> ${T}hangs; break; fi; usleep 20000; done; ` +
    `[ $hangs -gt 0 ] && break; `;
  const waitFor = (cond: string, again = '') =>
    `w0=$ms; settling=; while :; do ${cond} && break; now_ms; ` +
    `if [ -z "$settling" ] && [ $((ms - w0)) -ge ${b.settleMs} ]; then settling=1; stalls=$((stalls+1)); : > ${T}pause; ${quiet}${again}echo 1 > ${P}/signal 2>/dev/null; now_ms; w0=$ms; ` +
    `elif [ -n "$settling" ] && [ $((ms - w0)) -ge ${b.hangMs} ]; then hangs=$((hangs+1)); echo "hang: ${cond.replace(/"/g, "'")} still false ${b.hangMs} ms after the writers paused and signal was written" >> ${T}hangs; break; fi; ` +
    `usleep 50000; now_ms; done; [ -n "$settling" ] && rm -f ${T}pause; [ $hangs -gt 0 ] && break; `;
  return (
    `${NOW_MS}now_ms; t0=$ms; ` +
    `cycles=0; hangs=0; stalls=0; pinned=0; reversed=0; forced=0; while :; do now_ms; [ $((ms - t0)) -ge ${b.raceMs} ] && break; ` +
    `insmod ${paths.module} || { echo insmod-failed >> ${T}hangs; break; }; ` +
    // The last cycle also writes force: only then, since a forced unpatching pins the module.
    `now_ms; if [ $((ms - t0)) -ge ${b.raceMs - 3000} ]; then echo 1 > ${P}/force 2>/dev/null && forced=$((forced+1)); fi; ` +
    waitFor(`{ read v 2>/dev/null < ${P}/transition || v=gone; [ "$v" != 1 ]; }`) +
    // Reversed: the patching ended unpatched (the patch already freed, or disabled and done).
    `{ [ ! -e ${P} ] || { read en 2>/dev/null < ${P}/enabled && [ "$en" = 0 ]; }; } && reversed=$((reversed+1)); ` +
    `echo 0 > ${P}/enabled 2>/dev/null; ` +
    waitFor(`[ ! -e ${P} ]`, `echo 0 > ${P}/enabled 2>/dev/null; `) +
    `rmmod ${LP} 2>/dev/null || { pinned=1; break; }; cycles=$((cycles+1)); done; ` +
    `now_ms; echo "cycles=$cycles hangs=$hangs stalls=$stalls pinned=$pinned reversed=$reversed forced=$forced ms=$((ms - t0))"`
  );
}

export const race: Scenario = {
  name: 'race',
  expectedSeconds: 30,
  // Writers and the transition's work on CPUs of their own: a race needs two.
  vcpus: 2,
  description: `for ${RACE_SECONDS} s, ${WRITERS} processes write signal/force/enabled and read transition while patching transitions start, reverse and complete: only success or EINVAL, no hang, no lockdep or sleep-in-atomic report`,
  needs: ['signal', 'force'],
  async run(ctx) {
    await ctx.step('a kernel with lockdep; load klp_sleeper and block a reader', (s) => prepareRace(ctx, s));
    await ctx.step(`${WRITERS} writers race the transitions for ${RACE_SECONDS} s (guest clock)`, (s) => runRace(ctx, s));
    await ctx.step('afterwards the livepatch state settles', async (s) => {
      const left = (await ctx.ops.run(`ls /sys/kernel/livepatch/`)).stdout.trim();
      if (left) {
        // A forced unpatching in the last cycle pins the module; its patch must still be freed.
        const g = await ctx.ops.waitGone(`/sys/kernel/livepatch/${LP}/enabled`, guestBound('remedyToDone', ctx.arch) + timeout('transition', ctx.arch));
        s.equal(`/sys/kernel/livepatch/${LP}`, g.gone ? 'gone' : 'still present', 'gone');
      } else s.equal('patches left in /sys/kernel/livepatch', 'none', 'none');
    });
  },
};

async function prepareRace(ctx: ScenarioContext, s: StepApi): Promise<void> {
  if (!(await ctx.ops.exists('/proc/lockdep'))) {
    throw new Skipped('this kernel has no lockdep (/proc/lockdep): build it with --kconfig-extra kconfigs/debug.config to run the race');
  }
  const sl = new Sleeper(ctx);
  s.equal('lockdep (/proc/lockdep)', 'on', 'on');
  await sl.load(s);
  await sl.start('user-int', s);
  // The patch files exist only while the patch is loaded: detect the levers once.
  await sl.insmodPatch(s);
  await sl.lever(s, 'signal', '1', '0');
  // The reader now sleeps in the new function: unpatching sticks until signalled too.
  s.accepted('write 0 to enabled', await ctx.ops.write(sl.file('enabled'), '0'));
  await sl.lever(s, 'signal', '1', '1');
  await ctx.ops.waitGone(`/sys/kernel/livepatch/${LP}/enabled`, timeout('transition', ctx.arch));
  s.equal(`rmmod ${LP}`, (await ctx.ops.rmmod(LP)).code ?? 'no exit status', 0);
}

const WRITES = [
  ['signal=1', 'enabled=0', 'signal=0'],
  ['signal=1', 'force=0', 'enabled=1'],
  ['enabled=0', 'signal=1', 'force=0'],
];

async function runRace(ctx: ScenarioContext, s: StepApi): Promise<void> {
  const writers = Array.from({ length: WRITERS }, (_, i) => `setsid sh -c ${q(writerScript(i, WRITES[i % WRITES.length]!))} < /dev/null > /dev/null 2>&1 &`).join(' ');
  // Thousands of reversals print "starting ... transition" notices, which a console under
  // emulation (ppc64le's hvc) cannot keep up with. Notices go to the ring buffer only;
  // warnings and worse (lockdep, BUG, WARN) still reach the console the check reads.
  await ctx.ops.must('echo 5 > /proc/sys/kernel/printk');
  // Tasks the writers' signals wake in a restartable sleep must restart it: the canaries
  // sleep in pselect6 and nanosleep through each entry path of this CPU and print to the
  // console (which outlives SSH) when a sleep comes back with anything but 0.
  const canaries = canariesFor(ctx.arch.syscallByCpu, ctx.cpu);
  const restartCheck = `system calls restarted after fake signals (restart-canary: ${canaries.map((c) => `${c[1]} via ${c[0]}`).join(', ')})`;
  await ctx.ops.must(`chmod +x /root/${CANARY}; rm -f /tmp/race-*; ${canaries.map(([path, call]) => `setsid sh -c ${q(`/root/${CANARY} ${path} ${call} > /dev/kmsg 2>&1; echo $? > /tmp/race-canary-${path}-${call}`)} < /dev/null > /dev/null 2>&1 &`).join(' ')} ${writers}`);
  const hangMs = timeout('transition', ctx.arch);
  // A wait with the writers racing for 4 of the kernel's 1 s tries (10 s at most) before it settles.
  const bounds = { raceMs: RACE_SECONDS * 1000, settleMs: Math.min(4000, hangMs), hangMs, writers: WRITERS };
  // The last cycle may start just before the time is up: two waits, each of up to a settle, a pause and a bound.
  const r = await ctx.ops.run(driverScript(bounds), bounds.raceMs + 2 * (bounds.settleMs + 2 * hangMs) + timeout('guestCommand', ctx.arch)).catch((e: Error) => e);
  // The guest's SSH server sleeps in pselect6 too: when a restart goes wrong it exits and the
  // connection drops (the command ends without an exit status, or cannot start).
  const lost = r instanceof Error ? r.message : r.code === null ? 'the driver ended without an exit status' : undefined;
  if (lost) {
    const said = await Promise.race([ctx.vm.waitForLine(CANARY_LINE), delay(hostMs('canaryLine')).then(() => undefined)]);
    if (!said) throw r instanceof Error ? r : new Error(`SSH to the guest lost during the race: ${lost}`);
    s.equal(restartCheck, canaryWords(ctx.vm.events) || said.replace(/^.*?restart-canary: /, ''), RESTARTED);
    s.equal('SSH to the guest during the race', `lost (${lost})`, 'kept');
    return; // the failed checks end the scenario
  }
  if (r instanceof Error) throw r;
  const left = (await ctx.ops.run(`cat /tmp/race-canary-* 2>/dev/null; killall ${CANARY} 2>/dev/null; true`)).stdout.trim();
  s.equal(restartCheck, left ? canaryWords(ctx.vm.events) || `${left.split('\n').length} canaries returned` : RESTARTED, RESTARTED);
  await tallyRace(ctx, s, r.stdout);
}

/** Stops the writers and checks what they counted. */
async function tallyRace(ctx: ScenarioContext, s: StepApi, driverOut: string): Promise<void> {
  await ctx.ops.run(`touch /tmp/race-stop; i=0; while [ $i -lt 50 ]; do n=0; for f in /tmp/race-count*; do [ -e "$f" ] && n=$((n+1)); done; [ $n -ge ${WRITERS} ] && break; usleep 100000; i=$((i+1)); done`);
  const fields = Object.fromEntries([...driverOut.matchAll(/(\w+)=(\d+)/g)].map((m) => [m[1]!, Number(m[2])]));
  const counts = (await ctx.ops.run('cat /tmp/race-count* 2>/dev/null')).stdout.trim().split('\n').filter(Boolean).map((l) => l.split(' ').map(Number));
  const sum = (i: number) => counts.reduce((n, c) => n + (c[i] ?? 0), 0);
  const others = (await ctx.ops.run('cat /tmp/race-other* 2>/dev/null | sort | uniq -c | head -n 20')).stdout.trim();
  const hangs = (await ctx.ops.run('cat /tmp/race-hangs 2>/dev/null')).stdout.trim();
  ctx.logger.info(`  ${ctx.arch.name} race: ${driverOut.trim()}; writes ok=${sum(0)} EINVAL=${sum(1)} absent=${sum(2)} other=${sum(3)}; transition reads=${sum(4)}`);
  s.equal('writers that reported', counts.length, WRITERS);
  s.atLeast('patch load/disable/remove cycles', fields.cycles ?? NaN, 3, 'count');
  s.atLeast('writes accepted', sum(0), 1, 'count');
  s.atLeast('writes refused with EINVAL (no transition, or reversing to the same state)', sum(1), 1, 'count');
  s.atLeast('transition reads', sum(4), 1, 'count');
  s.equal('write errors other than EINVAL or a missing file', others || 'none', 'none');
  s.equal('transitions that did not end once the writers paused (patching or patch removal)', hangs || 'none', 'none');
}
