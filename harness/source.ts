// Kernel source: a tarball (default: Debian's linux-source-6.1) unpacked once,
// or a user's tree copied, never modified; then the patch series applied to
// that private copy. The patched tree is a cache entry keyed by both.
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { hashOf, readValidMarker, writeMarker } from './cache.js';
import { usageError } from './errors.js';
import { run } from './exec.js';
import type { Logger } from './log.js';
import { explainRejection, type Series } from './patches.js';
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
  key: string;
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
  const { readFile } = await import('node:fs/promises');
  const mk = await readFile(join(tree, 'Makefile'), 'utf8');
  const get = (k: string) => new RegExp(`^${k}[ \\t]*=[ \\t]*(\\S*)`, 'm').exec(mk)?.[1] ?? '?';
  return `${get('VERSION')}.${get('PATCHLEVEL')}.${get('SUBLEVEL')}${get('EXTRAVERSION').replace('?', '')}`;
}

/** Makes (or reuses) the patched private copy of the kernel source. */
export async function prepareSource(req: SourceRequest): Promise<SourceResult> {
  const started = Date.now();
  const ident = await sourceIdentity(req.kernelSrc);
  const key = hashOf(ident.id, seriesIdentity(req.series));
  const tree = join(req.cacheDir, 'trees', key);
  if (!req.rebuild && (await readValidMarker(tree))) {
    return { tree, key, version: await kernelVersion(tree), reused: true, durationMs: Date.now() - started };
  }
  rmSync(tree, { recursive: true, force: true });
  mkdirSync(join(req.cacheDir, 'trees'), { recursive: true });
  const tmp = `${tree}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const forget = onCleanup(() => rmSync(tmp, { recursive: true, force: true }));
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
    for (const patch of req.series.patches) {
      req.logger.info(`patches: applying ${patch.name}`);
      const args = ['-p1', '--forward', '--batch', '-d', tmp];
      await run('patch', [...args, '--dry-run'], {
        input: patch.text,
        logger: req.logger,
        onFailure: (f) => explainRejection(patch, f.output, req.series.origin),
      });
      await run('patch', [...args, '-s'], { input: patch.text, logger: req.logger });
    }
    await writeMarker(tmp, key, { source: ident.id, series: seriesIdentity(req.series) }, ['Makefile']);
    renameSync(tmp, tree);
  } finally {
    forget();
    rmSync(tmp, { recursive: true, force: true });
  }
  return { tree, key, version: await kernelVersion(tree), reused: false, durationMs: Date.now() - started };
}
