// Progress output. Everywhere: plain timestamped lines (no control
// characters), so the same text reads well in CI and in a log file. On a
// terminal, in addition, a live task list per arch stays below those lines,
// redrawn in place: erased (the lines it drew, from the bottom up) and
// written again.
import { appendFileSync } from 'node:fs';

export type Level = 'quiet' | 'normal' | 'verbose';

export interface Logger {
  info(msg: string): void;
  verbose(msg: string): void;
  /** The current task of one lane (an arch): shown live on a terminal only. */
  status(lane: string, task: string): void;
  /** Also keep every line in this file from now on. */
  tee(path: string): void;
  /** Removes the live task list for good (before handing the terminal to a guest shell). */
  endLive(): void;
}

const stamp = () => new Date().toISOString().slice(11, 19);

const ESC = '\x1b[';
/** Erases the `n` lines above the cursor and the cursor's own, leaving it in column 1. */
const eraseLines = (n: number) => (n ? Array.from({ length: n }, (_, i) => `${ESC}2K${i < n - 1 ? `${ESC}1A` : ''}`).join('') + `${ESC}G` : '');

/**
 * A block of lines kept at the bottom of a terminal: each draw erases the
 * one before. Lines are cut to the terminal's width, never wrapped, so the
 * count of lines to erase is the count drawn.
 */
function liveBlock(out: (s: string) => void, columns: number) {
  let drawn = 0;
  let last = '';
  const fit = (line: string) => (line.length < columns ? line : `${line.slice(0, Math.max(0, columns - 2))}…`);
  return {
    draw(lines: string[]) {
      const text = lines.map(fit).join('\n') + '\n';
      if (text === last) return;
      out(eraseLines(drawn) + text);
      last = text;
      drawn = lines.length + 1;
    },
    clear() {
      out(eraseLines(drawn));
      drawn = 0;
      last = '';
    },
  };
}

export interface LoggerOptions {
  out?: (s: string) => void;
  /** Draw the live task list (default: when stderr is a terminal). */
  live?: boolean;
}

export function createLogger(level: Level = 'normal', outOrOpts: ((s: string) => void) | LoggerOptions = {}): Logger {
  const opts: LoggerOptions = typeof outOrOpts === 'function' ? { out: outOrOpts, live: false } : outOrOpts;
  const out = opts.out ?? ((s: string) => process.stderr.write(s));
  let live = (opts.live ?? process.stderr.isTTY === true) && level !== 'quiet';
  let teePath: string | undefined;
  const lanes = new Map<string, { task: string; since: number }>();
  let timer: NodeJS.Timeout | undefined;
  // The block goes to `out` like the lines, so that tests can read what a terminal would get.
  const area = liveBlock(out, process.stderr.columns || 100);

  // The live block is erased before a log line and drawn again after it.
  const erase = () => area.clear();
  const draw = () => {
    if (!live || lanes.size === 0) return;
    area.draw([...lanes].map(([lane, s]) => `  ${lane.padEnd(8)} ${s.task} (${Math.round((Date.now() - s.since) / 1000)} s)`));
  };
  const redraw = () => draw();
  const emit = (msg: string, show: boolean) => {
    const line = `[${stamp()}] ${msg}\n`;
    if (show) {
      if (live) erase();
      out(line);
      if (live) draw();
    }
    if (teePath) appendFileSync(teePath, line);
  };
  return {
    info: (msg) => emit(msg, level !== 'quiet'),
    verbose: (msg) => emit(msg, level === 'verbose'),
    status: (lane, task) => {
      if (!live) return;
      const prev = lanes.get(lane);
      // Elapsed time counts from when the stage (the text before the last ': ') began.
      const stage = (t: string) => (t.includes(': ') ? t.slice(0, t.lastIndexOf(': ')) : t);
      lanes.set(lane, { task, since: prev && stage(prev.task) === stage(task) ? prev.since : Date.now() });
      if (!timer) {
        timer = setInterval(redraw, 1000);
        timer.unref();
      }
      redraw();
    },
    tee: (path) => {
      teePath = path;
    },
    endLive: () => {
      if (live) erase();
      live = false;
      clearInterval(timer);
      lanes.clear();
    },
  };
}

/** A logger that prints nothing, for tests and library use. */
export const silentLogger: Logger = createLogger('quiet', () => {});
