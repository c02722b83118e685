// Kernel config and build, out of tree (make O=...), one cache entry per
// (patched tree, fragments, toolchain). The only place that runs kbuild for
// the kernel itself.
import { existsSync, mkdirSync, readFileSync, writeFileSync, appendFileSync, rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { ArchRecord } from './arch.js';
import { hashOf, readValidMarker, writeMarker, invalidate } from './cache.js';
import { buildError, usageError } from './errors.js';
import { run, formatCommand } from './exec.js';
import { checkConfig, parseConfig } from './kconfig.js';
import { onPath } from './preflight.js';
import type { Logger } from './log.js';

export interface BuildRequest {
  arch: ArchRecord;
  tree: string;
  treeKey: string;
  /** Identity of the series applied to the tree, and the tree's generation (see prepareSource). */
  series: string;
  generation: string;
  kconfigDir: string;
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
    throw buildError(`compiler ${arch.compiler.tool} for ${arch.name} is not installed`, {
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

/** Configures and builds the kernel and its in-tree modules, or reuses a complete build. */
export async function buildKernel(req: BuildRequest): Promise<BuildResult> {
  const started = Date.now();
  const { arch, logger } = req;
  const fragments = ['common.config', arch.kconfigFragment].map((f) => join(req.kconfigDir, f));
  const absent = fragments.filter((f) => !existsSync(f));
  if (absent.length) {
    throw usageError(`config fragment(s) missing: ${absent.join(', ')}`, { arch: arch.name, hint: 'a fragment directory needs common.config and one <arch>.config per arch' });
  }
  const fragmentText = fragments.map((f) => readFileSync(f, 'utf8')).join('\n');
  const cc = await compilerVersion(arch);
  const key = hashOf(req.treeKey, arch.name, fragmentText, cc);
  const buildDir = join(req.cacheDir, 'builds', `${arch.name}-${key}`);
  const logPath = join(buildDir, 'build.log');
  const ccache = useCcache();
  const base = makeArgs(arch, req.tree, buildDir, ccache);
  const jobs = req.jobs ?? availableParallelism();
  const makeCommand = formatCommand('make', [...base, `-j${jobs}`, arch.imageTarget, 'modules']);
  const result = (reused: boolean): BuildResult => ({
    buildDir,
    image: join(buildDir, arch.imagePath),
    key: hashOf(key, req.series, req.generation),
    reused,
    durationMs: Date.now() - started,
    logPath,
    makeCommand,
  });

  // One output tree per (source, fragments, toolchain): a changed patch series
  // rebuilds in it incrementally. A tree unpacked afresh starts it over.
  const marker = req.rebuild ? undefined : await readValidMarker(buildDir);
  if (marker && marker.inputs.series === req.series && marker.inputs.generation === req.generation) return result(true);
  invalidate(buildDir);
  const generationFile = join(buildDir, '.klp-tree-generation');
  if (existsSync(buildDir) && readMaybe(generationFile) !== req.generation) {
    logger.info(`build ${arch.name}: the source tree was unpacked afresh; starting the output tree over`);
    rmSync(buildDir, { recursive: true, force: true });
  }

  mkdirSync(buildDir, { recursive: true });
  writeFileSync(generationFile, req.generation);
  writeFileSync(logPath, '');
  const configured = join(buildDir, '.klp-config-ok');
  const fragmentCopy = join(buildDir, 'klp-fragments.config');
  if (!existsSync(configured) || readFileSync(fragmentCopy, 'utf8') !== fragmentText) {
    rmSync(configured, { force: true });
    logger.status(arch.name, 'config: tinyconfig + fragments, olddefconfig');
    logger.info(`config ${arch.name}: tinyconfig + ${fragments.map((f) => f.slice(req.kconfigDir.length + 1)).join(' + ')}`);
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
    appendFileSync(join(buildDir, '.config'), `\n${tinyText}# klp-harness fragments\n${fragmentText}\n`);
    await run('make', [...base, 'olddefconfig'], { logPath, logger, onFailure });
    await checkConfig({ tree: req.tree, buildDir, wanted: parseConfig(fragmentText), fragments, arch: arch.name });
    writeFileSync(fragmentCopy, fragmentText);
    writeFileSync(configured, '');
  }

  logger.info(`build ${arch.name}: ${makeCommand}`);
  logger.info(`build ${arch.name}: log in ${logPath}`);
  const previous = Number(readMaybe(join(buildDir, '.klp-compiled-count')) ?? 0);
  let compiled = 0;
  let lastReport = Date.now();
  await run('make', [...base, `-j${jobs}`, arch.imageTarget, 'modules'], {
    logPath,
    logger,
    env: ccache ? { CCACHE_DIR: join(req.cacheDir, 'ccache') } : undefined,
    onFailure: failureFor(arch, logPath),
    onLine: (line) => {
      if (/^\s+CC( \[M\])?\s/.test(line)) {
        compiled++;
        logger.status(arch.name, `build: ${compiled}${previous ? ` of ~${previous}` : ''} files compiled`);
      }
      logger.verbose(`build ${arch.name}: ${line}`);
      if (Date.now() - lastReport > 30_000) {
        lastReport = Date.now();
        logger.info(`build ${arch.name}: ${compiled}${previous ? ` of ~${previous}` : ''} files compiled, ${Math.round((Date.now() - started) / 1000)} s`);
      }
    },
  });
  if (compiled > 0) writeFileSync(join(buildDir, '.klp-compiled-count'), String(compiled));
  await writeMarker(buildDir, key, { tree: req.treeKey, series: req.series, generation: req.generation, fragments: hashOf(fragmentText), compiler: cc }, [
    arch.imagePath,
    'Module.symvers',
    '.config',
  ]);
  return result(false);
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
