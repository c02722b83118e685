// The low layer for short host commands: every make, tar, patch and apt call
// goes through here, is printed shell-quoted first, and is logged to a file.
import { createWriteStream } from 'node:fs';
import { execa, type ResultPromise } from 'execa';
import { HarnessError, infraError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { ProcessGroup } from './group.js';
import { setprivMissing, withDeathSignal } from './guards.js';

/** Quotes one argv element so that a person can paste the command into a shell. */
export function shellQuote(arg: string): string {
  if (arg === '') return "''";
  if (/^[\w@%+=:,./-]+$/.test(arg)) return arg;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

export const formatCommand = (file: string, args: readonly string[]) =>
  [file, ...args].map(shellQuote).join(' ');

export interface CommandOptions {
  cwd?: string;
  env?: Record<string, string>;
  /** Append stdout and stderr to this file. */
  logPath?: string;
  timeoutMs?: number;
  input?: string;
  logger?: Logger;
  /** Called for each output line (progress). */
  onLine?: (line: string) => void;
  /** Build the error for a non-zero exit; default is an infrastructure error. */
  onFailure?: (r: CommandFailure) => HarnessError;
}

export interface CommandFailure {
  command: string;
  exitCode?: number;
  signal?: string;
  timedOut: boolean;
  output: string;
  durationMs: number;
  logPath?: string;
}

export interface CommandResult {
  stdout: string;
  stderr: string;
  output: string;
  durationMs: number;
}

/** Runs a command to completion in its own process group; throws a HarnessError on failure. */
export async function run(file: string, args: readonly string[], opts: CommandOptions = {}): Promise<CommandResult> {
  const command = formatCommand(file, args);
  opts.logger?.verbose(`$ ${command}`);
  const started = Date.now();
  const log = opts.logPath ? createWriteStream(opts.logPath, { flags: 'a' }) : undefined;
  log?.write(`$ ${command}\n`);
  let child: ResultPromise;
  // The kernel kills the command if node dies; its own group lets us end what it started.
  const guarded = withDeathSignal(file, args);
  try {
    child = execa(guarded.file, guarded.args, {
      cwd: opts.cwd,
      env: opts.env,
      extendEnv: true,
      all: true,
      reject: false,
      // Timeouts, aborts and the harness's exit end the whole group (the process layer), not only this child.
      detached: true,
      input: opts.input,
      stdin: opts.input === undefined ? 'ignore' : undefined,
      maxBuffer: 256 * 1024 * 1024,
      lines: false,
    });
  } catch (e) {
    throw infraError(`could not start ${file}`, { command }, e);
  }
  const group = new ProcessGroup(child, { name: file, timeoutMs: opts.timeoutMs });
  if (log || opts.onLine) {
    let partial = '';
    child.all?.on('data', (chunk: Buffer) => {
      log?.write(chunk);
      if (opts.onLine) {
        const text = partial + chunk.toString();
        const lines = text.split('\n');
        partial = lines.pop() ?? '';
        for (const l of lines) opts.onLine(l);
      }
    });
  }
  const r = await child;
  await group.exited;
  const timedOut = group.timedOut || r.timedOut;
  await new Promise<void>((res) => (log ? log.end(res) : res()));
  const durationMs = Date.now() - started;
  const output = typeof r.all === 'string' ? r.all : '';
  if (r.failed) {
    const failure: CommandFailure = {
      command,
      exitCode: r.exitCode,
      signal: r.signal,
      timedOut,
      output,
      durationMs,
      logPath: opts.logPath,
    };
    const notStarted = r.exitCode === undefined && !r.signal && !timedOut;
    const setprivFailed = r.exitCode === 127 && setprivMissing(output);
    if (notStarted || setprivFailed) {
      const missing = setprivFailed || (r as { code?: string }).code === 'ENOENT';
      throw infraError(missing ? `host tool '${file}' is not installed` : `could not run ${file}: ${r.shortMessage}`, {
        command,
        hint: missing ? 'run scripts/setup-host.sh (as root) to install the host packages' : undefined,
      });
    }
    if (opts.onFailure) throw opts.onFailure(failure);
    throw infraError(`command failed: ${file}${timedOut ? ' (timed out)' : ''}`, {
      command,
      exitCode: r.exitCode,
      signal: r.signal,
      durationMs,
      logPath: opts.logPath,
      details: tail(output, 30),
    });
  }
  return { stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? ''), output, durationMs };
}

/** The last n lines of a text. */
export function tail(text: string, n: number): string {
  const lines = text.trimEnd().split('\n');
  return lines.slice(-n).join('\n');
}
