// Driving guest/modules in the guest: the klp_sleeper blockers and the
// klp_sleeper_lp livepatch, and reading what blocks a transition.
import { catScript, NOW_MS, parseWrites, pollOutcome, pollCommand, writesScript, type GuestOps, type SamplePoint, type WriteResult } from '../vm/guestops.js';
import { q } from '../vm/ssh.js';
import { guestBound, hostMs, timeout } from '../core/timeouts.js';
import { pollUntil } from '../core/poll.js';
import { Inconclusive, type ScenarioContext, type StepApi, type StuckSetup } from './types.js';

export const LP = 'klp_sleeper_lp';
/** The atomic-replace livepatch of the same function. */
export const LP_REPLACE = 'klp_sleeper_lp_replace';
export const DEBUGFS = '/sys/kernel/debug/klp_sleeper';
export const PAYLOAD = 'klp-sleeper payload 0123456789abcdefghijklmnopqrstuvwxyz\n';

export type BlockerName = StuckSetup['blocker'] | 'probe';
export type UserBlocker = Extract<BlockerName, `user-${string}`>;
export type Lever = 'signal' | 'force' | 'enabled';
/** How the leader of a thread-blocker process spends its time while its second thread blocks. */
export type LeaderMode = 'busy' | 'sleep';

/** The guest program whose second thread reads a blocker file (guest/modules/thread-blocker.c). */
export const THREAD_BLOCKER = 'thread-blocker';

const AUTO_SIGNAL_LINE = 'livepatch: signaling remaining tasks';
/** Written to /dev/kmsg just before a lever's write (Sleeper.MARK_WRITE). */
const WRITE_MARK = 'klp-harness: lever write';

/** What the kernel's dynamic-debug lines printed after a lever's write say. */
export interface AfterWrite {
  /** Per blocker pid: retries that still found it in a patched function. */
  blockerRetries: Map<number, number>;
  /** Other tasks a retry waited on ("is running", or asleep in a patched function): "comm:pid reason". */
  others: string[];
}

/** Reads the dynamic-debug lines printed after a write: what each retry said about which task. */
export function parseAfterWrite(lines: string[], blockers: number[]): AfterWrite {
  const blockerRetries = new Map(blockers.map((p) => [p, 0]));
  const others = new Set<string>();
  for (const l of lines) {
    const m = /klp_try_switch_task: (.+):(\d+) (is sleeping on function \S+|is running|has an unreliable stack)/.exec(l);
    if (!m) continue;
    const pid = Number(m[2]);
    if (blockerRetries.has(pid)) {
      if (m[3]!.startsWith('is sleeping')) blockerRetries.set(pid, blockerRetries.get(pid)! + 1);
    } else others.add(`${m[1]}:${pid} ${m[3]}`);
  }
  return { blockerRetries, others: [...others] };
}

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
    /** Shared by the Sleepers of one scenario: when each patch's transition started, the blockers started. */
    private readonly shared: { startedAt: Map<string, number>; blockers: number[] } = { startedAt: new Map(), blockers: [] },
  ) {}
  private get ops() {
    return this.ctx.ops;
  }

  /** The same blockers, driving another livepatch. */
  withPatch(patch: string): Sleeper {
    return new Sleeper(this.ctx, patch, this.shared);
  }

  /** Every blocker pid (or tid) started in this scenario. */
  get blockerPids(): number[] {
    return [...this.shared.blockers];
  }

  async load(s: StepApi): Promise<void> {
    // Every guest-side file of the scenario in one copy (the sleeper first).
    const mods = this.ctx.modules.modules;
    const names = ['klp_sleeper.ko', ...Object.keys(mods).filter((m) => m !== 'klp_sleeper.ko')];
    const [ko] = await this.ctx.copyInAll(names.map((m) => mods[m]!));
    // The kernel names the task a stuck transition waits on (LIVEPATCH.md): dynamic debug on, in the same command; the status is insmod's.
    const r = await this.ops.run(`insmod ${q(ko!)}; rc=$?; echo 'file kernel/livepatch/transition.c +p' > /sys/kernel/debug/dynamic_debug/control; exit $rc`);
    s.equal('insmod klp_sleeper.ko', r.code ?? 'no exit status', 0);
  }

  async status(): Promise<Record<string, BlockerStatus>> {
    return parseStatus(await this.ops.must(catScript(`${DEBUGFS}/status`)));
  }

  async blocker(name: BlockerName): Promise<BlockerStatus | undefined> {
    return (await this.status())[name];
  }

  async control(cmd: string) {
    return this.ops.write(`${DEBUGFS}/control`, cmd);
  }

  /**
   * Starts a blocker and waits until a task sleeps in klp_sleeper_block();
   * returns its pid. With `thread`, a user blocker's read is made by the
   * second thread of thread-blocker (its tid is returned), the leader busy
   * (with leaderSwitched, only until its own patch_state reads that) or
   * asleep elsewhere.
   */
  async start(name: BlockerName, s: StepApi, thread?: LeaderMode, leaderSwitched?: '0' | '1'): Promise<number> {
    if (name.startsWith('user-')) {
      const out = `/tmp/reader-${name}`;
      const reader = thread ? `/root/${THREAD_BLOCKER} ${thread} ${DEBUGFS}/${name}${leaderSwitched ? ` ${leaderSwitched}` : ''}` : `cat ${DEBUGFS}/${name}`;
      if (thread) await this.ops.must(`chmod +x /root/${THREAD_BLOCKER}`);
      // setsid: the reader must outlive this SSH command.
      await this.ops.must(`setsid sh -c ${q(`${reader} > ${out}.out 2> ${out}.err; echo $? > ${out}.rc`)} < /dev/null > /dev/null 2>&1 &`);
    } else {
      s.accepted(`start ${name}`, await this.control(`start ${name}`));
    }
    const sleeping = await this.waitStatus(name, (st) => st.sleeping === 1);
    s.equal(`${name} task sleeps in klp_sleeper_block()`, sleeping?.sleeping ?? 'none', 1);
    if (sleeping?.pid) this.shared.blockers.push(sleeping.pid);
    return sleeping?.pid ?? 0;
  }

  async waitStatus(name: BlockerName, pred: (s: BlockerStatus) => boolean, timeoutMs = timeout('blockerState', this.ctx.arch)): Promise<BlockerStatus | undefined> {
    const r = await pollUntil(() => this.blocker(name), (st) => st !== undefined && pred(st), { everyMs: hostMs('blockerPoll'), deadlineMs: timeoutMs });
    return r.ok ? r.value : r.last;
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
    await this.ops.waitFor(`${out}.rc`, { stopUnless: 'gone' }, timeout('blockerState', this.ctx.arch));
    const r = await this.ops.run(`${catScript(`${out}.rc`)}; echo ---; ${catScript(`${out}.err`)}; echo ---; ${catScript(`${out}.out`)}`);
    const [rc = '', err = '', data = ''] = r.stdout.split('---\n');
    s.equal(`${name} reader exit status`, rc.trim(), '0');
    s.equal(`${name} reader stderr`, err, '');
    s.equal(`${name} reader data`, data, PAYLOAD);
  }

  async insmodPatch(s: StepApi) {
    const r = await this.ops.runTimed(`insmod /root/${this.patch}.ko`);
    s.equal(`insmod ${this.patch}.ko`, r.code ?? 'no exit status', 0);
    this.ctx.event(`${this.patch} loaded`, r.atMs);
    this.shared.startedAt.set(this.patch, r.atMs);
    if (r.code === 0) await this.ctx.requireFeatures(this.patch);
  }

  file(name: string) {
    return this.ops.patchFile(this.patch, name);
  }

  /** Writes 0 to enabled (a reversal or an unpatching starts), noting when on the guest clock. */
  async disableTimed(s: StepApi, what = 'write 0 to enabled'): Promise<void> {
    const r = await this.ops.runTimed(`echo 0 > ${q(this.file('enabled'))}`);
    s.accepted(what, { ok: r.code === 0, error: /write error: (.*)$/m.exec(r.stderr)?.[1]?.trim() ?? r.stderr.trim() });
    this.ctx.event(`0 written to ${this.patch}/enabled`, r.atMs);
    this.shared.startedAt.set(this.patch, r.atMs);
  }

  /**
   * The margin from a write to the kernel's own signal, from the kernel's
   * own tries: each try that found the first blocker in the function
   * printed a line (printk time); the own signal comes with try
   * SIGNALS_TIMEOUT + 1 (the generation record). The tries' spacing is
   * measured (a loaded host stretches it), 1 s assumed before two are seen.
   * Reported per scenario as signalMarginMs.
   */
  private margin(atMs: number, tries: number[]): number | undefined {
    const gen = this.ctx.expect.generation;
    if (!gen || !tries.length || !Number.isFinite(atMs)) return undefined;
    const every = Sleeper.spacing(tries);
    const due = tries[0]! + gen.signalsTimeout * every;
    const margin = Math.round(due - atMs);
    this.ctx.timing('signalMarginMs', margin);
    this.ctx.logger.info(
      `  ${this.ctx.arch.name}${this.ctx.cpu ? `/${this.ctx.cpu}` : ''}: signal written to ${this.patch} after try ${tries.length} of ${gen.signalsTimeout + 1} (the kernel's own signal comes with the last; ${(every / 1000).toFixed(2)} s per try): ${(margin / 1000).toFixed(2)} s before it`,
    );
    return margin;
  }

  /** The kernel's measured time between tries (its last few), 1 s until two are seen. */
  private static spacing(tries: number[]): number {
    const last = tries.slice(-5);
    return last.length > 1 ? (last.at(-1)! - last[0]!) / (last.length - 1) : 1000;
  }

  /** Guest shell: the kernel's livepatch lines of interest, each prefixed "d " (read after a write, split by their printk time). */
  private static readonly KERNEL_LINES = `dmesg | grep -E 'klp_try_switch_task: |${AUTO_SIGNAL_LINE}|${WRITE_MARK}' | sed 's/^/d /'`;
  /**
   * Put in the kernel's log just before a lever's write: its printk time is
   * the write's time on the clock of the kernel's own lines. /proc/uptime
   * is another clock (seen on ppc64le under emulation: printk times over a
   * second ahead of it, so lines from before a write were counted after it).
   */
  private static readonly MARK_WRITE = `echo "${WRITE_MARK}" > /dev/kmsg; `;

  /**
   * What the kernel said before and after a write at `atMs` (guest uptime),
   * by its printk times (no dmesg before the write: under load each fork
   * costs up to a second, which would delay the lever): whether its own
   * signal came first, the first blocker's tries before the write, and the
   * lines after it.
   */
  private splitAtWrite(stdout: string, atMs: number): { ownFirst: boolean; tries: number[]; after: string[]; splitAt: number } {
    const all = [...stdout.matchAll(/^d \[\s*(\d+)\.(\d+)\] (.*)$/gm)].map((m) => ({ at: Number(m[1]) * 1000 + Number(m[2]!.padEnd(3, '0').slice(0, 3)), text: m[3]! }));
    // The last mark is this write's (the log keeps the earlier ones): the split on the kernel's own clock.
    const mark = all.filter((l) => l.text.includes(WRITE_MARK)).at(-1);
    const splitAt = mark?.at ?? atMs;
    const lines = all.filter((l) => !l.text.includes(WRITE_MARK));
    const before = lines.filter((l) => l.at < splitAt);
    const pid = this.shared.blockers[0];
    return {
      ownFirst: before.some((l) => l.text.includes(AUTO_SIGNAL_LINE)),
      tries: pid ? before.filter((l) => l.text.includes(`:${pid} is sleeping on function`)).map((l) => l.at) : [],
      after: lines.filter((l) => l.at >= splitAt).map((l) => l.text),
      splitAt,
    };
  }

  /**
   * Writes 1 to signal once, in one guest command with a look at dmesg
   * just before it. When the kernel's own signal was already sent, no
   * verdict about the lever is possible: Inconclusive (the run is repeated).
   */
  async signalOnce(s: StepApi, what = 'write 1 to signal'): Promise<WriteResult> {
    const r = await this.ops.run(`read u _ < /proc/uptime; echo "at $u"; ${Sleeper.MARK_WRITE}if { echo 1 > ${q(this.file('signal'))}; } 2>/tmp/klp-sw; then echo "w ok"; else read m < /tmp/klp-sw; echo "w $m"; fi; ${Sleeper.KERNEL_LINES}`);
    const at = /^at (\d+)\.(\d+)/m.exec(r.stdout);
    const atMs = at ? Number(at[1]) * 1000 + Number(at[2]!.padEnd(3, '0').slice(0, 3)) : NaN;
    const w = /^w (.*)$/m.exec(r.stdout)?.[1] ?? 'no write happened';
    const seen = this.splitAtWrite(r.stdout, atMs);
    this.ctx.event(`1 written to ${this.patch}/signal`, atMs);
    this.margin(seen.splitAt, seen.tries);
    if (seen.ownFirst) throw new Inconclusive(`the kernel signalled first ("signaling remaining tasks" came before ${this.patch}/signal was written)`);
    const outcome = w === 'ok' ? { ok: true, error: '' } : { ok: false, error: /write error: (.*)$/.exec(w)?.[1]?.trim() ?? w };
    s.accepted(what, outcome);
    return outcome;
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
   * Writes a lever and waits for the transition's end in one guest command,
   * timed on the guest clock from the write. The lever's effect is judged
   * by what the kernel says about the blockers after the write: retries
   * that still found one in a patched function (its dynamic-debug lines),
   * and when its patch_state left the initial state. The transition must
   * end within the arch's bound; when it took longer only because retries
   * waited on other tasks that were running (load), that is reported with
   * their pids instead of failing the lever. For signal, a kernel whose own
   * signal came before the write makes the run inconclusive.
   */
  async lever(s: StepApi, lever: Lever, value: '0' | '1', initialState: '0' | '1', opts: { times?: number; blockers?: number[] } = {}): Promise<number> {
    const times = opts.times ?? 1;
    const blockers = opts.blockers ?? this.blockerPids;
    const watch = blockers[0];
    const timeoutMs = timeout('transition', this.ctx.arch);
    // The blocker's patch_state, read with each reading of the transition: when it left the initial state.
    const poll = pollCommand({ path: this.file('transition'), forMs: timeoutMs, everyMs: 100, stopOn: ['0', 'gone'], t0: '$t0', ...(watch ? { also: `/proc/${watch}/patch_state` } : {}) });
    const script = `${NOW_MS}now_ms; t0=$ms; ${Sleeper.MARK_WRITE}${writesScript(this.file(lever), value, times)}${poll}; ${Sleeper.KERNEL_LINES}`;
    const r = await this.ops.run(script, timeoutMs + timeout('guestCommand', this.ctx.arch));
    const p = pollOutcome(r);
    const { value: v, elapsedMs: waitedMs, t0Ms: atMs } = p;
    const left = watch ? p.points.find((x) => x.other !== initialState) : undefined;
    const switched = left ? left.atMs - atMs : undefined;
    const writesDone = parseWrites(r.stdout);
    this.ctx.event(`${value} written to ${this.patch}/${lever}${times > 1 ? ` (x${times})` : ''}`, atMs);
    const { ownFirst, tries, after, splitAt } = this.splitAtWrite(r.stdout, atMs);
    if (lever === 'signal') {
      this.margin(splitAt, tries);
      if (ownFirst) throw new Inconclusive(`the kernel signalled first ("signaling remaining tasks" came before ${this.patch}/signal was written)`);
    }
    s.accepted(`write ${value} to ${lever}`, writesDone[0] ?? { ok: false, error: 'no write happened' });
    // A repeat may find the transition already over (EINVAL): both are right.
    writesDone.slice(1).forEach((w, i) => s.match(`repeated write ${i + 2} of ${value} to ${lever}`, w.ok ? 'accepted' : w.error, /^(accepted|Invalid argument)$/));
    const done = v === '0' || v === 'gone';
    if (done) this.ctx.event(`${this.patch} transition done`, atMs + waitedMs);
    await this.checkDone(s, `transition finished after writing ${value} to ${lever}`, done ? 'done' : `transition=${v}`, initialState);
    const seen = parseAfterWrite(after, blockers);
    for (const [pid, n] of seen.blockerRetries) s.atMost(`retries after the write that still found pid ${pid} in a patched function (the kernel's dynamic debug)`, n, 1, 'count');
    if (switched !== undefined) this.ctx.timing('blockerSwitchedMs', Number(switched));
    // The transition ends at the kernel's next try once the blocker has switched: allow two of its tries as it spaces them now (a loaded guest stretches them).
    const every = Sleeper.spacing(tries);
    const bound = Math.max(guestBound('remedyToDone', this.ctx.arch), Math.round(2 * every + 500));
    if (done && waitedMs > bound && seen.others.length) {
      // Not the lever: the kernel's retries waited on tasks that were merely running.
      this.ctx.unchecked(`${lever} write -> transition done within ${(bound / 1000).toFixed(2)} s: it took ${(waitedMs / 1000).toFixed(2)} s, the kernel's retries waiting on other tasks (load): ${seen.others.join(', ')}; the blockers left the initial state ${switched !== undefined ? `${(Number(switched) / 1000).toFixed(2)} s` : 'by the end'} after the write`);
    } else s.atMost(`${lever} write -> transition done (guest clock; the kernel tries every ${(every / 1000).toFixed(2)} s)`, waitedMs, bound, 'ms');
    this.ctx.timing('remedyToDoneMs', waitedMs);
    return waitedMs;
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
