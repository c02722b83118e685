// The runner behind `npm test`: each test file runs as a plain `node` process,
// `--jobs` of them at once, and their TAP is printed as one TAP stream, a
// subtest per file (the shape tap's own runner prints, which .ci/summary.mjs
// reads). Why not tap's runner: it starts every file with
// `--import @tapjs/processinfo`, module-loading hooks that on Node 20 run in a
// worker thread, about 0.7 s of CPU per file before its first test, and the
// unit files took 134 s of wall and 208 s of CPU under it against 89 s and
// 120 s as plain node (2 cores; coverage, the hooks' purpose, is off anyway).
//
// A file passes when its process exits 0 after printing its plan and its
// totals with no failure; a file that crashes, times out (`--timeout`, also
// given to tap inside the file as TAP_TIMEOUT, so it names the test that was
// pending) or prints no plan fails. Files start longest first, by the times
// the last run took (kept in the harness cache), so that the longest file
// does not start last. Each file's process group is ended on a timeout or
// when the runner is interrupted (exit 130) or killed (the harness's process
// layer).
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { cacheRoot, writeFileAtomic } from '../harness/core/cache.js';
import { spawnGroup } from '../harness/proc/group.js';
import { interruptReason } from '../harness/proc/supervisor.js';

interface Options {
  jobs: number;
  timeoutS: number;
  /** After the timeout, how long tap inside the file has to report it before its group is ended. */
  graceS: number;
  paths: string[];
}

interface Counts {
  total: number;
  pass: number;
  fail: number;
  skip: number;
  todo: number;
}

interface FileResult {
  file: string;
  ok: boolean;
  ms: number;
  counts: Counts;
  /** Child TAP without its version line. */
  tap: string;
  /** Why a file failed when its own TAP does not say (exit status, timeout, no plan). */
  why?: string;
}

function usage(message: string): never {
  process.stderr.write(`run-tests: ${message}\nusage: node dist/scripts/run-tests.js [--jobs N] [--timeout SECONDS] [--grace SECONDS] DIR|FILE...\n`);
  process.exit(4);
}

export function parseArgs(argv: readonly string[]): Options {
  const o: Options = { jobs: 2, timeoutS: 300, graceS: 15, paths: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [flag, inline] = a.startsWith('--') && a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      const n = Number(v);
      if (!v || !Number.isInteger(n) || n < 1) usage(`${flag} needs a whole number of at least 1, got '${v ?? ''}'`);
      return n;
    };
    if (flag === '--jobs') o.jobs = value();
    else if (flag === '--timeout') o.timeoutS = value();
    else if (flag === '--grace') o.graceS = value();
    else if (a.startsWith('-')) usage(`unknown option '${a}'`);
    else o.paths.push(a);
  }
  if (!o.paths.length) usage('no test directory or file given');
  return o;
}

/** The test files under each path (a directory: every `*.test.js` below it), in name order. */
export function testFiles(paths: readonly string[]): string[] {
  const out: string[] = [];
  const walk = (p: string) => {
    if (statSync(p).isDirectory()) {
      for (const e of readdirSync(p).sort()) walk(join(p, e));
    } else if (p.endsWith('.test.js')) out.push(p);
  };
  for (const p of paths) {
    if (!existsSync(p)) usage(`${p} does not exist (run \`npm run build\` first?)`);
    const before = out.length;
    walk(p);
    if (out.length === before) usage(`no *.test.js file in ${p}`);
  }
  return [...new Set(out)];
}

/** Longest first by the last run's times; files with no time yet before them all (they may be long). */
export function longestFirst(files: readonly string[], lastMs: Readonly<Record<string, number>>): string[] {
  const t = (f: string) => lastMs[f] ?? Infinity;
  return [...files].sort((a, b) => t(b) - t(a) || a.localeCompare(b));
}

/** The totals line tap prints at the end of a file: `# { total: 12, pass: 11, fail: 1 }`. */
export function parseCounts(tap: string): Counts | undefined {
  const m = /^# \{ (total: \d+(?:, \w+: \d+)*) \}$/m.exec(tap);
  if (!m) return undefined;
  const c: Counts = { total: 0, pass: 0, fail: 0, skip: 0, todo: 0 };
  for (const [, k, v] of m[1]!.matchAll(/(\w+): (\d+)/g)) if (k! in c) c[k as keyof Counts] = Number(v);
  return c;
}

/** Whether a file's run counts as passed, and if not, why (beyond its own `not ok` lines). */
export function judge(tap: string, code: number | null, signal: string | null, timedOut: boolean, timeoutS: number): { ok: boolean; counts: Counts; why?: string } {
  const counts = parseCounts(tap);
  const plan = /^1\.\.\d+/m.test(tap);
  // The first that holds is the reason.
  const reasons: [boolean, () => string][] = [
    [timedOut, () => `did not finish within ${timeoutS} s and the grace after it: its process group was ended`],
    [!!signal, () => `ended by ${signal}`],
    [!!counts?.fail, () => `${counts!.fail} failed`],
    [code !== 0, () => `exited ${code ?? 'without a status'}`],
    [!plan, () => 'printed no plan (it ended before its tests did, or is no tap test)'],
    [!counts, () => 'printed no totals (it ended before its tests did)'],
  ];
  const why = reasons.find(([holds]) => holds)?.[1]();
  const c = counts ?? { total: 0, pass: 0, fail: 0, skip: 0, todo: 0 };
  // A file that failed without a failure of its own counted (a crash, a timeout) counts one.
  if (why && !c.fail) {
    c.fail = 1;
    c.total += 1;
  }
  return { ok: !why, counts: c, why };
}

/** The TAP block for one file: its output as a subtest, then its line. */
export function fileBlock(r: FileResult, n: number): string {
  const body = r.tap
    .replace(/\n+$/, '')
    .split('\n')
    .map((l) => (l ? `    ${l}` : ''))
    .join('\n');
  const diag = r.why && !r.ok ? `\n  ---\n  reason: ${JSON.stringify(r.why)}\n  ...` : '';
  return `# Subtest: ${r.file}\n${body}\n${r.ok ? 'ok' : 'not ok'} ${n} - ${r.file} # time=${r.ms}ms${diag}\n\n`;
}

const timesFile = () => join(cacheRoot(), 'test-times.json');

function readTimes(): Record<string, number> {
  try {
    return JSON.parse(readFileSync(timesFile(), 'utf8')) as Record<string, number>;
  } catch {
    return {};
  }
}

function saveTimes(last: Readonly<Record<string, number>>, results: readonly FileResult[]): void {
  try {
    writeFileAtomic(timesFile(), JSON.stringify({ ...last, ...Object.fromEntries(results.filter((r) => r.ok).map((r) => [r.file, r.ms])) }, null, 1));
  } catch {
    // Only the order of the next run depends on it.
  }
}

/**
 * A file's stderr (its logs, a crash's stack) goes on at once, each line
 * prefixed with the file's name: two files run at once, and their blocks on
 * stdout come only when each ends.
 */
function prefixLines(stream: NodeJS.ReadableStream, prefix: string): void {
  let partial = '';
  stream.setEncoding('utf8');
  stream.on('data', (d: string) => {
    const lines = (partial + d).split('\n');
    partial = lines.pop()!;
    if (lines.length) process.stderr.write(lines.map((l) => `${prefix}${l}\n`).join(''));
  });
  stream.on('end', () => partial && process.stderr.write(`${prefix}${partial}\n`));
}

/**
 * The environment of a test file: ours, with tap's timeout; without a tap
 * runner's child id (tap prints a file's totals only without one, and the
 * runner may itself run under tap, in its own unit test).
 */
function fileEnv(o: Options): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, TAP_TIMEOUT: String(o.timeoutS) };
  delete env.TAP_CHILD_ID;
  delete env.TAP_JOB_ID;
  return env;
}

async function runFile(file: string, o: Options): Promise<FileResult> {
  const started = Date.now();
  let out = '';
  const { child, group } = spawnGroup(process.execPath, ['--enable-source-maps', file], {
    name: `test ${file}`,
    timeoutMs: (o.timeoutS + o.graceS) * 1000,
    killAfterMs: Math.min(o.graceS, 5) * 1000,
    spawn: { stdio: ['ignore', 'pipe', 'pipe'], env: fileEnv(o) },
  });
  prefixLines(child.stderr!, `${basename(file, '.test.js')}: `);
  const ended = new Promise<void>((resolve) => child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d)).once('close', resolve));
  const exit = await group.exited;
  // The exit can come before the last of the output is read; a process the file left behind
  // may hold the pipe open, so the wait for its end is bounded.
  await Promise.race([ended, new Promise((resolve) => setTimeout(resolve, 5000).unref())]);
  const tap = out.replace(/^TAP version \d+\n/, '');
  return { file, ms: Date.now() - started, tap, ...judge(tap, exit.code, exit.signal, group.timedOut, o.timeoutS) };
}

export async function main(argv: readonly string[]): Promise<number> {
  const o = parseArgs(argv);
  const started = Date.now();
  const lastMs = readTimes();
  const files = longestFirst(testFiles(o.paths).map((f) => relative(process.cwd(), f) || f), lastMs);
  process.stdout.write(`TAP version 14\n1..${files.length}\n`);
  const results: FileResult[] = [];
  let next = 0;
  const worker = async () => {
    while (next < files.length && !interruptReason()) {
      const i = next++;
      const r = await runFile(files[i]!, o);
      results.push(r);
      process.stdout.write(fileBlock(r, results.length));
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.jobs, files.length) }, worker));
  saveTimes(lastMs, results);
  const sum = (k: keyof Counts) => results.reduce((s, r) => s + r.counts[k], 0);
  const parts = (['pass', 'fail', 'skip', 'todo'] as const).filter((k) => k === 'pass' || sum(k)).map((k) => `, ${k}: ${sum(k)}`);
  process.stdout.write(`# { total: ${sum('total')}${parts.join('')} }\n# time=${Date.now() - started}ms\n`);
  const failed = results.filter((r) => !r.ok);
  for (const r of failed) process.stdout.write(`# failed: ${r.file}: ${r.why}\n`);
  const stopped = interruptReason();
  if (stopped) {
    process.stdout.write(`# interrupted by ${stopped}: ${files.length - results.length} of ${files.length} files not run\n`);
    return 130;
  }
  return failed.length ? 1 : 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) process.exitCode = await main(process.argv.slice(2));
