// Guest-side operations on the livepatch interface, each returning what the
// guest said, so scenarios assert on readings, never on assumptions.
import { errorContextFrom } from './report-helpers.js';
import { HarnessError } from './errors.js';
import { q, type ExecResult, type GuestShell } from './ssh.js';

export const LP_SYSFS = '/sys/kernel/livepatch';

export interface WriteResult {
  ok: boolean;
  /** The shell's error text for a failed write, e.g. "Invalid argument". */
  error: string;
}

export class GuestOps {
  constructor(
    readonly ssh: GuestShell,
    private readonly commandTimeoutMs: number,
  ) {}

  /** Runs a command and fails (as a guest-command error) on a non-zero exit. */
  async must(command: string): Promise<string> {
    const r = await this.ssh.exec(command, { timeoutMs: this.commandTimeoutMs });
    if (r.code !== 0) {
      throw new HarnessError('guest-command', `guest command failed with status ${r.code}`, errorContextFrom(r));
    }
    return r.stdout;
  }

  run(command: string, timeoutMs = this.commandTimeoutMs): Promise<ExecResult> {
    return this.ssh.exec(command, { timeoutMs });
  }

  async read(path: string): Promise<string> {
    return (await this.must(`cat ${q(path)}`)).trim();
  }

  async exists(path: string): Promise<boolean> {
    return (await this.run(`test -e ${q(path)}`)).code === 0;
  }

  /** Writes a value to a sysfs file; a refused write is a result, not an exception. */
  async write(path: string, value: string): Promise<WriteResult> {
    const r = await this.run(`echo ${q(value)} > ${q(path)}`);
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
   * the guest waited.
   */
  async waitTransition(patch: string, want: '0' | '1', timeoutMs: number): Promise<{ value: string; waitedMs: number }> {
    const file = this.patchFile(patch, 'transition');
    const tenths = Math.ceil(timeoutMs / 100);
    const script =
      `i=0; v=$(cat ${q(file)} 2>/dev/null || echo gone); ` +
      `while [ "$v" != ${q(want)} ] && ${want === '0' ? `[ "$v" != gone ] && ` : ''}[ $i -lt ${tenths} ]; do usleep 100000; i=$((i+1)); v=$(cat ${q(file)} 2>/dev/null || echo gone); done; ` +
      `echo "$v $i"`;
    const r = await this.run(script, timeoutMs + this.commandTimeoutMs);
    const [value = '', ticks = '0'] = r.stdout.trim().split(/\s+/);
    return { value, waitedMs: Number(ticks) * 100 };
  }

  async dmesg(): Promise<string> {
    return this.must('dmesg');
  }

  async insmod(path: string): Promise<ExecResult> {
    return this.run(`insmod ${q(path)}`);
  }

  async rmmod(name: string): Promise<ExecResult> {
    return this.run(`rmmod ${q(name)}`);
  }
}
