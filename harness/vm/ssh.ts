// SSH to the guest with ssh2: run a command (stdout, stderr, exit status),
// copy a file in. Commands go to long-lived shells on the connection (one
// SSH channel per command cost the guest a fork and an exec of sh each).
// Connecting retries only while the server is not up yet.
// Every command has a deadline (by default the table's, given at connect)
// and its output is capped, so a guest that stops answering or floods
// cannot hold the run forever or exhaust the host.
import pRetry, { AbortError } from 'p-retry';
import type { Client, ClientChannel } from 'ssh2';
import { HarnessError, infraError, timeoutError } from '../core/errors.js';
import { hostMs } from '../core/timeouts.js';
import type { Keys } from '../image/keys.js';
import { writeCpio } from '../image/cpio.js';
import { q, ShellPool, type ShellSession } from './shell-session.js';
import { loadSsh2 } from '../image/keys.js';

export { q };

export interface ExecResult {
  command: string;
  stdout: string;
  stderr: string;
  code: number | null;
  signal?: string;
  durationMs: number;
}

/** Each of a command's stdout and stderr is kept up to this many bytes. */
export const OUTPUT_MAX_BYTES = 4 * 1024 * 1024;

/** Collects a stream's bytes up to a cap; what is over the cap is counted and named in a marker. */
export class CappedOutput {
  private chunks: Buffer[] = [];
  private kept = 0;
  private dropped = 0;
  constructor(private readonly max = OUTPUT_MAX_BYTES) {}
  push(chunk: Buffer) {
    const room = this.max - this.kept;
    if (room > 0) {
      const piece = chunk.length <= room ? chunk : chunk.subarray(0, room);
      this.chunks.push(piece);
      this.kept += piece.length;
    }
    this.dropped += Math.max(0, chunk.length - Math.max(room, 0));
  }
  /** The text (decoded once, so a character split across chunks stays whole), with a marker when cut. */
  text(): string {
    const s = Buffer.concat(this.chunks).toString('utf8');
    return this.dropped ? `${s}\n[truncated ${this.dropped} bytes]\n` : s;
  }
}

/** How a command's run ended: its exit status (null: the channel closed first) and the signal that ended it, if any. */
interface Ended {
  code: number | null;
  signal?: string;
}

/** A command under way, and a way to give up on it (its channel or shell is closed). */
interface Attempt {
  ended: Promise<Ended>;
  abandon(): void;
}

/** Deadlines for guest commands, from the timeout table (scaled per arch). */
export interface CommandDeadlines {
  /** A command given no timeout of its own. */
  commandMs: number;
  /** Copying a file in. */
  copyMs: number;
}

/** Errors that mean "the server is not listening yet", the only ones worth a retry. */
export function isNotUpYet(err: unknown): boolean {
  const e = err as { code?: string; message?: string; level?: string };
  if (e.code && ['ECONNREFUSED', 'ECONNRESET', 'EPIPE'].includes(e.code)) return true;
  return /Connection lost before handshake|Timed out while waiting for handshake|read ECONNRESET|socket hang up/.test(e.message ?? '');
}

export class GuestShell {
  /** Commands run on this connection so far (a profile of a scenario's guest work: each is at least a fork in the guest). */
  commands = 0;
  private readonly shells: ShellPool;

  private constructor(
    private readonly client: Client,
    readonly port: number,
    readonly deadlines: CommandDeadlines,
  ) {
    this.shells = new ShellPool(client);
  }

  /**
   * Connects, retrying while the server is not up. `abort` resolves (with a
   * reason) when waiting is pointless: the VM died or panicked.
   */
  static async connect(opts: { port: number; keys: Keys; deadlineMs: number; commands: CommandDeadlines; abort?: Promise<string> }): Promise<GuestShell> {
    let aborted: string | undefined;
    opts.abort?.then((why) => (aborted = why));
    const started = Date.now();
    const attempt = () =>
      new Promise<Client>((resolve, reject) => {
        const c = new (loadSsh2().Client)();
        c.on('ready', () => resolve(c));
        c.on('error', (e) => {
          c.end();
          reject(e);
        });
        // A connection closed before 'ready' without an 'error' (a server that goes away mid-handshake)
        // would leave this attempt pending for ever: it counts as not up yet (once settled, this is a no-op).
        c.on('close', () => reject(new Error('Connection lost before handshake')));
        c.connect({
          host: '127.0.0.1',
          port: opts.port,
          username: 'root',
          privateKey: opts.keys.clientPrivate,
          readyTimeout: hostMs('sshHandshake'),
          hostVerifier: (key: Buffer) => key.equals(opts.keys.hostPublicBlob),
        });
      });
    const client = await pRetry(
      async () => {
        if (aborted) throw new AbortError(aborted);
        try {
          return await attempt();
        } catch (e) {
          if (aborted) throw new AbortError(aborted);
          if (!isNotUpYet(e)) throw new AbortError(e as Error);
          throw e;
        }
      },
      {
        retries: 1000,
        minTimeout: 150,
        maxTimeout: 500,
        factor: 1.3,
        shouldRetry: () => Date.now() - started < opts.deadlineMs && !aborted,
      },
    ).catch((e: Error) => {
      if (aborted) throw new HarnessError('boot', aborted);
      if (/verification failed|Host denied/i.test(e.message)) {
        throw infraError('the guest presented a host key the harness did not make', { hint: 'rebuild the image: --rebuild image' }, e);
      }
      if (/authentication methods failed/i.test(e.message)) {
        throw infraError('the guest refused the harness client key', { hint: 'rebuild the image: --rebuild image' }, e);
      }
      if (isNotUpYet(e)) throw timeoutError(`no SSH from the guest within ${Math.round(opts.deadlineMs / 1000)} s`, { details: e.message });
      throw infraError(`SSH connection failed: ${e.message}`, {}, e);
    });
    return new GuestShell(client, opts.port, opts.commands);
  }

  /**
   * Runs a shell command in the guest. Never throws for a non-zero exit
   * status; throws a timeout error naming the command when it does not end
   * within timeoutMs (default: the connection's command deadline).
   * The command runs in one of the connection's long-lived shells (see
   * shell-session.ts) with stdin /dev/null; with `stdin`, or when the shells
   * are all busy, on an exec channel of its own that gets `stdin` then EOF.
   * `noSubshell`: the caller vouches that the command leaves a shell as it
   * found it (no exit, cd, exec, trap or set; only `__` variables), so a
   * shell runs it without a subshell's fork (shell-session.ts).
   */
  exec(command: string, opts: { timeoutMs?: number; stdin?: Buffer | string; noSubshell?: boolean } = {}): Promise<ExecResult> {
    const started = Date.now();
    const timeoutMs = opts.timeoutMs ?? this.deadlines.commandMs;
    this.commands++;
    const stdout = new CappedOutput();
    const stderr = new CappedOutput();
    const attempt = opts.stdin === undefined && this.shells.canTake(command) ? this.inShell(command, stdout, stderr, opts.noSubshell ?? false) : this.onChannel(command, opts.stdin, stdout, stderr);
    return new Promise((resolve, reject) => {
      // The timer covers opening the channel too: a frozen guest never answers that.
      const timer = setTimeout(() => {
        attempt.abandon();
        const shown = command.length > 200 ? `${command.slice(0, 200)}...` : command;
        reject(
          timeoutError(`guest command '${shown}' did not finish within ${(timeoutMs / 1000).toFixed(1)} s`, {
            command,
            durationMs: Date.now() - started,
            details: `stdout so far:\n${stdout.text()}\nstderr so far:\n${stderr.text()}`,
          }),
        );
      }, timeoutMs);
      attempt.ended.then(
        ({ code, signal }) => {
          clearTimeout(timer);
          resolve({ command, stdout: stdout.text(), stderr: stderr.text(), code, signal, durationMs: Date.now() - started });
        },
        (e: unknown) => {
          clearTimeout(timer);
          reject(e);
        },
      );
    });
  }

  /** The command on an exec channel of its own (the guest's `sh -c`), `stdin` written to it, then EOF. */
  private onChannel(command: string, stdin: Buffer | string | undefined, stdout: CappedOutput, stderr: CappedOutput): Attempt {
    let channel: ClientChannel | undefined;
    let abandoned = false;
    const ended = new Promise<Ended>((resolve, reject) => {
      this.client.exec(command, (err: Error | undefined, ch: ClientChannel) => {
        if (err) return reject(infraError(`could not start a guest command: ${err.message}`, { command }, err));
        channel = ch;
        // Timed out before the channel opened: the command is not started late.
        if (abandoned) return ch.close();
        let code: number | null = null;
        let signal: string | undefined;
        ch.on('data', (d: Buffer) => stdout.push(d));
        ch.stderr.on('data', (d: Buffer) => stderr.push(d));
        ch.on('exit', (c: number | null, sig?: string) => {
          code = c;
          signal = sig;
        });
        ch.on('close', () => resolve({ code, signal }));
        if (stdin !== undefined) ch.end(stdin);
        else ch.end();
      });
    });
    return {
      ended,
      abandon: () => {
        abandoned = true;
        channel?.close();
      },
    };
  }

  /**
   * The command in one of the connection's shells. A server that refuses
   * shell sessions gets an exec channel per command instead (the tests'
   * stand-in servers do; the guest's dropbear does not).
   */
  private inShell(command: string, stdout: CappedOutput, stderr: CappedOutput, noSubshell: boolean): Attempt {
    let abandoned = false;
    let shell: ShellSession | undefined;
    let instead: Attempt | undefined;
    const run = async (): Promise<Ended> => {
      try {
        shell = await this.shells.take();
      } catch (e) {
        if (!this.shells.refused) throw infraError(`could not start a guest command: ${(e as Error).message}`, { command }, e);
        instead = this.onChannel(command, undefined, stdout, stderr);
        if (abandoned) instead.abandon();
        return instead.ended;
      }
      // Timed out while the shell opened: that shell goes, as a timed-out one does.
      if (abandoned) shell.close();
      try {
        return { code: await shell.run(command, stdout, stderr, noSubshell) };
      } finally {
        this.shells.give(shell);
      }
    };
    return {
      ended: run(),
      // The shell is discarded: its subshell may still run, and the next command needs a shell that waits for nothing.
      abandon: () => {
        abandoned = true;
        shell?.close();
        instead?.abandon();
      },
    };
  }

  /** Copies data into a guest file (through `cat`, so no SFTP server is needed). */
  async put(data: Buffer, remotePath: string, mode = 0o644): Promise<void> {
    const r = await this.exec(`cat > ${q(remotePath)} && chmod ${mode.toString(8)} ${q(remotePath)} && wc -c < ${q(remotePath)}`, {
      stdin: data,
      timeoutMs: this.deadlines.copyMs,
    });
    if (r.code !== 0 || Number(r.stdout.trim()) !== data.length) {
      throw infraError(`copying ${data.length} bytes to ${remotePath} failed`, { details: `${r.stdout}${r.stderr}` });
    }
  }

  /**
   * Copies several files in one command: a cpio archive unpacked by the
   * guest's busybox, then one `stat` of them all (a guest fork costs tens of
   * milliseconds of emulated CPU; `put` per file took three each).
   */
  async putAll(files: readonly { data: Buffer; remotePath: string; mode?: number }[]): Promise<void> {
    if (!files.length) return;
    const archive = writeCpio(files.map((f) => ({ type: 'file', path: f.remotePath, data: f.data, mode: f.mode ?? 0o644 })));
    const paths = files.map((f) => q(f.remotePath)).join(' ');
    const r = await this.exec(`cd / && cpio -i -d -u 2>/dev/null && stat -c '%s %n' ${paths}`, { stdin: archive, timeoutMs: this.deadlines.copyMs });
    const sizes = new Map(r.stdout.trim().split('\n').map((l) => [l.slice(l.indexOf(' ') + 1), Number(l.split(' ')[0])] as const));
    const wrong = files.filter((f) => sizes.get(f.remotePath) !== f.data.length);
    if (r.code !== 0 || wrong.length) {
      throw infraError(`copying ${files.length} file(s) into the guest failed: ${wrong.map((f) => `${f.remotePath} (${f.data.length} bytes)`).join(', ') || `exit status ${r.code}`}`, { details: `${r.stdout}${r.stderr}` });
    }
  }

  /**
   * An interactive shell on a real PTY, wired to this process's terminal
   * (raw mode: line editing and Ctrl-C belong to the guest). Resolves when
   * the guest shell exits.
   */
  interactive(input: NodeJS.ReadStream = process.stdin, output: NodeJS.WriteStream = process.stdout): Promise<void> {
    return new Promise((resolve, reject) => {
      const size = { rows: output.rows || 24, cols: output.columns || 80 };
      this.client.shell({ term: process.env.TERM || 'xterm', ...size }, (err, stream) => {
        if (err) return reject(infraError(`could not open a guest shell: ${err.message}`, {}, err));
        const raw = input.isTTY;
        if (raw) input.setRawMode(true);
        input.resume();
        input.pipe(stream);
        stream.pipe(output, { end: false });
        stream.stderr.pipe(process.stderr, { end: false });
        const onResize = () => stream.setWindow(output.rows || 24, output.columns || 80, 0, 0);
        output.on('resize', onResize);
        stream.on('close', () => {
          output.off('resize', onResize);
          input.unpipe(stream);
          if (raw) input.setRawMode(false);
          input.pause();
          resolve();
        });
      });
    });
  }

  /** Ends the connection, its shells and any command still running on it. */
  close(): void {
    this.shells.close();
    this.client.end();
  }
}

/** A command a person can paste into a second terminal to reach the guest. */
export function sshCommand(keys: { clientPrivatePath: string; knownHostsPath: string }, port: number): string {
  return `ssh -i ${keys.clientPrivatePath} -p ${port} -o UserKnownHostsFile=${keys.knownHostsPath} -o HostKeyAlias=klp-harness-guest root@127.0.0.1`;
}
