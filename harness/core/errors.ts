// Error kinds. Each tells who is at fault (kernel under test, harness/host,
// user input) and carries the context a person needs to act on it.

export type ErrorKind =
  | 'usage'
  | 'config'
  | 'patch'
  | 'build'
  | 'boot'
  | 'infra'
  | 'guest-command'
  | 'timeout'
  | 'assertion'
  | 'interrupted';

/** Exit codes of the command-line tool, documented in the README. */
export const EXIT = {
  ok: 0,
  testsFailed: 1,
  kernelFailed: 2, // the kernel (or patches/config) did not build or boot
  infra: 3, // harness or host problem
  usage: 4,
  interrupted: 130,
} as const;

export interface ErrorContext {
  arch?: string;
  command?: string;
  exitCode?: number | null;
  signal?: string | null;
  durationMs?: number;
  logPath?: string;
  consoleTail?: string[];
  details?: string;
  hint?: string;
}

export class HarnessError extends Error {
  readonly kind: ErrorKind;
  readonly context: ErrorContext;
  constructor(kind: ErrorKind, message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.kind = kind;
    this.context = context;
    this.name = `${kind[0]!.toUpperCase()}${kind.slice(1).replace(/-(\w)/g, (_, c: string) => c.toUpperCase())}Error`;
  }

  /** A multi-line report for people: message, context and what to do. */
  report(): string {
    const c = this.context;
    const lines = [`${this.name}: ${this.message}`];
    if (c.arch) lines.push(`  arch: ${c.arch}`);
    if (c.command) lines.push(`  command: ${c.command}`);
    if (c.exitCode !== undefined && c.exitCode !== null) lines.push(`  exit code: ${c.exitCode}`);
    if (c.signal) lines.push(`  signal: ${c.signal}`);
    if (c.durationMs !== undefined) lines.push(`  after: ${(c.durationMs / 1000).toFixed(1)} s`);
    if (c.details) lines.push(...c.details.trimEnd().split('\n').map((l) => `  | ${l}`));
    if (c.consoleTail?.length) {
      lines.push('  last console lines:');
      lines.push(...c.consoleTail.map((l) => `  > ${l}`));
    }
    if (c.logPath) lines.push(`  full log: ${c.logPath}`);
    if (c.hint) lines.push(`  what to do: ${c.hint}`);
    return lines.join('\n');
  }
}

export const usageError = (msg: string, ctx?: ErrorContext) => new HarnessError('usage', msg, ctx);
export const configError = (msg: string, ctx?: ErrorContext) => new HarnessError('config', msg, ctx);
export const patchError = (msg: string, ctx?: ErrorContext) => new HarnessError('patch', msg, ctx);
export const buildError = (msg: string, ctx?: ErrorContext) => new HarnessError('build', msg, ctx);
export const bootError = (msg: string, ctx?: ErrorContext) => new HarnessError('boot', msg, ctx);
export const infraError = (msg: string, ctx?: ErrorContext, cause?: unknown) =>
  new HarnessError('infra', msg, ctx, { cause });
export const timeoutError = (msg: string, ctx?: ErrorContext) => new HarnessError('timeout', msg, ctx);

/** What a failed scenario's report says failed when it was not one of its checks. */
export type Fault = 'kernel' | 'infra' | 'usage';

/**
 * The one table of what each kind of error means: the CLI's exit code, and
 * whose fault it is in a scenario report (JUnit <error> rather than
 * <failure>); a kind without a fault is a test failure (a reading from the
 * guest was not what was expected).
 */
export const ERROR_KINDS: Readonly<Record<ErrorKind, { exit: number; fault?: Fault }>> = {
  // Bad input found only in a scenario (a user's workload that fails at once): still the user's to fix.
  usage: { exit: EXIT.usage, fault: 'usage' },
  config: { exit: EXIT.kernelFailed, fault: 'kernel' },
  patch: { exit: EXIT.kernelFailed, fault: 'kernel' },
  build: { exit: EXIT.kernelFailed, fault: 'kernel' },
  boot: { exit: EXIT.kernelFailed, fault: 'kernel' },
  // The guest stopped answering within its deadline.
  timeout: { exit: EXIT.kernelFailed, fault: 'kernel' },
  infra: { exit: EXIT.infra, fault: 'infra' },
  'guest-command': { exit: EXIT.testsFailed },
  assertion: { exit: EXIT.testsFailed },
  interrupted: { exit: EXIT.interrupted, fault: 'infra' },
};

/** Maps an error to the CLI exit code; anything that is not ours is a harness problem. */
export function exitCodeFor(err: unknown): number {
  return err instanceof HarnessError ? ERROR_KINDS[err.kind].exit : EXIT.infra;
}

/** Whose fault an error in a scenario is; undefined for a test failure. */
export function faultOf(err: unknown): Fault | undefined {
  return err instanceof HarnessError ? ERROR_KINDS[err.kind].fault : 'infra';
}

/** The exit code a scenario's outcome asks for. */
export function exitForOutcome(ok: boolean, fault: Fault | undefined): number {
  if (ok) return EXIT.ok;
  return fault === 'kernel' ? EXIT.kernelFailed : fault === 'infra' ? EXIT.infra : fault === 'usage' ? EXIT.usage : EXIT.testsFailed;
}

/** What a person reads about any error: a HarnessError's full report, else the stack. */
export function describeError(e: unknown): string {
  return e instanceof HarnessError ? e.report() : String((e as Error)?.stack ?? e);
}
