// Kernel source: a tarball (default: Debian's linux-source-6.1) unpacked once,
// or a user's tree copied, never modified; then the patch series applied to
// that private copy. The patched tree is a cache entry keyed by both.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { hashOf, invalidate, readValidMarker, writeFileAtomic, writeMarker } from './cache.js';
import { usageError } from './errors.js';
import { run } from './exec.js';
import type { Logger } from './log.js';
import { explainRejection, type Patch, type Series } from './patches.js';
import { onCleanup } from './children.js';

export const DEFAULT_KERNEL_SRC = '/usr/src/linux-source-6.1.tar.xz';

export interface SourceRequest {
  kernelSrc: string;
  series: Series;
  cacheDir: string;
  logger: Logger;
  rebuild?: boolean;
}

export interface SourceResult {
  tree: string;
  /** Identity of the source alone (the tree directory's name). */
  key: string;
  /** Identity of the applied series. */
  series: string;
  /** Changes only when the tree is unpacked afresh. */
  generation: string;
  version: string;
  reused: boolean;
  durationMs: number;
}

/** Identity of a kernel source: what decides whether a cached copy is still the same. */
export async function sourceIdentity(path: string): Promise<{ kind: 'tarball' | 'tree'; id: string }> {
  const abs = resolve(path);
  if (!existsSync(abs)) {
    throw usageError(`kernel source ${abs} does not exist`, {
      hint: `pass --kernel-src with a kernel tarball or tree (default ${DEFAULT_KERNEL_SRC}, from Debian's linux-source-6.1)`,
    });
  }
  const st = statSync(abs);
  if (st.isFile()) {
    if (!/\.tar(\.(xz|gz|bz2|zst))?$|\.tgz$/.test(abs)) {
      throw usageError(`kernel source ${abs} is a file but not a tarball`, { hint: 'give a .tar.xz/.tar.gz or a kernel tree' });
    }
    return { kind: 'tarball', id: `tarball:${abs}:${st.size}:${st.mtimeMs}` };
  }
  for (const f of ['Makefile', 'Kconfig', 'kernel/livepatch']) {
    if (!existsSync(join(abs, f))) {
      throw usageError(`${abs} is not a kernel tree (no ${f})`, { hint: 'pass --kernel-src with the top of a Linux source tree' });
    }
  }
  // A git tree is identified by its HEAD and its uncommitted changes; another tree by its Makefile's time.
  let id = `tree:${abs}:${statSync(join(abs, 'Makefile')).mtimeMs}`;
  if (existsSync(join(abs, '.git'))) {
    const head = await run('git', ['-C', abs, 'rev-parse', 'HEAD']).catch(() => undefined);
    const dirty = await run('git', ['-C', abs, 'status', '--porcelain', '--untracked-files=no']).catch(() => undefined);
    if (head) id = `git:${abs}:${head.stdout.trim()}:${hashOf(dirty?.stdout ?? '')}`;
  }
  return { kind: 'tree', id };
}

export function seriesIdentity(series: Series): string {
  return hashOf(...series.patches.flatMap((p) => [p.name, p.text]));
}

/** Reads VERSION.PATCHLEVEL.SUBLEVEL from a tree's Makefile. */
export async function kernelVersion(tree: string): Promise<string> {
  const mk = readFileSync(join(tree, 'Makefile'), 'utf8');
  const get = (k: string) => new RegExp(`^${k}[ \\t]*=[ \\t]*(\\S*)`, 'm').exec(mk)?.[1] ?? '?';
  return `${get('VERSION')}.${get('PATCHLEVEL')}.${get('SUBLEVEL')}${get('EXTRAVERSION').replace('?', '')}`;
}

/** Makes (or reuses) the patched private copy of the kernel source. */
/**
 * Makes (or reuses) the patched private copy of the kernel source. One tree
 * per source; a different series is switched in place (old patches reverted,
 * new ones applied) so that unchanged files keep their times and kbuild
 * rebuilds only what the patches touch.
 */
export async function prepareSource(req: SourceRequest): Promise<SourceResult> {
  const started = Date.now();
  const ident = await sourceIdentity(req.kernelSrc);
  const key = hashOf(ident.id);
  const series = seriesIdentity(req.series);
  const tree = join(req.cacheDir, 'trees', key);
  const appliedFile = join(tree, APPLIED);
  const marker = req.rebuild ? undefined : await readValidMarker(tree);
  const result = async (reused: boolean, generation: string): Promise<SourceResult> => ({
    tree,
    key,
    series,
    generation,
    version: await kernelVersion(tree),
    reused,
    durationMs: Date.now() - started,
  });
  if (marker && marker.inputs.series === series) return result(true, String(marker.meta?.generation));
  if (marker && existsSync(appliedFile)) {
    const generation = String(marker.meta?.generation);
    invalidate(tree);
    const old = JSON.parse(readFileSync(appliedFile, 'utf8')) as Patch[];
    const reverted = await revertAll(tree, old, req.logger).then(
      () => true,
      () => false,
    );
    if (reverted) {
      writeFileAtomic(appliedFile, '[]\n');
      const mark = (s: string) => writeMarker(tree, key, { source: ident.id, series: s }, ['Makefile'], { generation });
      try {
        await applyAll(tree, req.series, req.logger);
      } catch (e) {
        await mark('pristine');
        throw e;
      }
      writeFileAtomic(appliedFile, JSON.stringify(req.series.patches));
      await mark(series);
      req.logger.info('source: switched the patch series in place (only touched files rebuild)');
      return result(false, generation);
    }
    req.logger.info('source: could not revert the previous series; unpacking afresh');
  }
  rmSync(tree, { recursive: true, force: true });
  mkdirSync(join(req.cacheDir, 'trees'), { recursive: true });
  const tmp = `${tree}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const forget = onCleanup(() => rmSync(tmp, { recursive: true, force: true }));
  // A fresh tree has the tarball's old file times: builds made from an earlier tree must not be trusted.
  const generation = `${Date.now()}-${process.pid}`;
  try {
    const src = resolve(req.kernelSrc);
    if (ident.kind === 'tarball') {
      req.logger.info(`source: unpacking ${src}`);
      await run('tar', ['-xf', src, '-C', tmp, '--strip-components=1'], { logger: req.logger });
    } else {
      req.logger.info(`source: copying ${src} (the tree itself is not modified)`);
      await run('rsync', ['-a', '--exclude=.git', `${src}/`, `${tmp}/`], { logger: req.logger });
      if (existsSync(join(tmp, '.config')) || existsSync(join(tmp, 'include/config'))) {
        // kbuild refuses O= builds from a configured tree; clean the private copy only.
        await run('make', ['-C', tmp, 'mrproper'], { logger: req.logger });
      }
    }
    await applyAll(tmp, req.series, req.logger);
    writeFileAtomic(join(tmp, APPLIED), JSON.stringify(req.series.patches));
    await writeMarker(tmp, key, { source: ident.id, series }, ['Makefile'], { generation });
    renameSync(tmp, tree);
  } finally {
    forget();
    rmSync(tmp, { recursive: true, force: true });
  }
  return result(false, generation);
}

/** The applied series, kept in the tree so that it can be reverted. */
const APPLIED = '.klp-applied-series.json';

/** Applies a series in order; a patch that does not apply is reverted-to-pristine and reported. */
async function applyAll(tree: string, series: Series, logger: Logger): Promise<void> {
  const done: Patch[] = [];
  for (const patch of series.patches) {
    logger.info(`patches: applying ${patch.name}`);
    const args = ['-p1', '--forward', '--batch', '-d', tree];
    try {
      await run('patch', [...args, '--dry-run'], { input: patch.text, logger, onFailure: (f) => explainRejection(patch, f.output, series.origin) });
    } catch (e) {
      await revertAll(tree, done, logger);
      throw e;
    }
    await run('patch', [...args, '-s'], { input: patch.text, logger });
    done.push(patch);
  }
}

async function revertAll(tree: string, patches: Patch[], logger: Logger): Promise<void> {
  for (const patch of [...patches].reverse()) {
    await run('patch', ['-p1', '-R', '--batch', '-s', '-d', tree], { input: patch.text, logger });
  }
}
