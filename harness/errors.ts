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

/** Maps an error to the CLI exit code. */
export function exitCodeFor(err: unknown): number {
  if (!(err instanceof HarnessError)) return EXIT.infra;
  switch (err.kind) {
    case 'usage':
      return EXIT.usage;
    case 'config':
    case 'patch':
    case 'build':
    case 'boot':
    case 'timeout': // the guest stopped answering
      return EXIT.kernelFailed;
    case 'assertion':
    case 'guest-command':
      return EXIT.testsFailed;
    case 'interrupted':
      return EXIT.interrupted;
    default:
      return EXIT.infra;
  }
}
