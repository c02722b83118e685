// Guest-side operations on the livepatch interface, each returning what the
// guest said, so scenarios assert on readings, never on assumptions.
import type { ConsoleEvent, RingBuffer } from './console.js';
import { errorContextFrom } from './command-context.js';
import { bootError, HarnessError, infraError } from '../core/errors.js';
import { delay } from '../core/poll.js';
import { hostMs } from '../core/timeouts.js';
import { q, type ExecResult, type GuestShell } from './ssh.js';

/** What GuestOps watches so that a dead guest fails a command at once. */
export interface VmWatch {
  fatal: Promise<ConsoleEvent>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
  console: RingBuffer;
  options: { consoleLog: string; arch: { name: string } };
}

export const LP_SYSFS = '/sys/kernel/livepatch';

/**
 * Sets the shell variable `name` to the guest's clock in ms from /proc/uptime
 * ("12.34" -> 12340; the "1" prefix keeps "0.09" from reading as octal),
 * naming no other variable but `__` ones (fit for a command run without a subshell).
 */
export const clockInto = (name: string) => `read __u __r < /proc/uptime; ${name}=$(( (\${__u%.*} * 100 + 1\${__u#*.} - 100) * 10 )); `;

/** The guest's clock in a shell: a function `now_ms` that sets $ms. */
export const NOW_MS = `now_ms() { ${clockInto('ms')}}; `;

/** klp-poll's limit on -s (MAX_STOPS in guest/klp-poll.c). */
const MAX_STOPS = 8;

/** What klp-poll (guest/klp-poll.c, in every image) is asked to do. */
export interface PollRequest {
  path: string;
  /** ms of guest clock after the start past which the wait ends (0: one reading). */
  forMs: number;
  everyMs: number;
  /** A second file read at each reading, after `path`. */
  also?: string;
  /** Readings of `path` that end the wait. */
  stopOn?: readonly string[];
  /** A reading of `path` other than this ends the wait. */
  stopUnless?: string;
  /** Only the last reading is printed (a wait; a sample wants every one). */
  lastOnly?: boolean;
  /** A shell expression for the start on the guest clock (ms), e.g. '$t0'; default: when klp-poll starts. */
  t0?: string;
}

/**
 * The guest command that polls a file with klp-poll: readings every
 * `everyMs` of the guest's clock, in the guest, printed once at the end.
 * A shell loop cost about 5 ms of QEMU CPU per reading on ppc64le (the
 * builtins read a byte per system call); klp-poll's readings cost the
 * wakeup alone.
 */
export function pollCommand(r: PollRequest): string {
  if ((r.stopOn?.length ?? 0) > MAX_STOPS) throw new Error(`internal: klp-poll takes at most ${MAX_STOPS} values to stop on`);
  const args = ['-e', String(r.everyMs), '-f', String(r.forMs)];
  if (r.t0) args.push('-t', r.t0);
  if (r.also) args.push('-a', q(r.also));
  for (const v of r.stopOn ?? []) args.push('-s', q(v));
  if (r.stopUnless !== undefined) args.push('-x', q(r.stopUnless));
  if (r.lastOnly) args.push('-l');
  return `klp-poll ${args.join(' ')} ${q(r.path)}`;
}

/** klp-poll's output: every reading printed (all, or the last) and how the wait ended. Readings are single words (sysfs and /proc values). */
export interface PollResult {
  points: SamplePoint[];
  /** The last reading ('' when klp-poll printed no end line). */
  value: string;
  /** From the start to the last reading, guest clock (ms). */
  elapsedMs: number;
  /** The start and the last reading on the guest clock (ms of uptime). */
  t0Ms: number;
  endMs: number;
  /** Whether klp-poll printed its end line (it ran to its end). */
  ended: boolean;
}

/** Reads klp-poll's lines out of a command's stdout (other lines are left to the caller). */
export function parsePoll(stdout: string): PollResult {
  const points: SamplePoint[] = [];
  let end: string[] | undefined;
  for (const l of stdout.split('\n')) {
    const f = l.split(' ');
    if (f[0] === 'p' && f.length >= 3) points.push({ value: f[1]!, atMs: Number(f[2]), ...(f.length > 3 ? { other: f[3] } : {}) });
    else if (f[0] === 'end' && f.length >= 5) end = f;
  }
  return { points, value: end?.[1] ?? '', elapsedMs: Number(end?.[2] ?? NaN), t0Ms: Number(end?.[3] ?? NaN), endMs: Number(end?.[4] ?? NaN), ended: end !== undefined };
}

/**
 * klp-poll's result from a guest command's output. A command that printed
 * no end line (klp-poll missing from the image, killed, or misused) is a
 * guest-command error: no reading to judge the kernel by.
 */
export function pollOutcome(r: ExecResult): PollResult {
  const p = parsePoll(r.stdout);
  if (!p.ended) throw new HarnessError('guest-command', `klp-poll gave no result (exit status ${r.code})`, errorContextFrom(r));
  return p;
}

/** Opens guest/init's FIFO (made here if the image has none) on fd 9 for guestSleep (read-write: the open never blocks). */
export const TICK_OPEN = '[ -p /run/klp-tick ] || mkfifo /run/klp-tick; exec 9<>/run/klp-tick; ';

/**
 * A sleep inside the guest's shell, for a script that ran TICK_OPEN: a read
 * that times out on a FIFO nobody writes. No program is started (usleep
 * was one per poll: under emulation 15-85 ms of QEMU CPU each).
 */
export const guestSleep = (ms: number) => `read -t ${ms / 1000} _ <&9;`;

/**
 * Files that answer only a read from offset 0: the shell's `read` takes a
 * byte per read(2), and a sysctl (/proc/sys) gives its first byte and then
 * end of file ("36864" in /proc/sys/kernel/tainted reads as "3").
 */
export const wholeReadsOnly = (path: string): boolean => path.startsWith('/proc/sys/');

/**
 * Prints a text file with the shell's builtins: `cat` is a fork and an exec
 * (about 20 ms of emulated CPU on x86_64, against about 5 for this). The
 * lines are gathered and printed in one write: each write to the channel
 * is an SSH packet of its own, and a printf per line cost more than the
 * reading (ppc64le, a 917-byte /proc/1/status: 40 ms of QEMU CPU per read
 * line by line, 9 ms in one write, 7 ms by cat). A last line without a
 * newline comes out as it is. When nothing could be read (an empty file,
 * or a read error, which `read` does not tell from the end of the file)
 * `cat` reads it after all, so a file that cannot be read fails the command
 * with cat's error, as before; one that cannot be opened fails it with the
 * shell's. Text only: a NUL byte would be lost. A file that serves only
 * whole reads (wholeReadsOnly) is read by `cat` alone.
 */
export const catScript = (path: string): string =>
  wholeReadsOnly(path)
    ? `cat ${q(path)}`
    : `__a=; __o=; { while IFS= read -r __l; do __a=1; __o="$__o$__l\n"; done; if [ -n "$__l" ]; then __a=1; __o="$__o$__l"; fi; } < ${q(path)} && { printf '%s' "$__o"; [ -n "$__a" ] || cat ${q(path)}; }`;

/** One reading of a sampled file at a moment of the guest's clock (uptime, ms). */
export interface SamplePoint {
  atMs: number;
  value: string;
  /** The reading of the second file sampled at the same moment, if any. */
  other?: string;
}

export interface WriteResult {
  ok: boolean;
  /** The shell's error text for a failed write, e.g. "Invalid argument". */
  error: string;
}

/**
 * Writes `value` to `path` `times` times back to back, each outcome a line:
 * "w ok", or "w " and the shell's error text. Names only `__` variables.
 */
export function writesScript(path: string, value: string, times: number): string {
  return Array.from({ length: times }, (_, i) => `if { echo ${q(value)} > ${q(path)}; } 2>/tmp/klp-w${i}; then echo "w ok"; else read __m < /tmp/klp-w${i}; echo "w $__m"; fi; `).join('');
}

/** The outcomes writesScript printed, in order. */
export function parseWrites(stdout: string): WriteResult[] {
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('w '))
    .map((l) => l.slice(2))
    .map((m) => (m === 'ok' ? { ok: true, error: '' } : { ok: false, error: /write error: (.*)$/.exec(m)?.[1]?.trim() ?? m }));
}

export class GuestOps {
  /** Resolves with the error to report once the kernel panics or QEMU exits. */
  private readonly dead: Promise<HarnessError>;

  constructor(
    readonly ssh: GuestShell,
    private readonly commandTimeoutMs: number,
    private readonly vm?: VmWatch,
  ) {
    this.dead = vm
      ? Promise.race([
          vm.fatal.then((ev) => bootError(`kernel ${ev.kind}: ${ev.line.trim()}`, this.vmContext())),
          vm.exited.then((x) => {
            const ctx = { ...this.vmContext(), exitCode: x.code, signal: x.signal, details: x.stderr.trim() ? `QEMU stderr:\n${x.stderr}` : undefined };
            // A signal from outside (kill) is the host's doing; an exit of its own after a crash is the kernel's.
            return x.signal ? infraError(`QEMU was killed (${x.signal}) while the guest was in use`, ctx) : bootError(`QEMU exited (code ${x.code}) while the guest was in use`, ctx);
          }),
        ])
      : new Promise(() => {});
  }

  private vmContext() {
    return this.vm ? { arch: this.vm.options.arch.name, consoleTail: this.vm.console.last(40), logPath: this.vm.options.consoleLog } : {};
  }

  /**
   * Races a guest operation against the guest dying. When the connection
   * drops because QEMU died, the death is the report, not the SSH error.
   * A timeout gets the console tail.
   */
  private async guard<T>(op: Promise<T>): Promise<T> {
    const deathFirst = this.dead.then((e) => Promise.reject(e));
    deathFirst.catch(() => {});
    try {
      const r = await Promise.race([op, deathFirst]);
      if ((r as { code?: unknown })?.code === null) await this.throwIfDead();
      return r;
    } catch (e) {
      if (!(e instanceof HarnessError && e.kind === 'boot')) await this.throwIfDead();
      if (e instanceof HarnessError && e.kind === 'timeout' && this.vm) Object.assign(e.context, this.vmContext());
      throw e;
    }
  }

  /** Gives QEMU's exit a moment to be noticed, then throws the death report if it died. */
  private async throwIfDead(): Promise<void> {
    if (!this.vm) return;
    const e = await Promise.race([this.dead, delay(hostMs('deathNotice')).then(() => undefined)]);
    if (e) throw e;
  }

  /** Runs a command and fails (as a guest-command error) on a non-zero exit. */
  async must(command: string): Promise<string> {
    return this.mustRun(this.run(command));
  }

  private async mustRun(result: Promise<ExecResult>): Promise<string> {
    const r = await result;
    if (r.code !== 0) {
      throw new HarnessError('guest-command', `guest command failed with status ${r.code}`, errorContextFrom(r));
    }
    return r.stdout;
  }

  run(command: string, timeoutMs = this.commandTimeoutMs): Promise<ExecResult> {
    return this.guard(this.ssh.exec(command, { timeoutMs }));
  }

  /**
   * A command of this class's own making that leaves the guest's shell as it
   * found it and names only `__` variables: the shell runs it without a
   * subshell (about 3 ms of QEMU CPU less a command; see shell-session.ts).
   */
  private own(command: string, timeoutMs = this.commandTimeoutMs): Promise<ExecResult> {
    return this.guard(this.ssh.exec(command, { timeoutMs, noSubshell: true }));
  }

  /** Copies data into a guest file. */
  put(data: Buffer, remotePath: string): Promise<void> {
    return this.guard(this.ssh.put(data, remotePath));
  }

  /** Copies several files into the guest in one command. */
  putAll(files: readonly { data: Buffer; remotePath: string; mode?: number }[]): Promise<void> {
    return this.guard(this.ssh.putAll(files));
  }

  /** A text file's content, trimmed (builtins where the file allows: see catScript). */
  async read(path: string): Promise<string> {
    return (await this.mustRun(this.own(catScript(path)))).trim();
  }

  async exists(path: string): Promise<boolean> {
    return (await this.own(`test -e ${q(path)}`)).code === 0;
  }

  /** Writes a value to a sysfs file; a refused write is a result, not an exception. */
  async write(path: string, value: string): Promise<WriteResult> {
    const r = await this.own(`echo ${q(value)} > ${q(path)}`);
    const error = /write error: (.*)$/m.exec(r.stderr)?.[1]?.trim() ?? r.stderr.trim();
    return { ok: r.code === 0, error: r.code === 0 ? '' : error };
  }

  patchFile(patch: string, file: string): string {
    return `${LP_SYSFS}/${patch}/${file}`;
  }

  /**
   * Waits in the guest (one SSH command, no host polling) until the patch's
   * `transition` reads `want` or the timeout passes. Returns the reading
   * ('gone' once the patch is freed, which ends a wait for '0') and how long
   * the guest waited, by the guest's clock (/proc/uptime, 10 ms resolution).
   * Readings use the shell's `read` builtin: a fork costs ~45 ms under emulation.
   */
  async waitTransition(patch: string, want: '0' | '1', timeoutMs: number): Promise<{ value: string; waitedMs: number; endMs: number }> {
    const stopOn = want === '0' ? ['0', 'gone'] : [want];
    const p = pollOutcome(await this.own(pollCommand({ path: this.patchFile(patch, 'transition'), forMs: timeoutMs, everyMs: 100, stopOn, lastOnly: true }), timeoutMs + this.commandTimeoutMs));
    return { value: p.value, waitedMs: p.elapsedMs, endMs: p.endMs };
  }

  /**
   * Samples a file in the guest every `everyMs` for at least `forMs` (guest
   * clock), and `also` at the same moments. Returns each distinct reading of
   * `path` with its count, the span covered, and every reading with its
   * guest uptime in ms.
   */
  async sample(path: string, forMs: number, everyMs: number, also?: string): Promise<{ counts: Map<string, number>; spanMs: number; points: SamplePoint[] }> {
    const { points, elapsedMs } = pollOutcome(await this.own(pollCommand({ path, forMs, everyMs, also }), forMs + this.commandTimeoutMs));
    const counts = new Map<string, number>();
    for (const p of points) counts.set(p.value, (counts.get(p.value) ?? 0) + 1);
    return { counts, spanMs: elapsedMs, points };
  }

  /**
   * Writes `value` to `path` (`times` times back to back) and, in the same
   * guest command, waits until the patch's `transition` reads 0 or the
   * patch is gone. The guest clock starts just before the first write, so
   * `waitedMs` is the kernel's time from the lever to the end, not SSH's.
   */
  async writeThenWait(path: string, value: string, patch: string, timeoutMs: number, times = 1): Promise<{ writes: WriteResult[]; value: string; waitedMs: number; atMs: number }> {
    const r = await this.own(`${clockInto('__t0')}${writesScript(path, value, times)}${pollCommand({ path: this.patchFile(patch, 'transition'), forMs: timeoutMs, everyMs: 100, stopOn: ['0', 'gone'], lastOnly: true, t0: '$__t0' })}`, timeoutMs + this.commandTimeoutMs);
    const p = pollOutcome(r);
    return { writes: parseWrites(r.stdout), value: p.value, waitedMs: p.elapsedMs, atMs: p.t0Ms };
  }

  /**
   * Waits in the guest (one SSH command) until `path`'s reading $v, 'gone'
   * when it cannot be read, makes the shell test `until` hold, or timeoutMs
   * of guest clock pass. Returns the last reading and the guest's wait.
   */
  async waitFor(path: string, until: { stopOn?: readonly string[]; stopUnless?: string }, timeoutMs: number): Promise<{ value: string; waitedMs: number }> {
    const p = pollOutcome(await this.own(pollCommand({ path, forMs: timeoutMs, everyMs: 100, ...until, lastOnly: true }), timeoutMs + this.commandTimeoutMs));
    return { value: p.value, waitedMs: p.elapsedMs };
  }

  /** Waits in the guest until `path` can no longer be read (a sysfs directory removed); returns whether it went. */
  async waitGone(path: string, timeoutMs: number): Promise<{ gone: boolean; waitedMs: number }> {
    const w = await this.waitFor(path, { stopOn: ['gone'] }, timeoutMs);
    return { gone: w.value === 'gone', waitedMs: w.waitedMs };
  }

  /** Every task's /proc/<pid>/task/<tid>/patch_state, counted by value (builtins only per task). */
  async patchStates(): Promise<Map<string, number>> {
    // One write for all (a write per task is a packet per task).
    const r = await this.own(`__o=; for __t in /proc/[0-9]*/task/[0-9]*; do read __s 2>/dev/null < $__t/patch_state && __o="$__o$__s\n"; done; printf '%s' "$__o"`);
    const counts = new Map<string, number>();
    for (const l of r.stdout.split('\n').filter(Boolean)) counts.set(l.trim(), (counts.get(l.trim()) ?? 0) + 1);
    return counts;
  }

  /** A task's ELF auxiliary vector (/proc/<pid>/auxv), as type -> value; 64-bit guests only. */
  async auxv(pid: number): Promise<Map<number, bigint>> {
    const words = (await this.mustRun(this.own(`od -A n -t x8 -v /proc/${pid}/auxv`))).trim().split(/\s+/).filter(Boolean);
    const out = new Map<number, bigint>();
    for (let i = 0; i + 1 < words.length; i += 2) out.set(Number(BigInt(`0x${words[i]}`)), BigInt(`0x${words[i + 1]}`));
    return out;
  }

  /** Runs a command and reads the guest's uptime right after it (ms), in one round trip. */
  async runTimed(command: string): Promise<ExecResult & { atMs: number }> {
    const r = await this.run(`${command}; rc=$?; read u _ < /proc/uptime; echo "@uptime $u"; exit $rc`);
    const m = /@uptime (\d+)\.(\d+)\s*$/.exec(r.stdout);
    return { ...r, stdout: r.stdout.replace(/@uptime .*\s*$/, ''), atMs: m ? Number(m[1]) * 1000 + Number(m[2]!.padEnd(3, '0').slice(0, 3)) : NaN };
  }

  /** The guest's `uname -m`. */
  async machine(): Promise<string> {
    return (await this.mustRun(this.own('uname -m'))).trim();
  }

  async dmesg(): Promise<string> {
    return this.mustRun(this.own('dmesg'));
  }

  async insmod(path: string): Promise<ExecResult> {
    return this.own(`insmod ${q(path)}`);
  }

  async rmmod(name: string): Promise<ExecResult> {
    return this.own(`rmmod ${q(name)}`);
  }
}
