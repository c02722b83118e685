// Kernel config and build, out of tree (make O=...), one cache entry per
// (patched tree, fragments, toolchain). The only place that runs kbuild for
// the kernel itself.
import { existsSync, mkdirSync, readFileSync, writeFileSync, appendFileSync, rmSync, readdirSync, readlinkSync, realpathSync, renameSync, statSync, symlinkSync, utimesSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { basename, dirname, join } from 'node:path';
import type { ArchRecord } from '../core/arch.js';
import { hashOf, MARKER, readValidMarker, writeMarker, invalidate, writeFileAtomic } from '../core/cache.js';
import { onCleanup } from '../proc/supervisor.js';
import { entryLock, useEntry, withShared } from '../core/lock.js';
import { seedCandidates, type SeedInfo } from './source.js';
import { buildError, infraError, usageError } from '../core/errors.js';
import { withoutOptions } from './kernels.js';
import { run, formatCommand } from '../proc/exec.js';
import { checkConfig, parseConfig } from './kconfig.js';
import { onPath } from '../core/preflight.js';
import type { Logger } from '../core/log.js';

export interface BuildRequest {
  arch: ArchRecord;
  tree: string;
  treeKey: string;
  /** Identity of the series applied to the tree, and the tree's generation (see prepareSource). */
  series: string;
  generation: string;
  kconfigDir: string;
  /** More fragments, appended after common.config and <arch>.config (e.g. kconfigs/debug.config). */
  extraFragments?: string[];
  /** Options this kernel does not have (from its kernel record), left out of the fragments, with why. */
  absentOptions?: { option: string; why: string }[];
  cacheDir: string;
  logger: Logger;
  rebuild?: boolean;
  jobs?: number;
}

export interface BuildResult {
  buildDir: string;
  image: string;
  /** Identity of this exact kernel: output tree + series applied. */
  key: string;
  reused: boolean;
  durationMs: number;
  logPath: string;
  makeCommand: string;
}

export function makeArgs(arch: ArchRecord, tree: string, buildDir: string, ccache = false): string[] {
  const args = ['-C', tree, `O=${buildDir}`, `ARCH=${arch.linuxArch}`];
  if (arch.crossCompile) args.push(`CROSS_COMPILE=${arch.crossCompile}`);
  if (ccache) args.push(`CC=ccache ${arch.crossCompile}gcc`, 'HOSTCC=ccache gcc');
  return args;
}

/** ccache is used when installed, unless KLP_HARNESS_CCACHE=0. */
export const useCcache = () => process.env.KLP_HARNESS_CCACHE !== '0' && onPath('ccache');

async function compilerVersion(arch: ArchRecord): Promise<string> {
  const r = await run(arch.compiler.tool, ['--version']).catch(() => {
    // A missing (cross) compiler is the host's problem, not the kernel's.
    throw infraError(`compiler ${arch.compiler.tool} for ${arch.name} is not installed`, {
      arch: arch.name,
      hint: `install the Debian package ${arch.compiler.debPackage} (scripts/setup-host.sh does)`,
    });
  });
  return r.stdout.split('\n')[0] ?? '';
}

/** Error lines worth showing from a failed build log. */
export function compilerErrors(log: string, max = 25): string[] {
  const lines = log.split('\n');
  const hits = lines.filter((l) => /\berror\b|\*\*\*|undefined reference|Error \d+/i.test(l));
  return hits.slice(0, max);
}

/** What one build is made of: its inputs read once, its directory and its make command. */
interface BuildPlan {
  req: BuildRequest;
  started: number;
  fragments: string[];
  fragmentText: string;
  cc: string;
  key: string;
  buildDir: string;
  logPath: string;
  ccache: boolean;
  makeArgs: string[];
  jobs: number;
  makeCommand: string;
}

async function planBuild(req: BuildRequest): Promise<BuildPlan> {
  const started = Date.now();
  const { arch, logger } = req;
  const fragments = [...['common.config', arch.kconfigFragment].map((f) => join(req.kconfigDir, f)), ...(req.extraFragments ?? [])];
  const absent = fragments.filter((f) => !existsSync(f));
  if (absent.length) {
    throw usageError(`config fragment(s) missing: ${absent.join(', ')}`, { arch: arch.name, hint: 'a fragment directory needs common.config and one <arch>.config per arch' });
  }
  const notInKernel = req.absentOptions ?? [];
  for (const a of notInKernel) logger.info(`config ${arch.name}: this kernel has no ${a.option} (${a.why}); left out of the fragments`);
  const fragmentText = withoutOptions(fragments.map((f) => readFileSync(f, 'utf8')).join('\n'), notInKernel.map((a) => a.option));
  const cc = await compilerVersion(arch);
  const key = hashOf(req.treeKey, arch.name, fragmentText, cc);
  const buildDir = join(req.cacheDir, 'builds', `${arch.name}-${key}`);
  const ccache = useCcache();
  const args = makeArgs(arch, req.tree, buildDir, ccache);
  const jobs = req.jobs ?? availableParallelism();
  const makeCommand = formatCommand('make', [...args, `-j${jobs}`, arch.imageTarget, 'modules']);
  return { req, started, fragments, fragmentText, cc, key, buildDir, logPath: join(buildDir, 'build.log'), ccache, makeArgs: args, jobs, makeCommand };
}

/**
 * Configures and builds the kernel and its in-tree modules, or reuses a
 * complete build. One output tree per (patched tree, fragments, toolchain):
 * a tree unpacked afresh starts it over; a tree copied from a sibling starts
 * from a copy of the sibling's build. The lock keeps other runs out meanwhile.
 */
export async function buildKernel(req: BuildRequest): Promise<BuildResult> {
  const plan = await planBuild(req);
  const result = (reused: boolean): BuildResult => ({
    buildDir: plan.buildDir,
    image: join(plan.buildDir, req.arch.imagePath),
    key: hashOf(plan.key, req.series, req.generation),
    reused,
    durationMs: Date.now() - plan.started,
    logPath: plan.logPath,
    makeCommand: plan.makeCommand,
  });
  const check = async () => {
    const marker = await readValidMarker(plan.buildDir);
    return marker && marker.inputs.series === req.series && marker.inputs.generation === req.generation ? result(true) : undefined;
  };
  const name = `builds/${req.arch.name}-${plan.key}`;
  const make = async () => {
    await makeBuild(plan);
    return result(false);
  };
  return useEntry({ lock: entryLock(req.cacheDir, name), what: `kernel build ${name}`, logger: req.logger, rebuild: req.rebuild, check, make });
}

async function makeBuild(plan: BuildPlan): Promise<void> {
  const { req, buildDir } = plan;
  invalidate(buildDir);
  // A sibling's complete build costs a copy and the files the series differ in; what is here
  // (nothing, or an interrupted build) may cost most of a cold build. --rebuild build resumes here.
  if (!req.rebuild) await seedBuild(req, plan.fragmentText, plan.cc, buildDir);
  const generationFile = join(buildDir, '.klp-tree-generation');
  if (existsSync(buildDir) && readMaybe(generationFile) !== req.generation) {
    req.logger.info(`build ${req.arch.name}: the source tree was unpacked afresh; starting the output tree over`);
    rmSync(buildDir, { recursive: true, force: true });
  }
  mkdirSync(buildDir, { recursive: true });
  writeFileSync(generationFile, req.generation);
  writeFileSync(plan.logPath, '');
  await configure(plan);
  await compile(plan);
  const inputs = { tree: req.treeKey, series: req.series, generation: req.generation, fragments: hashOf(plan.fragmentText), compiler: plan.cc };
  await writeMarker(buildDir, plan.key, inputs, [req.arch.imagePath, 'Module.symvers', '.config']);
}

/** tinyconfig plus the fragments, olddefconfig, and the check that kbuild kept every option asked for; skipped when done for these fragments. */
async function configure(plan: BuildPlan): Promise<void> {
  const { req, buildDir, logPath, makeArgs: base } = plan;
  const { arch, logger } = req;
  const configured = join(buildDir, '.klp-config-ok');
  const fragmentCopy = join(buildDir, 'klp-fragments.config');
  if (existsSync(configured) && readFileSync(fragmentCopy, 'utf8') === plan.fragmentText) return;
  rmSync(configured, { force: true });
  logger.status(arch.name, 'config: tinyconfig + fragments, olddefconfig');
  logger.info(`config ${arch.name}: tinyconfig + ${plan.fragments.map((f) => (f.startsWith(req.kconfigDir + '/') ? f.slice(req.kconfigDir.length + 1) : f)).join(' + ')}`);
  const onFailure = failureFor(arch, logPath);
  const tiny = tinyFragments(req.tree, arch);
  let tinyText = '';
  if (tiny) {
    // What `make tinyconfig` does, with our fragments merged before its final
    // olddefconfig instead of after it: one kbuild config run fewer, and the
    // same .config (checked byte for byte on both arches with 6.1).
    await run('make', [...base, `KCONFIG_ALLCONFIG=${tiny.base}`, 'allnoconfig'], { logPath, logger, onFailure });
    tinyText = tiny.fragments.map((f) => `# from ${f.slice(req.tree.length + 1)}\n${readFileSync(f, 'utf8')}\n`).join('');
  } else {
    // A tree older than 5.9 (no tiny-base.config): kbuild's own tinyconfig, then ours on top.
    await run('make', [...base, 'tinyconfig'], { logPath, logger, onFailure });
  }
  appendFileSync(join(buildDir, '.config'), `\n${tinyText}# klp-harness fragments\n${plan.fragmentText}\n`);
  await run('make', [...base, 'olddefconfig'], { logPath, logger, onFailure });
  await checkConfig({ tree: req.tree, buildDir, wanted: parseConfig(plan.fragmentText), fragments: plan.fragments, arch: arch.name });
  writeFileSync(fragmentCopy, plan.fragmentText);
  writeFileSync(configured, '');
}

/** The make itself, with a progress line against the last full build of this config (any tree), at this build's own pace. */
async function compile(plan: BuildPlan): Promise<void> {
  const { req, logPath } = plan;
  const { arch, logger } = req;
  logger.info(`build ${arch.name}: ${plan.makeCommand}`);
  logger.info(`build ${arch.name}: log in ${logPath}`);
  const statsFile = join(req.cacheDir, 'build-stats', `${arch.name}-${hashOf(plan.fragmentText, plan.cc)}.json`);
  const progress = new BuildProgress(readBuildStats(statsFile));
  let lastReport = Date.now();
  await run('make', [...plan.makeArgs, `-j${plan.jobs}`, arch.imageTarget, 'modules'], {
    logPath,
    logger,
    env: plan.ccache ? { CCACHE_DIR: join(req.cacheDir, 'ccache') } : undefined,
    onFailure: failureFor(arch, logPath),
    onLine: (line) => {
      if (/^\s+CC( \[M\])?\s/.test(line)) {
        progress.compiled++;
        logger.status(arch.name, `build: ${progress.describe()}`);
      }
      logger.verbose(`build ${arch.name}: ${line}`);
      if (Date.now() - lastReport > 30_000) {
        lastReport = Date.now();
        logger.info(`build ${arch.name}: ${progress.describe()}, ${Math.round((Date.now() - plan.started) / 1000)} s so far`);
      }
    },
  });
  writeBuildStats(statsFile, progress);
}

/** The objects a full build of one config compiled, kept in the cache (build-stats/) for the next build's progress line. */
interface BuildStats {
  objects: number;
}

function readBuildStats(file: string): BuildStats | undefined {
  try {
    const v = JSON.parse(readFileSync(file, 'utf8')) as BuildStats;
    return Number.isInteger(v.objects) && v.objects > 0 ? v : undefined;
  } catch {
    return undefined;
  }
}

/** Keeps the largest count seen: an incremental build compiles a few objects and says nothing about a full one. */
function writeBuildStats(file: string, p: BuildProgress): void {
  if (p.compiled === 0 || (p.expected ?? 0) >= p.compiled) return;
  mkdirSync(dirname(file), { recursive: true });
  writeFileAtomic(file, JSON.stringify({ objects: p.compiled } satisfies BuildStats) + '\n');
}

/** A build's progress line: `987 of ~1,100 objects, about 40 s left` (a count alone before any full build of the config). */
export class BuildProgress {
  compiled = 0;
  readonly expected?: number;
  private readonly started: number;
  constructor(
    stats: BuildStats | undefined,
    private readonly now: () => number = Date.now,
  ) {
    this.expected = stats?.objects;
    this.started = now();
  }

  describe(): string {
    const n = (x: number) => x.toLocaleString('en-US');
    if (!this.expected) return `${n(this.compiled)} objects compiled`;
    const left = this.expected - this.compiled;
    const elapsed = (this.now() - this.started) / 1000;
    // The pace of this build so far (a loaded host is slower than the last one); nothing said until it has one.
    const eta = this.compiled >= 20 && left > 0 ? `, about ${Math.max(1, Math.round((elapsed / this.compiled) * left))} s left` : left <= 0 ? ', linking' : '';
    return `${n(this.compiled)} of ~${n(this.expected)} objects${eta}`;
  }
}

/**
 * Starts a build directory as a copy of the complete build of the tree this
 * tree was copied from (same arch, fragments and compiler), so that another
 * series costs an incremental build, not a cold one. kbuild records the
 * absolute source and output paths in its .cmd files (command lines and
 * dependencies); they are rewritten to the new tree, otherwise every object
 * would be rebuilt (changed command line) or, worse, a header changed by the
 * new series would not be seen (dependency on the old tree's copy).
 */
async function seedBuild(req: BuildRequest, fragmentText: string, cc: string, buildDir: string): Promise<boolean> {
  for (const seed of await seedCandidates(req.cacheDir, req.tree, req.treeKey)) {
    if (await seedFrom(req, seed, hashOf(seed.key, req.arch.name, fragmentText, cc), buildDir)) return true;
  }
  return false;
}

/** Copies the complete build of one sibling tree (same arch, fragments and compiler) and points it at this tree; false when there is none. */
async function seedFrom(req: BuildRequest, seed: SeedInfo, key: string, buildDir: string): Promise<boolean> {
  const name = `builds/${req.arch.name}-${key}`;
  const sibling = join(req.cacheDir, name);
  if (!existsSync(sibling)) return false;
  const tmp = `${buildDir}.tmp-${process.pid}`;
  const forget = onCleanup(() => rmSync(tmp, { recursive: true, force: true }));
  try {
    const copied = await withShared(entryLock(req.cacheDir, name), `kernel build ${name} (to copy it)`, req.logger, async () => {
      const m = await readValidMarker(sibling);
      if (!m || m.inputs.series !== seed.series || m.inputs.generation !== seed.generation) return false;
      req.logger.info(`build ${req.arch.name}: starting from a copy of ${name} (the build of sibling tree trees/${seed.key}; ${seed.touched?.length ?? 0} files differ), not from scratch`);
      rmSync(tmp, { recursive: true, force: true });
      await run('cp', ['-a', '--reflink=auto', sibling, tmp], { logger: req.logger });
      return true;
    });
    if (!copied) return false;
    for (const extra of [MARKER, 'klp-guest-modules', 'klp-modules-staging', 'build.log']) rmSync(join(tmp, extra), { recursive: true, force: true });
    const n = rewritePaths(tmp, [
      [realpathSync(seed.tree), realpathSync(req.tree)],
      // kbuild records real paths (symlinks in the cache path resolved).
      [realpathSync(sibling), join(realpathSync(dirname(buildDir)), basename(buildDir))],
    ]);
    req.logger.info(`build ${req.arch.name}: ${n} kbuild files point at the new tree now`);
    writeFileSync(join(tmp, '.klp-tree-generation'), req.generation);
    // make compares times: a file the two series differ in may be older than
    // the copied object built (later) from the sibling's version of it. Now is
    // newer than every copied object.
    const now = new Date();
    for (const f of seed.touched ?? []) if (existsSync(join(req.tree, f))) utimesSync(join(req.tree, f), now, now);
    if (existsSync(buildDir)) req.logger.info(`build ${req.arch.name}: the incomplete build there is replaced by the copy`);
    rmSync(buildDir, { recursive: true, force: true });
    renameSync(tmp, buildDir);
    return true;
  } finally {
    forget();
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** Replaces absolute paths in kbuild's records (.cmd and .d files, the output Makefile, the `source` link); file times are kept. */
export function rewritePaths(dir: string, pairs: [string, string][]): number {
  let changed = 0;
  const fix = (text: string) => pairs.reduce((t, [from, to]) => t.split(from).join(to), text);
  const walk = (d: string, top: boolean) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p, false);
      else if (e.isSymbolicLink() && top && e.name === 'source') {
        const target = readlinkSync(p);
        rmSync(p);
        symlinkSync(fix(target), p);
      } else if (e.isFile() && (/\.(cmd|d)$/.test(e.name) || (top && e.name === 'Makefile'))) {
        const text = readFileSync(p, 'latin1');
        const fixed = fix(text);
        if (fixed === text) continue;
        const st = statSync(p);
        writeFileSync(p, fixed, 'latin1');
        utimesSync(p, st.atime, st.mtime);
        changed++;
      }
    }
  };
  walk(dir, true);
  return changed;
}

/** The tree's own tinyconfig inputs (base, generic and arch fragments), if it has tiny-base.config. */
function tinyFragments(tree: string, arch: ArchRecord): { base: string; fragments: string[] } | undefined {
  const base = join(tree, 'kernel/configs/tiny-base.config');
  if (!existsSync(base)) return undefined;
  const srcArch = arch.linuxArch === 'x86_64' ? 'x86' : arch.linuxArch;
  const fragments = [join(tree, 'kernel/configs/tiny.config'), join(tree, 'arch', srcArch, 'configs/tiny.config')];
  return { base, fragments: fragments.filter((f) => existsSync(f)) };
}

function readMaybe(path: string): string | undefined {
  return existsSync(path) ? readFileSync(path, 'utf8') : undefined;
}

function failureFor(arch: ArchRecord, logPath: string) {
  return (f: { command: string; exitCode?: number; signal?: string; durationMs: number; output: string }) =>
    buildError(`kernel build for ${arch.name} failed`, {
      arch: arch.name,
      command: f.command,
      exitCode: f.exitCode,
      signal: f.signal,
      durationMs: f.durationMs,
      logPath,
      details: compilerErrors(f.output).join('\n'),
      hint: 'fix the error above (the full log has the context) and run again; the build resumes where it stopped',
    });
}
