// The low layer for short host commands: every make, tar, patch and apt call
// goes through here, is printed shell-quoted first, and is logged to a file.
import { createWriteStream, existsSync, type WriteStream } from 'node:fs';
import type { ResultPromise } from 'execa';
import { HarnessError, infraError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { ProcessGroup } from './group.js';
import { setprivMissing, withDeathSignal } from './guards.js';
import { killGroup, prepareSpawn } from './supervisor.js';

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

// execa is loaded at the first command, not at startup: a CLI call that ends
// in bad usage or --help runs no command and should not pay for it.
let execaModule: typeof import('execa') | undefined;
const loadExeca = async () => (execaModule ??= await import('execa'));

/** Runs a command to completion in its own process group; throws a HarnessError on failure. */
export async function run(file: string, args: readonly string[], opts: CommandOptions = {}): Promise<CommandResult> {
  const command = formatCommand(file, args);
  opts.logger?.verbose(`$ ${command}`);
  const started = Date.now();
  const log = opts.logPath ? createWriteStream(opts.logPath, { flags: 'a' }) : undefined;
  log?.write(`$ ${command}\n`);
  // spawn says ENOENT for a missing working directory as for a missing program: tell them apart first.
  if (opts.cwd && !existsSync(opts.cwd)) throw infraError(`could not run ${file}: its working directory ${opts.cwd} does not exist`, { command });
  const { execa } = await loadExeca();
  const child = start(execa, file, args, opts, command);
  const group = new ProcessGroup(child, { name: file, timeoutMs: opts.timeoutMs });
  // The group's timer ends with its leader; a child the command left holding the output is bound by the same deadline.
  let leftBehind = false;
  const deadline =
    opts.timeoutMs === undefined
      ? undefined
      : setTimeout(() => {
          if (group.running) return; // the group's own timeout acts
          leftBehind = true;
          killGroup(child.pid, 'SIGKILL');
        }, opts.timeoutMs);
  if (log || opts.onLine) streamOutput(child, log, opts.onLine);
  const r = await child;
  clearTimeout(deadline);
  await group.exited;
  await new Promise<void>((res) => (log ? log.end(res) : res()));
  const durationMs = Date.now() - started;
  const output = typeof r.all === 'string' ? r.all : '';
  if (r.failed || leftBehind) {
    const failure: CommandFailure = { command, exitCode: r.exitCode, signal: r.signal, timedOut: group.timedOut || r.timedOut || leftBehind, output, durationMs, logPath: opts.logPath };
    throw failedCommand(file, failure, r, opts);
  }
  return { stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? ''), output, durationMs };
}

/** Starts the command under the death signal, leading a process group of its own. */
function start(execa: typeof import('execa').execa, file: string, args: readonly string[], opts: CommandOptions, command: string): ResultPromise {
  // The kernel kills the command if node dies; its own group lets us end what it started.
  const guarded = withDeathSignal(file, args);
  prepareSpawn();
  try {
    return execa(guarded.file, guarded.args, {
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
}

/** Copies the output to the log file as it comes, and hands each whole line to onLine. */
function streamOutput(child: ResultPromise, log: WriteStream | undefined, onLine?: (line: string) => void): void {
  let partial = '';
  child.all?.on('data', (chunk: Buffer) => {
    log?.write(chunk);
    if (!onLine) return;
    const lines = (partial + chunk.toString()).split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) onLine(l);
  });
}

/** The error for a command that failed: a missing tool names its package, else the caller's error or an infrastructure one. */
function failedCommand(file: string, failure: CommandFailure, r: { exitCode?: number; signal?: string; shortMessage?: string }, opts: CommandOptions): HarnessError {
  const { command, output, timedOut } = failure;
  const notStarted = r.exitCode === undefined && !r.signal && !timedOut;
  const setprivFailed = r.exitCode === 127 && setprivMissing(output);
  if (notStarted || setprivFailed) {
    const missing = setprivFailed || (r as { code?: string }).code === 'ENOENT';
    return infraError(missing ? `host tool '${file}' is not installed` : `could not run ${file}: ${r.shortMessage}`, {
      command,
      hint: missing ? 'run scripts/setup-host.sh (as root) to install the host packages' : undefined,
    });
  }
  if (opts.onFailure) return opts.onFailure(failure);
  return infraError(`command failed: ${file}${timedOut ? ' (timed out)' : ''}`, {
    command,
    exitCode: failure.exitCode,
    signal: failure.signal,
    durationMs: failure.durationMs,
    logPath: opts.logPath,
    details: tail(output, 30),
  });
}

/** The last n lines of a text. */
export function tail(text: string, n: number): string {
  const lines = text.trimEnd().split('\n');
  return lines.slice(-n).join('\n');
}
