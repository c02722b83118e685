// Turns guest command results into error context.
import type { ErrorContext } from '../core/errors.js';
import type { ExecResult } from './ssh.js';

export function errorContextFrom(r: ExecResult): ErrorContext {
  return {
    command: r.command,
    exitCode: r.code,
    signal: r.signal,
    durationMs: r.durationMs,
    details: [r.stdout && `stdout:\n${r.stdout}`, r.stderr && `stderr:\n${r.stderr}`].filter(Boolean).join('\n'),
  };
}
