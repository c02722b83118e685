// Driving guest/modules in the guest: the klp_sleeper blockers and the
// klp_sleeper_lp livepatch, and reading what blocks a transition.
import type { GuestOps } from '../guestops.js';
import { q } from '../ssh.js';
import type { ScenarioContext, StepApi } from './types.js';

export const LP = 'klp_sleeper_lp';
export const DEBUGFS = '/sys/kernel/debug/klp_sleeper';
export const PAYLOAD = 'klp-sleeper payload 0123456789abcdefghijklmnopqrstuvwxyz\n';

export type BlockerName = 'user-int' | 'user-idle' | 'kthread-int' | 'kthread-idle' | 'probe';

export interface BlockerStatus {
  sleeping: number;
  calls_old: number;
  calls_new: number;
  interrupted: number;
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
    `[ -n "$f" ] || f=$(sed 's/^\\[<[0-9a-fx]*>\\] //' $t/stack 2>/dev/null | grep -E '^[A-Za-z_][A-Za-z0-9_.]*\\+0x' | grep -v -E '^(__switch_to|__schedule|schedule|_switch)' | head -n1); ` +
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

export class Sleeper {
  constructor(private readonly ctx: ScenarioContext) {}
  private get ops() {
    return this.ctx.ops;
  }

  async load(s: StepApi): Promise<void> {
    const ko = await this.ctx.copyIn(this.ctx.modules.modules['klp_sleeper.ko']!);
    await this.ctx.copyIn(this.ctx.modules.modules['klp_sleeper_lp.ko']!);
    s.equal('insmod klp_sleeper.ko', String((await this.ops.insmod(ko)).code), '0');
    // The kernel names the task a stuck transition waits on (LIVEPATCH.md).
    await this.ops.run(`echo 'file kernel/livepatch/transition.c +p' > /sys/kernel/debug/dynamic_debug/control`);
  }

  async status(): Promise<Record<string, BlockerStatus>> {
    return parseStatus(await this.ops.must(`cat ${DEBUGFS}/status`));
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
      const w = await this.control(`start ${name}`);
      s.equal(`start ${name}`, w.ok ? 'accepted' : w.error, 'accepted');
    }
    const sleeping = await this.waitStatus(name, (st) => st.sleeping === 1, 10_000);
    s.equal(`${name} task sleeps in klp_sleeper_block()`, String(sleeping?.sleeping ?? 'none'), '1');
    return sleeping?.pid ?? 0;
  }

  async waitStatus(name: BlockerName, pred: (s: BlockerStatus) => boolean, timeoutMs: number): Promise<BlockerStatus | undefined> {
    const end = Date.now() + timeoutMs;
    let st: BlockerStatus | undefined;
    while (Date.now() < end) {
      st = (await this.status())[name];
      if (st && pred(st)) return st;
      await new Promise((r) => setTimeout(r, 200));
    }
    return st;
  }

  async release(name: BlockerName, s: StepApi) {
    const w = await this.control(`release ${name}`);
    s.equal(`release ${name}`, w.ok ? 'accepted' : w.error, 'accepted');
  }

  /** After a user reader was released: what its read returned. */
  async checkReader(name: 'user-int' | 'user-idle', s: StepApi) {
    const st = await this.waitStatus(name, (x) => x.reads_done >= 1, 10_000);
    s.equal(`${name} read completed`, String(st?.reads_done ?? 0), '1');
    const out = `/tmp/reader-${name}`;
    await this.ops.run(`i=0; while [ ! -s ${out}.rc ] && [ $i -lt 50 ]; do usleep 100000; i=$((i+1)); done`);
    s.equal(`${name} reader exit status`, (await this.ops.run(`cat ${out}.rc`)).stdout.trim(), '0');
    s.equal(`${name} reader stderr`, (await this.ops.run(`cat ${out}.err`)).stdout, '');
    s.equal(`${name} reader data`, (await this.ops.run(`cat ${out}.out`)).stdout, PAYLOAD);
  }

  async insmodPatch(s: StepApi) {
    const r = await this.ops.insmod(`/root/klp_sleeper_lp.ko`);
    s.equal('insmod klp_sleeper_lp.ko', String(r.code), '0');
  }

  file(name: string) {
    return this.ops.patchFile(LP, name);
  }

  /**
   * Confirms the transition stays pending over several of the kernel's
   * one-second retries: samples `transition` in the guest for `seconds`.
   */
  async confirmStuck(s: StepApi, seconds: number, initialState: '0' | '1'): Promise<boolean> {
    const { counts, spanMs } = await this.ops.sample(this.file('transition'), seconds * 1000, 250);
    const readings = [...counts].map(([v, n]) => `${v} x${n}`).join(', ');
    const always = s.equal(`transition readings every 250 ms`, counts.size === 1 && counts.has('1') ? 'always 1' : readings, 'always 1');
    const long = s.equal(`sampled over ${seconds} s of the kernel's 1 s retries (guest clock)`, spanMs >= seconds * 1000 ? `>= ${seconds * 1000} ms` : `${spanMs} ms`, `>= ${seconds * 1000} ms`);
    const blocking = await blockingTasks(this.ops, initialState);
    s.match('tasks blocking the transition (pid comm patch_state function)', formatBlocking(blocking), /klp_sleeper_block/);
    return always && long;
  }

  /** Waits for the transition to finish; on failure the check shows what still blocks. */
  async waitDone(s: StepApi, timeoutMs: number, what: string, initialState: '0' | '1'): Promise<number> {
    const w = await this.ops.waitTransition(LP, '0', timeoutMs);
    const done = w.value === '0' || w.value === 'gone';
    const actual = done ? 'done' : `transition=${w.value}; ${formatBlocking(await blockingTasks(this.ops, initialState))}`;
    s.equal(what, actual, 'done');
    return w.waitedMs;
  }
}
