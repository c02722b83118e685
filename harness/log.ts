// Progress output: plain timestamped lines (no control characters), so the
// same text reads well on a terminal, in CI and in a log file.
import { appendFileSync } from 'node:fs';

export type Level = 'quiet' | 'normal' | 'verbose';

export interface Logger {
  info(msg: string): void;
  verbose(msg: string): void;
  /** Also keep every line in this file from now on. */
  tee(path: string): void;
}

const stamp = () => new Date().toISOString().slice(11, 19);

export function createLogger(level: Level = 'normal', out: (s: string) => void = (s) => process.stderr.write(s)): Logger {
  let teePath: string | undefined;
  const emit = (msg: string, show: boolean) => {
    const line = `[${stamp()}] ${msg}\n`;
    if (show) out(line);
    if (teePath) appendFileSync(teePath, line);
  };
  return {
    info: (msg) => emit(msg, level !== 'quiet'),
    verbose: (msg) => emit(msg, level === 'verbose'),
    tee: (path) => {
      teePath = path;
    },
  };
}

/** A logger that prints nothing, for tests and library use. */
export const silentLogger: Logger = createLogger('quiet', () => {});
