// A user's own livepatch module under the user's own workload
// (--livepatch FILE.ko|DIR --workload CMD): the workload starts in the
// guest, the patch loads, and the harness reports how the transition ends:
// on its own within a bound, or stuck, with who blocks it and where, then
// each remedy of the policy (--remedy signal,force) in turn, each only if
// the one before did not end it within its bound.
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { onCleanup } from '../proc/supervisor.js';
import { usageError } from '../core/errors.js';
import { run } from '../proc/exec.js';
import { guestBound } from '../core/timeouts.js';
import { moduleCompiler } from '../kernel/binary-kernel.js';
import { compilerErrors, makeArgs } from '../kernel/build.js';
import { q } from '../vm/ssh.js';
import { blockingTasks } from './sleeper.js';
import type { HostContext, Scenario, ScenarioContext, StepApi } from './types.js';

export type Remedy = 'signal' | 'force';
const REMEDIES: readonly Remedy[] = ['signal', 'force'];

export interface UserPatchInput {
  /** A .ko built for the kernel under test, or a module source directory (Makefile/Kbuild) built against it. */
  livepatch: string;
  /** A shell command started in the guest before the load. */
  workload: string;
  remedies: Remedy[];
}

/** --remedy signal,force: the levers in the order they are tried. */
export function parseRemedies(value: string | undefined): Remedy[] {
  if (value === undefined) return [...REMEDIES];
  const list = value.split(',').map((v) => v.trim()).filter(Boolean);
  const bad = list.filter((r) => !REMEDIES.includes(r as Remedy));
  if (bad.length || !list.length) throw usageError(`bad --remedy '${value}'`, { hint: `name levers in the order to try them, comma-separated: ${REMEDIES.join(', ')} (default signal,force)` });
  return list as Remedy[];
}

export interface UserModule {
  path: string;
  /** The module's name: its directory under /sys/kernel/livepatch/. */
  name: string;
  vermagic: string;
}

const modinfo = async (field: string, ko: string) => (await run('modinfo', ['-F', field, ko]).catch(() => ({ stdout: '' }))).stdout.trim();

/** The kernel's release (uname -r) as its kbuild tree records it (Debian's headers keep the upstream version in kernel.release). */
function releaseOf(buildDir: string): string | undefined {
  const uts = join(buildDir, 'include/generated/utsrelease.h');
  const fromUts = existsSync(uts) ? /UTS_RELEASE\s+"([^"]+)"/.exec(readFileSync(uts, 'utf8'))?.[1] : undefined;
  const f = join(buildDir, 'include/config/kernel.release');
  return fromUts ?? (existsSync(f) ? readFileSync(f, 'utf8').trim() : undefined);
}

/**
 * Checks a user's module against the kernel under test (its vermagic's
 * release, and that it is a livepatch), building it first when given a
 * source directory. Each problem is bad input (exit 4) saying what to do.
 */
export async function userModule(host: HostContext, source: string): Promise<UserModule> {
  if (!existsSync(source)) throw usageError(`--livepatch ${source} does not exist`, { hint: 'give a livepatch .ko built for the kernel under test, or its source directory (with a Makefile or Kbuild)' });
  const ko = source.endsWith('.ko') ? source : await buildUserModule(host, source);
  if (!ko.endsWith('.ko')) throw usageError(`--livepatch ${source} is neither a .ko file nor a directory`, { hint: 'give a livepatch .ko, or its source directory' });
  const vermagic = await modinfo('vermagic', ko);
  if (!vermagic) throw usageError(`--livepatch ${ko} is not a kernel module (modinfo reads no vermagic)`, { hint: 'give a .ko built with kbuild (make -C <kernel build> M=<dir> modules)' });
  const release = releaseOf(host.build.buildDir);
  const built = vermagic.split(/\s+/)[0];
  if (release && built !== release) {
    throw usageError(`--livepatch ${ko} was built for kernel ${built}, not for the kernel under test (${release})`, {
      details: `its vermagic: ${vermagic}`,
      hint: 'build it against this kernel (give --livepatch its source directory and the harness builds it), or run the kernel it was built for',
    });
  }
  if ((await modinfo('livepatch', ko)) !== 'Y') {
    throw usageError(`--livepatch ${ko} is not a livepatch module (its modinfo has no livepatch=Y)`, { hint: 'a livepatch module declares MODULE_INFO(livepatch, "Y") and calls klp_enable_patch() in its init' });
  }
  const name = (await modinfo('name', ko)) || basename(ko, '.ko').replace(/-/g, '_');
  host.logger.info(`user-patch ${host.arch.name}: ${ko} (${name}), vermagic ${vermagic}`);
  return { path: ko, name, vermagic };
}

/** Builds a module source directory against the kernel under test; the one livepatch .ko it makes is the module. */
async function buildUserModule(host: HostContext, dir: string): Promise<string> {
  if (!existsSync(join(dir, 'Makefile')) && !existsSync(join(dir, 'Kbuild'))) throw usageError(`--livepatch ${dir} has no Makefile or Kbuild`, { hint: 'give a module source directory that kbuild can build (obj-m += <name>.o)' });
  const work = mkdtempSync(join(tmpdir(), 'klp-user-patch-'));
  onCleanup(() => rmSync(work, { recursive: true, force: true }));
  cpSync(dir, work, { recursive: true });
  const config = readFileSync(join(host.build.buildDir, '.config'), 'utf8');
  const cc = await moduleCompiler(host.arch, config);
  const logPath = join(work, 'build.log');
  await run('make', ['-C', host.build.buildDir, ...makeArgs(host.arch, host.tree, host.build.buildDir).slice(3), `CC=${cc.cc}`, `M=${work}`, 'modules'], {
    logPath,
    logger: host.logger,
    onFailure: (f) => usageError(`--livepatch ${dir} does not build against the kernel under test`, { command: f.command, exitCode: f.exitCode, logPath, details: compilerErrors(f.output).join('\n'), hint: 'fix the module for this kernel, or give a .ko built for it' }),
  });
  const kos = readdirSync(work).filter((f) => f.endsWith('.ko'));
  const lps: string[] = [];
  for (const k of kos) if ((await modinfo('livepatch', join(work, k))) === 'Y') lps.push(k);
  if (lps.length !== 1) throw usageError(`--livepatch ${dir} built ${lps.length} livepatch modules (${kos.join(', ') || 'no .ko at all'})`, { hint: 'give a directory that builds exactly one livepatch module, or the .ko itself' });
  return join(work, lps[0]!);
}

const OUT = '/tmp/klp-workload';

/**
 * Starts the workload so that it outlives the SSH command; its output and
 * status land in /tmp/klp-workload.*. The project's own guest modules are in
 * /root first, for workloads that block on them (klp_sleeper.ko's readers).
 */
async function startWorkload(ctx: ScenarioContext, s: StepApi, command: string): Promise<void> {
  for (const f of ['klp_sleeper.ko', 'thread-blocker']) if (ctx.modules.modules[f] && existsSync(ctx.modules.modules[f])) await ctx.copyIn(ctx.modules.modules[f]);
  await ctx.ops.must(`setsid sh -c ${q(`sh -c ${q(command)} > ${OUT}.out 2>&1; echo $? > ${OUT}.rc`)} < /dev/null > /dev/null 2>&1 & echo $! > ${OUT}.pid`);
  // Give it a second of guest time to get going (or to fail at once).
  const r = await ctx.ops.run(`sleep 1; cat ${OUT}.rc 2>/dev/null || echo running`);
  const state = r.stdout.trim();
  if (state !== 'running' && state !== '0') {
    const out = await ctx.ops.run(`tail -n 20 ${OUT}.out`);
    throw usageError(`the workload exited with status ${state} before the livepatch was loaded: ${command}`, {
      details: out.stdout.trim() || '(no output)',
      hint: 'the workload must keep running (or end with status 0) until the patch loads; try it by hand in `klp-harness shell`',
    });
  }
  s.equal('the workload before the load (running, or ended with status 0)', state === '0' ? 'ended with status 0' : state, state === '0' ? 'ended with status 0' : 'running');
}

/** The kernel's "is sleeping on function" lines on, then the workload. */
const workloadStep = (ctx: ScenarioContext, command: string) =>
  ctx.step('start the workload', async (s) => {
    await ctx.ops.run(`echo 'file kernel/livepatch/transition.c +p' > /sys/kernel/debug/dynamic_debug/control`);
    await startWorkload(ctx, s, command);
  });

const insmodCheck = (s: StepApi, m: UserModule, r: { code: number | null; stderr: string }) => s.equal(`insmod ${basename(m.path)}`, r.code === 0 ? 0 : `${r.code}: ${r.stderr.trim()}`, 0);

/** The tasks that keep the transition pending, with thread group, function, stack and state; also logged. */
async function reportBlockers(ctx: ScenarioContext, s: StepApi, initial: '0' | '1'): Promise<string> {
  const tasks = await blockingTasks(ctx.ops, initial);
  const lines: string[] = [];
  for (const t of tasks) {
    const r = await ctx.ops.run(`grep -m1 '^Tgid:' /proc/${t.pid}/status 2>/dev/null; cat /proc/${t.pid}/stack 2>/dev/null`);
    const tgid = /^Tgid:\s*(\d+)/.exec(r.stdout)?.[1] ?? '?';
    const stack = r.stdout.split('\n').slice(1).filter(Boolean).map((l) => l.replace(/^\[<[0-9a-fx]+>\]\s*/, '').trim());
    const who = tgid === String(t.pid) ? `pid ${t.pid}` : `pid ${tgid} thread ${t.pid}`;
    lines.push(`${who} ${t.comm} patch_state=${t.patchState} in ${t.function || '?'}; stack: ${stack.join(' < ') || 'unreadable'}`);
    s.equal(`patch_state of ${who} ${t.comm} (blocking, in ${t.function || '?'})`, t.patchState, initial);
  }
  const text = lines.join('\n') || 'no task in the initial state found';
  for (const l of lines) ctx.logger.info(`  ${ctx.arch.name}${ctx.cpu ? `/${ctx.cpu}` : ''} user-patch: blocking: ${l}`);
  return text;
}

/** The scenario for one user module and workload. */
export function userPatch(input: UserPatchInput): Scenario {
  const prepared = new Map<string, UserModule>();
  const moduleFor = async (host: HostContext) => {
    let m = prepared.get(host.arch.name);
    if (!m) prepared.set(host.arch.name, (m = await userModule(host, input.livepatch)));
    return m;
  };
  return {
    name: 'user-patch',
    description: `the user's livepatch ${basename(input.livepatch)} under the workload '${input.workload}', remedies ${input.remedies.join(', ') || 'none'}`,
    expectedSeconds: 30,
    prepareFailsRun: true,
    prepare: async (host) => void (await moduleFor(host)),
    async run(ctx) {
      const m = await moduleFor(ctx);
      const lp = (f: string) => ctx.ops.patchFile(m.name, f);
      const bound = guestBound('stuckSpan', ctx.arch);
      let state = '';
      await workloadStep(ctx, input.workload);
      await ctx.step(`load ${basename(m.path)}: does the transition end on its own within ${bound / 1000} s?`, async (s) => {
        const guestKo = await ctx.copyIn(m.path);
        const r = await ctx.ops.runTimed(`insmod ${q(guestKo)}`);
        ctx.event(`insmod ${m.name}`, r.atMs);
        insmodCheck(s, m, r);
        const w = await ctx.ops.waitTransition(m.name, '0', bound);
        state = w.value;
        if (w.value !== '1') {
          ctx.timing('ownEndMs', w.waitedMs);
          ctx.event('transition done on its own', w.endMs);
        }
        s.equal(`transition ${bound / 1000} s after the load (guest clock)`, w.value === '1' ? '1 (stuck)' : '0 (done on its own)', w.value === '1' ? '1 (stuck)' : '0 (done on its own)');
      });
      if (state !== '1') return;
      await ctx.step('who blocks it', async (s) => {
        const text = await reportBlockers(ctx, s, (await ctx.ops.read(lp('enabled'))) === '1' ? '0' : '1');
        ctx.event(`stuck; blocking: ${text.split('\n').length} task(s)`, NaN);
      });
      const levers = [];
      for (const r of input.remedies) if (await ctx.has(m.name, r, `remedy ${r}`)) levers.push(r);
      await applyRemedies(ctx, m, levers);
      if (!levers.length) {
        await ctx.step('no remedy to try', async (s) => void s.equal('transition (no remedy available or asked for)', await ctx.ops.read(lp('transition')), '0'));
      }
    },
  };
}

/** Writes 1 to each lever in order, until one ends the transition within its bound; the last must. */
async function applyRemedies(ctx: ScenarioContext, m: UserModule, levers: string[]): Promise<void> {
  const lp = (f: string) => ctx.ops.patchFile(m.name, f);
  for (const [i, lever] of levers.entries()) {
    const last = i === levers.length - 1;
    const limit = guestBound('remedyToDone', ctx.arch);
    let ended = false;
    await ctx.step(`remedy ${i + 1}: write 1 to ${lever}`, async (s) => {
      const w = await ctx.ops.writeThenWait(lp(lever), '1', m.name, limit);
      ctx.event(`${lever} <- 1`, w.atMs);
      s.accepted(`write 1 to ${lever}`, w.writes[0] ?? { ok: false, error: 'no outcome' });
      ended = w.value !== '1';
      if (ended) {
        ctx.event('transition done', w.atMs + w.waitedMs);
        ctx.timing(`${lever}ToDoneMs`, w.waitedMs);
        s.atMost(`${lever} write -> transition done (guest clock)`, w.waitedMs, limit, 'ms');
      } else if (last) {
        s.equal(`transition ${limit / 1000} s after the last remedy (${lever})`, w.value, '0');
      } else {
        ctx.logger.info(`  ${ctx.arch.name} user-patch: ${lever} did not end the transition within ${limit / 1000} s; next remedy`);
      }
    });
    if (ended) return;
  }
}

/** For repro: loads the user's module under its workload and leaves the transition as it is. */
export async function loadUserPatch(ctx: ScenarioContext, input: UserPatchInput): Promise<{ module: UserModule; stuck: boolean; blockers: string }> {
  const m = await userModule(ctx, input.livepatch);
  let stuck = false;
  let blockers = '';
  await workloadStep(ctx, input.workload);
  await ctx.step('load the livepatch', async (s) => {
    const r = await ctx.ops.insmod(await ctx.copyIn(m.path));
    insmodCheck(s, m, r);
    stuck = (await ctx.ops.waitTransition(m.name, '0', guestBound('stuckSpan', ctx.arch))).value === '1';
    if (stuck) blockers = await reportBlockers(ctx, s, '0');
  });
  return { module: m, stuck, blockers };
}
