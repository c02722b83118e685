// Long-lived shells on the guest's SSH connection. An SSH exec of `true`
// costs the guest a channel, a fork and an exec of sh: ~25 ms of emulated
// CPU. Sent to a shell already running, a command costs what its own
// programs cost plus ~1.5 ms, and ~3 ms more for the fork of a subshell
// around it (QEMU CPU per command, x86_64 and ppc64le alike; before, the
// shell took each command's text with `read -r`, a byte per system call,
// and that alone was ~3 ms).
//
// The shell (a plain `sh` reading its commands from the channel) is sent one
// line per command: the command as one single-quoted word given to `eval`,
// in a subshell, with stdin /dev/null, then two printf of a marker and the
// status, on stdout and on stderr; a command is over once both markers came
// and both streams are complete. The subshell keeps what a command does to
// its shell (`exit`, `cd`, variables, fds, traps, a syntax error) out of the
// next one, as `sh -c` did. A command its caller vouches for (`noSubshell`:
// it leaves the shell as it found it and names only `__` variables; the
// harness's own readings, writes and waits) is eval'd in the shell itself,
// without that fork. The marker is a random token the shell only ever
// prints: its two halves are separate words of the line, so no variable, no
// command line (ps) and no output of the command contains it whole.
import { randomBytes } from 'node:crypto';
import type { Client, ClientChannel } from 'ssh2';

/** Where a command's bytes go (CappedOutput). */
export interface Sink {
  push(chunk: Buffer): void;
}

const DISCARD: Sink = { push: () => {} };

/** Shells kept per connection: more concurrent commands than this get an exec channel each. */
export const MAX_SHELLS = 3;

/** Longer commands (scripts, not the harness's readings and writes) get an exec channel of their own, as when the shell read a byte at a time. */
export const SHELL_COMMAND_MAX_BYTES = 3072;

/** Whether a command can go to a shell: NUL cannot be in a shell variable (nor in `sh -c`'s argument). */
export const fitsShell = (command: string) => !command.includes('\0') && Buffer.byteLength(command) <= SHELL_COMMAND_MAX_BYTES;

/** Quotes a value as one shell word (single quotes; a quote inside as '\\''). */
export const q = (s: string | number) => `'${String(s).replace(/'/g, `'\\''`)}'`;

/** Prints the marker and a status on stdout, then on stderr. */
const markLine = (a: string, b: string, status: string) => `printf "%s%s %s\\n" ${a} ${b} ${status}; printf "%s%s %s\\n" ${a} ${b} ${status} >&2`;

/**
 * The shell's line for one command (POSIX sh: busybox ash in the guest, dash
 * in the unit tests). Its status goes to `__st`: a command relying on any
 * other unset variable finds it unset. The text ends with a newline, as a
 * here-document's end needs.
 */
function commandLine(command: string, a: string, b: string, noSubshell = false): string {
  const run = `eval ${q(`${command}\n`)} </dev/null`;
  return `${noSubshell ? run : `(${run})`}; __st=$?; ${markLine(a, b, '"$__st"')}\n`;
}

/** Cuts one stream of the shell at the marker: the bytes before it are the command's, the word after it the status. */
class MarkerScan {
  /** Bytes not yet given to the sink: a marker may start in them. */
  private held = Buffer.alloc(0);
  status?: string;

  constructor(
    private readonly marker: Buffer,
    private readonly sink: Sink,
  ) {}

  /** Takes a chunk; true once the marker's line is complete. What follows it belongs to no command. */
  feed(chunk: Buffer): boolean {
    if (this.status !== undefined) return true;
    const buf = this.held.length ? Buffer.concat([this.held, chunk]) : chunk;
    const at = buf.indexOf(this.marker);
    // Without a marker, all but an end that could be its first bytes is the command's
    // (so a timeout's "stdout so far" misses nothing the command printed).
    const mine = at < 0 ? buf.length - this.partialMarkerAtEnd(buf) : at;
    if (mine) this.sink.push(buf.subarray(0, mine));
    const eol = at < 0 ? -1 : buf.indexOf(0x0a, at + this.marker.length);
    if (eol < 0) {
      this.held = Buffer.from(buf.subarray(mine));
      return false;
    }
    this.status = buf.subarray(at + this.marker.length, eol).toString();
    this.held = Buffer.alloc(0);
    return true;
  }

  /** How many of buf's last bytes are the marker's first ones. */
  private partialMarkerAtEnd(buf: Buffer): number {
    for (let n = Math.min(buf.length, this.marker.length - 1); n > 0; n--) {
      if (buf.subarray(buf.length - n).equals(this.marker.subarray(0, n))) return n;
    }
    return 0;
  }
}

/** The one command a shell runs at a time (or its start-up). */
interface Pending {
  out: MarkerScan;
  err: MarkerScan;
  done(status: string | null): void;
}

/** One guest shell on its own channel; a command at a time. */
export class ShellSession {
  private pending?: Pending;
  private closed = false;
  private readonly marker: Buffer;
  private readonly halves: [string, string];
  /** Whether the shell came up (its first marker pair). */
  private readonly ready: Promise<boolean>;

  private constructor(private readonly ch: ClientChannel) {
    const [a, b] = [randomBytes(8).toString('hex'), randomBytes(8).toString('hex')];
    this.marker = Buffer.from(`${a}${b} `);
    ch.on('data', (d: Buffer) => {
      if (this.pending?.out.feed(d)) this.settle();
    });
    ch.stderr.on('data', (d: Buffer) => {
      if (this.pending?.err.feed(d)) this.settle();
    });
    // A channel error ends in 'close' too; without a listener it would be thrown.
    ch.on('error', () => ch.close());
    ch.on('close', () => {
      this.closed = true;
      this.pending?.done(null);
    });
    this.ready = this.expect(DISCARD, DISCARD).then((s) => s === '-');
    // The SSH server starts the login shell (`-sh`, reading /etc/profile if
    // there is one); the commands go to a plain `sh`, as an exec's `sh -c`
    // did. The login shell parses this whole line before it runs it, marks
    // status "-" and becomes that `sh`, which reads the next line from the
    // channel: nothing more is sent until the mark came.
    ch.write(`${markLine(a, b, '-')}; exec sh\n`);
    this.halves = [a, b];
  }

  /** Opens a shell channel (no PTY: a PTY would merge stderr into stdout and echo input). */
  static open(client: Client): Promise<ShellSession> {
    return new Promise((resolve, reject) => {
      try {
        client.shell(false, (err: Error | undefined, ch: ClientChannel) => (err ? reject(err) : resolve(new ShellSession(ch))));
      } catch (e) {
        reject(e as Error); // 'Not connected'
      }
    });
  }

  /** False once the channel closed: the shell is gone. */
  get usable(): boolean {
    return !this.closed;
  }

  /**
   * Runs a command, its output into the sinks. Resolves with its exit
   * status, or null when the channel closed first (as an exec channel that
   * closes without an exit status). `noSubshell`: see the top of the file.
   */
  async run(command: string, out: Sink, err: Sink, noSubshell = false): Promise<number | null> {
    if (!(await this.ready) || this.closed) return null;
    if (this.pending) throw new Error('internal: two commands in one guest shell');
    const ended = this.expect(out, err);
    this.ch.write(commandLine(command, ...this.halves, noSubshell));
    const status = await ended;
    return status === null ? null : Number(status);
  }

  /** Closes the channel; a command still pending ends now with no status (the channel's own 'close' may come late, or never on a dead connection). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ch.close();
    this.pending?.done(null);
  }

  private expect(out: Sink, err: Sink): Promise<string | null> {
    if (this.closed) return Promise.resolve(null);
    return new Promise((resolve) => {
      this.pending = {
        out: new MarkerScan(this.marker, out),
        err: new MarkerScan(this.marker, err),
        done: (status) => {
          this.pending = undefined;
          resolve(status);
        },
      };
    });
  }

  /** Ends the pending command once both streams reached their marker (stdout's carries the status). */
  private settle(): void {
    const p = this.pending;
    if (p?.out.status !== undefined && p.err.status !== undefined) p.done(p.out.status);
  }
}

/**
 * The connection's shells: a command takes an idle one or opens one (up to
 * MAX_SHELLS at a time), and gives it back when done if it still works.
 */
export class ShellPool {
  private readonly idle: ShellSession[] = [];
  private busy = 0;
  private closed = false;
  /** The server refused a shell session: every command gets an exec channel. */
  refused = false;

  constructor(private readonly client: Client) {}

  /** Whether a command can go to a shell now. */
  canTake(command: string): boolean {
    return !this.refused && !this.closed && this.busy < MAX_SHELLS && fitsShell(command);
  }

  /** A shell of the caller's until given back (a refusal sets `refused` and rejects). */
  async take(): Promise<ShellSession> {
    this.busy++;
    try {
      for (let s = this.idle.pop(); s; s = this.idle.pop()) if (s.usable) return s;
      return await ShellSession.open(this.client);
    } catch (e) {
      this.busy--;
      // ssh2's words when the server answers the shell request with a failure.
      if (/Unable to open shell/.test((e as Error).message)) this.refused = true;
      throw e;
    }
  }

  give(s: ShellSession): void {
    this.busy--;
    if (s.usable && !this.closed) this.idle.push(s);
    else s.close();
  }

  close(): void {
    this.closed = true;
    for (const s of this.idle.splice(0)) s.close();
  }
}
