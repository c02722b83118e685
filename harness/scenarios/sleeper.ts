// Driving guest/modules in the guest: the klp_sleeper blockers and the
// klp_sleeper_lp livepatch, and reading what blocks a transition.
import type { GuestOps, SamplePoint } from '../vm/guestops.js';
import { q } from '../vm/ssh.js';
import { guestBound, timeout } from '../core/timeouts.js';
import type { ScenarioContext, StepApi, StuckSetup } from './types.js';

export const LP = 'klp_sleeper_lp';
/** The atomic-replace livepatch of the same function. */
export const LP_REPLACE = 'klp_sleeper_lp_replace';
export const DEBUGFS = '/sys/kernel/debug/klp_sleeper';
export const PAYLOAD = 'klp-sleeper payload 0123456789abcdefghijklmnopqrstuvwxyz\n';

export type BlockerName = StuckSetup['blocker'] | 'probe';
export type UserBlocker = Extract<BlockerName, `user-${string}`>;
export type Lever = 'signal' | 'force' | 'enabled';

export interface BlockerStatus {
  sleeping: number;
  calls_old: number;
  calls_new: number;
  /** Entries into the atomic-replace patch's version. */
  calls_repl: number;
  interrupted: number;
  /** Returns from schedule() inside klp_sleeper_block(): how often the task was woken there. */
  wakeups: number;
  reads_done: number;
  released: number;
  pid: number;
}

/** Parses the module's status file: one line per blocker, key=value fields. */
export function parseStatus(text: string): Record<string, BlockerStatus> {
  const out: Record<string, BlockerStatus> = {};
  for (const line of text.trim().split('\n')) {
    const [name, ...fields] = line.trim().split(/\s+/);
    if (!name) continue;
    out[name] = Object.fromEntries(fields.map((f) => f.split('=')).map(([k, v]) => [k, Number(v)])) as unknown as BlockerStatus;
  }
  return out;
}

export interface BlockingTask {
  pid: number;
  comm: string;
  patchState: string;
  function: string;
}

/**
 * Lists the tasks still in the transition's initial state (what blocks it):
 * pid, comm, patch_state and the top of the kernel stack they sleep on.
 */
export async function blockingTasks(ops: GuestOps, initialState: '0' | '1'): Promise<BlockingTask[]> {
  // The function comes from the kernel's own dynamic-debug line when there is
  // one, else from the first non-scheduler symbol on the task's stack.
  // Builtins (read, ${t##*/}) only in the per-task loop: a fork costs ~45 ms
  // under emulation and a guest has dozens of tasks.
  const script =
    `dmesg | grep 'is sleeping on function' > /tmp/klp-sleeping 2>/dev/null; ` +
    `for t in /proc/[0-9]*/task/[0-9]*; do read s 2>/dev/null < $t/patch_state || continue; ` +
    `[ "$s" = ${q(initialState)} ] || continue; p=\${t##*/}; read c 2>/dev/null < $t/comm; ` +
    `f=$(grep ":$p is sleeping" /tmp/klp-sleeping | tail -n1 | sed 's/.*on function //'); ` +
    `[ -n "$f" ] || f=$(sed 's/^\\[<[0-9a-fx]*>\\] //' $t/stack 2>/dev/null | grep -E '^[A-Za-z_][A-Za-z0-9_.]*\\+0x' | grep -v -E '^(__switch_to|__schedule|schedule|schedule_timeout|_switch)' | head -n1); ` +
    `echo "$p|$c|$s|$f"; done`;
  const r = await ops.run(script);
  return r.stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [pid = '0', comm = '', patchState = '', fn = ''] = l.split('|');
      return { pid: Number(pid), comm, patchState, function: fn.trim() };
    });
}

export const formatBlocking = (tasks: BlockingTask[]) =>
  tasks.length ? tasks.map((t) => `pid ${t.pid} ${t.comm} patch_state=${t.patchState} in ${t.function || '?'}`).join('; ') : 'no blocking task found';

/** The kernel's own words about one task, from its dynamic-debug lines (LIVEPATCH.md). */
export interface KernelReason {
  /** The last "<comm>:<pid> ..." line for the task, or '' when it printed none. */
  last: string;
  sleepingOnBlock: boolean;
  /** "is running" or "has an unreliable stack" lines for the task. */
  otherReasons: string[];
}

/**
 * The blockers of klp_sleeper.ko and one livepatch of klp_sleeper_block()
 * (`patch`, default klp_sleeper_lp): transition files, waits and levers
 * are that patch's.
 */
export class Sleeper {
  constructor(
    private readonly ctx: ScenarioContext,
    readonly patch: string = LP,
  ) {}
  private get ops() {
    return this.ctx.ops;
  }

  /** The same blockers, driving another livepatch. */
  withPatch(patch: string): Sleeper {
    return new Sleeper(this.ctx, patch);
  }

  async load(s: StepApi): Promise<void> {
    const ko = await this.ctx.copyIn(this.ctx.modules.modules['klp_sleeper.ko']!);
    for (const m of Object.keys(this.ctx.modules.modules).filter((m) => m !== 'klp_sleeper.ko')) await this.ctx.copyIn(this.ctx.modules.modules[m]!);
    s.equal('insmod klp_sleeper.ko', (await this.ops.insmod(ko)).code ?? 'no exit status', 0);
    // The kernel names the task a stuck transition waits on (LIVEPATCH.md).
    await this.ops.run(`echo 'file kernel/livepatch/transition.c +p' > /sys/kernel/debug/dynamic_debug/control`);
  }

  async status(): Promise<Record<string, BlockerStatus>> {
    return parseStatus(await this.ops.must(`cat ${DEBUGFS}/status`));
  }

  async blocker(name: BlockerName): Promise<BlockerStatus | undefined> {
    return (await this.status())[name];
  }

  async control(cmd: string) {
    return this.ops.write(`${DEBUGFS}/control`, cmd);
  }

  /** Starts a blocker and waits until a task sleeps in klp_sleeper_block(); returns its pid. */
  async start(name: BlockerName, s: StepApi): Promise<number> {
    if (name.startsWith('user-')) {
      const out = `/tmp/reader-${name}`;
      // setsid: the reader must outlive this SSH command.
      await this.ops.must(`setsid sh -c ${q(`cat ${DEBUGFS}/${name} > ${out}.out 2> ${out}.err; echo $? > ${out}.rc`)} < /dev/null > /dev/null 2>&1 &`);
    } else {
      s.accepted(`start ${name}`, await this.control(`start ${name}`));
    }
    const sleeping = await this.waitStatus(name, (st) => st.sleeping === 1);
    s.equal(`${name} task sleeps in klp_sleeper_block()`, sleeping?.sleeping ?? 'none', 1);
    return sleeping?.pid ?? 0;
  }

  async waitStatus(name: BlockerName, pred: (s: BlockerStatus) => boolean): Promise<BlockerStatus | undefined> {
    const end = Date.now() + timeout('blockerState', this.ctx.arch);
    let st: BlockerStatus | undefined;
    while (Date.now() < end) {
      st = await this.blocker(name);
      if (st && pred(st)) return st;
      await new Promise((r) => setTimeout(r, 200));
    }
    return st;
  }

  async release(name: BlockerName, s: StepApi) {
    s.accepted(`release ${name}`, await this.control(`release ${name}`));
  }

  /** After a user reader was released: what its read returned. */
  async checkReader(name: UserBlocker, s: StepApi) {
    const st = await this.waitStatus(name, (x) => x.reads_done >= 1);
    s.equal(`${name} read completed`, st?.reads_done ?? 0, 1);
    const out = `/tmp/reader-${name}`;
    // The reader writes its exit status last: wait (in the guest) until that file has a line.
    await this.ops.waitFor(`${out}.rc`, '[ "$v" != gone ]', timeout('blockerState', this.ctx.arch));
    const r = await this.ops.run(`cat ${out}.rc; echo ---; cat ${out}.err; echo ---; cat ${out}.out`);
    const [rc = '', err = '', data = ''] = r.stdout.split('---\n');
    s.equal(`${name} reader exit status`, rc.trim(), '0');
    s.equal(`${name} reader stderr`, err, '');
    s.equal(`${name} reader data`, data, PAYLOAD);
  }

  async insmodPatch(s: StepApi) {
    const r = await this.ops.runTimed(`insmod /root/${this.patch}.ko`);
    s.equal(`insmod ${this.patch}.ko`, r.code ?? 'no exit status', 0);
    this.ctx.event(`${this.patch} loaded`, r.atMs);
    if (r.code === 0) await this.ctx.requireFeatures(this.patch);
  }

  file(name: string) {
    return this.ops.patchFile(this.patch, name);
  }

  /** What the kernel said about task `pid` while trying to switch it. */
  async kernelReason(pid: number): Promise<KernelReason> {
    const lines = (await this.ops.run(`dmesg | grep -E ':${pid} (is sleeping on function|is running|has an unreliable stack)'`)).stdout.trim().split('\n').filter(Boolean);
    return {
      last: lines.at(-1)?.replace(/^\[[^\]]*\]\s*/, '') ?? '',
      sleepingOnBlock: lines.some((l) => new RegExp(`:${pid} is sleeping on function klp_sleeper_block$`).test(l.trim())),
      otherReasons: lines.filter((l) => !l.includes('is sleeping on function')),
    };
  }

  /**
   * Confirms the transition stays pending over the kernel's one-second
   * retries (sampled in the guest), and that the kernel itself says why:
   * the blocker `pid` "is sleeping on function klp_sleeper_block", never
   * "is running" or "has an unreliable stack"; the blocker is still in the
   * initial state while other tasks (pid 1) already reached the target.
   */
  async confirmStuck(s: StepApi, initialState: '0' | '1', pid: number, spanMs = guestBound('stuckSpan', this.ctx.arch)): Promise<boolean> {
    const { counts, spanMs: span, points } = await this.ops.sample(this.file('transition'), spanMs, 250, `/proc/${pid}/patch_state`);
    this.recordSamples(points, pid);
    const readings = [...counts].map(([v, n]) => `${v} x${n}`).join(', ');
    const always = s.equal(`transition readings every 250 ms`, counts.size === 1 && counts.has('1') ? 'always 1' : readings, 'always 1');
    const long = s.atLeast(`span of those readings (guest clock, the kernel retries every 1 s)`, span, spanMs, 'ms');
    const reason = await this.kernelReason(pid);
    s.equal(`the kernel's reason for pid ${pid} (dynamic debug)`, reason.sleepingOnBlock ? 'is sleeping on function klp_sleeper_block' : reason.last || 'no line for this pid', 'is sleeping on function klp_sleeper_block');
    s.equal(`"is running" / "unreliable stack" lines for pid ${pid}`, reason.otherReasons.join('\n') || 'none', 'none');
    const target = initialState === '0' ? '1' : '0';
    const states = (await this.ops.run(`read a < /proc/${pid}/patch_state; read b < /proc/1/patch_state; echo "$a $b"`)).stdout.trim().split(' ');
    s.equal(`/proc/${pid}/patch_state (the blocker)`, states[0] ?? '?', initialState);
    s.equal('/proc/1/patch_state (init, not blocking)', states[1] ?? '?', target);
    return always && long;
  }

  /**
   * Confirms a write changed nothing: the transition is still pending over
   * a shorter span (used after writing 0, or signal to a sleeper it cannot free).
   */
  async stillStuck(s: StepApi, what: string): Promise<boolean> {
    const spanMs = guestBound('noChangeSpan', this.ctx.arch);
    const { counts, points } = await this.ops.sample(this.file('transition'), spanMs, 250);
    this.ctx.series(`${this.patch} transition`, points);
    const readings = [...counts].map(([v, n]) => `${v} x${n}`).join(', ');
    return s.equal(`${what}: transition readings every 250 ms for ${spanMs / 1000} s`, counts.size === 1 && counts.has('1') ? 'always 1' : readings, 'always 1');
  }

  /** Waits for the transition to finish; on failure the check shows what still blocks. */
  async waitDone(s: StepApi, what: string, initialState: '0' | '1', timeoutMs = timeout('transition', this.ctx.arch)): Promise<number> {
    const w = await this.ops.waitTransition(this.patch, '0', timeoutMs);
    const done = w.value === '0' || w.value === 'gone';
    if (done) this.ctx.event(`${this.patch}: ${what}`, w.endMs);
    await this.checkDone(s, what, done ? 'done' : `transition=${w.value}`, initialState);
    return w.waitedMs;
  }

  /**
   * Writes a lever and times the transition's end on the guest clock from
   * the write: it must be accepted, and the transition done within the
   * arch's remedy bound. Returns the guest-clock milliseconds.
   */
  async lever(s: StepApi, lever: Lever, value: '0' | '1', initialState: '0' | '1', times = 1): Promise<number> {
    const r = await this.ops.writeThenWait(this.file(lever), value, this.patch, timeout('transition', this.ctx.arch), times);
    s.accepted(`write ${value} to ${lever}`, r.writes[0] ?? { ok: false, error: 'no write happened' });
    // A repeat may find the transition already over (EINVAL): both are right.
    r.writes.slice(1).forEach((w, i) => s.match(`repeated write ${i + 2} of ${value} to ${lever}`, w.ok ? 'accepted' : w.error, /^(accepted|Invalid argument)$/));
    const done = r.value === '0' || r.value === 'gone';
    this.ctx.event(`${value} written to ${this.patch}/${lever}${times > 1 ? ` (x${times})` : ''}`, r.atMs);
    if (done) this.ctx.event(`${this.patch} transition done`, r.atMs + r.waitedMs);
    await this.checkDone(s, `transition finished after writing ${value} to ${lever}`, done ? 'done' : `transition=${r.value}`, initialState);
    s.atMost(`${lever} write -> transition done (guest clock)`, r.waitedMs, guestBound('remedyToDone', this.ctx.arch), 'ms');
    this.ctx.timing('remedyToDoneMs', r.waitedMs);
    return r.waitedMs;
  }

  /** Keeps the sampled `transition` and blocker `patch_state` readings for the report's timeline. */
  private recordSamples(points: SamplePoint[], pid: number) {
    this.ctx.series(`${this.patch} transition`, points);
    this.ctx.series(`pid ${pid} patch_state`, points.map((p) => ({ atMs: p.atMs, value: p.other ?? '?' })));
    const last = points.at(-1);
    if (last) this.ctx.event(`${this.patch} stuck confirmed`, last.atMs);
  }

  /** "done", or what still blocks; once done, every task's patch_state is back to -1. */
  private async checkDone(s: StepApi, what: string, outcome: string, initialState: '0' | '1') {
    if (outcome !== 'done') {
      s.equal(what, `${outcome}; ${formatBlocking(await blockingTasks(this.ops, initialState))}`, 'done');
      return;
    }
    s.equal(what, outcome, 'done');
    const states = await this.ops.patchStates();
    const notReset = [...states].filter(([v]) => v !== '-1').map(([v, n]) => `${n} at ${v}`);
    s.equal('tasks whose patch_state is not -1 once the transition is over', notReset.join(', ') || 'none', 'none');
  }
}
