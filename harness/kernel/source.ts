// Kernel source: a tarball (default: Debian's linux-source-6.1) unpacked once,
// or a user's tree copied, never modified; then the patch series applied to
// that private copy. The patched tree is a cache entry keyed by both.
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { hashOf, MARKER, readValidMarker, writeFileAtomic, writeMarker } from '../core/cache.js';
import { entryLock, useEntry, withShared } from '../core/lock.js';
import { infraError, usageError } from '../core/errors.js';
import { run, tail } from '../proc/exec.js';
import type { Logger } from '../core/log.js';
import { explainRejection, type Patch, type Series } from './patches.js';
import { onCleanup } from '../proc/supervisor.js';
import { projectPath } from '../core/paths.js';

export const DEFAULT_KERNEL_SRC = '/usr/src/linux-source-6.1.tar.xz';
/** What the top of a kernel tree that can livepatch has. */
const KERNEL_TREE_FILES = ['Makefile', 'Kconfig', 'kernel/livepatch'];

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
export async function sourceIdentity(path: string, cacheDir?: string, logger?: Logger): Promise<{ kind: 'tarball' | 'tree'; id: string; git: boolean }> {
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
    // Unchanged on purpose: the default kernel's cache key (and so CI's warm cache) depends on it.
    return { kind: 'tarball', id: `tarball:${abs}:${st.size}:${st.mtimeMs}`, git: false };
  }
  for (const f of KERNEL_TREE_FILES) {
    if (!existsSync(join(abs, f))) {
      throw usageError(`${abs} is not a kernel tree (no ${f})`, { hint: 'pass --kernel-src with the top of a Linux source tree' });
    }
  }
  const git = existsSync(join(abs, '.git')) ? await gitIdentity(abs) : undefined;
  if (git) return { kind: 'tree', id: git, git: true };
  const t0 = Date.now();
  const index = cacheDir ? join(cacheDir, 'source-index', `${hashOf(abs)}.json`) : undefined;
  const h = contentHash(abs, index);
  logger?.info(`source: content of ${abs}: ${h.files} files, ${h.hashed} read, in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return { kind: 'tree', id: `tree:${h.digest}`, git: false };
}

/** HEAD, the binary diff against it (staged or not) and the untracked files' contents: what the copy will hold. */
async function gitIdentity(abs: string): Promise<string | undefined> {
  const head = await run('git', ['-C', abs, 'rev-parse', 'HEAD']).catch(() => undefined);
  if (!head) return undefined;
  const diff = await run('git', ['-C', abs, 'diff', '--binary', 'HEAD']);
  const untracked = gitUntracked(abs, await run('git', ['-C', abs, 'ls-files', '-z', '--others', '--exclude-standard']));
  const parts = untracked.flatMap((f) => [f, readFileSync(join(abs, f))]);
  return `git:${head.stdout.trim()}:${hashOf(diff.stdout)}:${hashOf(...parts)}`;
}

const gitUntracked = (abs: string, r: { stdout: string }) =>
  r.stdout
    .split('\0')
    .filter(Boolean)
    .filter((f) => lstatSync(join(abs, f)).isFile())
    .sort();

interface IndexEntry {
  size: string;
  mtimeNs: string;
  ctimeNs: string;
  ino: string;
  sha: string;
}

/**
 * A hash of every regular file's path and content (and every symlink's
 * target), skipping .git. Contents are read only for files whose size,
 * times or inode changed since the last time (a small index in the cache,
 * per tree path); a file changed just before (or while) the index was
 * made is read again, as its time alone cannot prove it unchanged.
 */
export function contentHash(dir: string, indexPath?: string): { digest: string; files: number; hashed: number } {
  let old: { written: number; entries: Record<string, IndexEntry> } = { written: 0, entries: {} };
  try {
    if (indexPath) old = JSON.parse(readFileSync(indexPath, 'utf8')) as typeof old;
  } catch {
    /* first time, or unreadable: read everything */
  }
  const entries: Record<string, IndexEntry> = {};
  const total = createHash('sha256');
  let hashed = 0;
  // File times come from a coarse clock (a few ms): allow a margin.
  const trustBefore = BigInt(old.written - 100) * 1_000_000n;
  const walk = (rel: string) => {
    for (const d of readdirSync(join(dir, rel), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const r = rel ? `${rel}/${d.name}` : d.name;
      if (d.name === '.git' && !rel) continue;
      if (d.isDirectory()) {
        walk(r);
      } else if (d.isSymbolicLink()) {
        total.update(`${r}\0->${readlinkSync(join(dir, r))}\n`);
      } else if (d.isFile()) {
        const st = lstatSync(join(dir, r), { bigint: true });
        const now = { size: String(st.size), mtimeNs: String(st.mtimeNs), ctimeNs: String(st.ctimeNs), ino: String(st.ino) };
        const prev = old.entries[r];
        const same = prev && prev.size === now.size && prev.mtimeNs === now.mtimeNs && prev.ctimeNs === now.ctimeNs && prev.ino === now.ino && st.mtimeNs < trustBefore && st.ctimeNs < trustBefore;
        let sha = same ? prev.sha : '';
        if (!sha) {
          sha = createHash('sha256').update(readFileSync(join(dir, r))).digest('hex');
          hashed++;
        }
        entries[r] = { ...now, sha };
        total.update(`${r}\0${sha}\n`);
      }
    }
  };
  const written = Date.now();
  walk('');
  if (indexPath) {
    mkdirSync(dirname(indexPath), { recursive: true });
    writeFileAtomic(indexPath, JSON.stringify({ written, entries }));
  }
  return { digest: total.digest('hex'), files: Object.keys(entries).length, hashed };
}

export function seriesIdentity(series: Series): string {
  // -pN counts only when given, so that a series without it keeps its key.
  return hashOf(...series.patches.flatMap((p) => (p.strip === undefined ? [p.name, p.text] : [p.name, p.text, `-p${p.strip}`])));
}

/** The project's own series (patches/): its tree keeps the name it always had, so CI's warm cache stays warm. */
export const DEFAULT_PATCHES = projectPath('patches');

/** Reads VERSION.PATCHLEVEL.SUBLEVEL from a tree's Makefile. */
export async function kernelVersion(tree: string): Promise<string> {
  const mk = readFileSync(join(tree, 'Makefile'), 'utf8');
  const get = (k: string) => new RegExp(`^${k}[ \\t]*=[ \\t]*(\\S*)`, 'm').exec(mk)?.[1] ?? '?';
  return `${get('VERSION')}.${get('PATCHLEVEL')}.${get('SUBLEVEL')}${get('EXTRAVERSION').replace('?', '')}`;
}

/** A tarball tar cannot read is bad input (exit 4); a full disk or a permission problem is the host's (exit 3). */
function tarFailure(src: string, output: string, command: string) {
  const host = /No space left|Disk quota|Read-only file system|Cannot (mkdir|open): Permission denied/i.test(output);
  const ctx = { command, details: tail(output, 10) };
  return host
    ? infraError(`unpacking ${src} failed on this host`, { ...ctx, hint: 'free space in the cache directory or fix its permissions' })
    : usageError(`kernel source ${src} is not a readable tarball`, { ...ctx, hint: 'pass --kernel-src with a kernel tarball (.tar.xz, .tar.gz, ...) or a kernel tree' });
}

/** Where a tree was copied from: a sibling tree of the same source, as it was (series, generation) then. */
export interface SeedInfo {
  key: string;
  tree: string;
  series: string;
  generation: string;
  /** Files the switch from that tree's series to this one's may have changed (relative to the tree). */
  touched?: string[];
}

/** The files a patch changes, from its diff headers (with its -pN). */
export function touchedFiles(patch: Patch): string[] {
  const strip = patch.strip ?? 1;
  const out = new Set<string>();
  for (const m of patch.text.matchAll(/^(?:\+\+\+|---) ([^\t\n]+)/gm)) {
    const path = m[1]!.trim();
    if (path === '/dev/null') continue;
    const rel = path.split('/').slice(strip).join('/');
    if (rel) out.add(rel);
  }
  return [...out];
}

/**
 * Makes (or reuses) the patched private copy of the kernel source: one tree
 * per (source, series), `trees/<source key>-<series key>`, never changed
 * once made. A new tree is hard-linked from a complete sibling of the same
 * source when there is one (its series reverted, the new one applied: only
 * the files the two series touch are new files, and only they rebuild), else
 * unpacked. Each tree is locked: shared while a run uses it, exclusive while
 * it is made.
 */
export async function prepareSource(req: SourceRequest): Promise<SourceResult> {
  const started = Date.now();
  const ident = await sourceIdentity(req.kernelSrc, req.cacheDir, req.logger);
  const base = hashOf(ident.id);
  const series = seriesIdentity(req.series);
  const key = `${base}-${series}`;
  const tree = join(req.cacheDir, 'trees', key);
  const fits = async (): Promise<SourceResult | undefined> => {
    const marker = await readValidMarker(tree);
    // A tree counts only with its manifest (every file's path and size): the Makefile alone proves little.
    if (!marker?.manifest || marker.inputs.series !== series) return undefined;
    return { tree, key, series, generation: String(marker.meta?.generation), version: await kernelVersion(tree), reused: true, durationMs: Date.now() - started };
  };
  return useEntry({
    lock: entryLock(req.cacheDir, `trees/${key}`),
    what: `source tree trees/${key}`,
    logger: req.logger,
    rebuild: req.rebuild,
    check: fits,
    make: async () => {
      const generation = await makeTree(req, tree, key, base, ident, series);
      return { tree, key, series, generation, version: await kernelVersion(tree), reused: false, durationMs: Date.now() - started };
    },
  });
}

/** Makes a tree: hard-linked from a complete sibling (its series reverted), else unpacked or copied from the source; then the series applied. */
async function makeTree(req: SourceRequest, tree: string, key: string, base: string, ident: { kind: string; id: string; git: boolean }, series: string): Promise<string> {
  rmSync(tree, { recursive: true, force: true });
  mkdirSync(join(req.cacheDir, 'trees'), { recursive: true });
  const tmp = `${tree}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  const forget = onCleanup(() => rmSync(tmp, { recursive: true, force: true }));
  // A fresh tree has the tarball's old file times: builds made from an earlier tree must not be trusted.
  const generation = `${Date.now()}-${process.pid}`;
  try {
    const seed = req.rebuild ? undefined : await copySibling(req, base, key, tmp);
    if (!seed) {
      mkdirSync(tmp, { recursive: true });
      await unpack(req, ident, tmp);
    }
    await applyAll(tmp, req.series, req.logger);
    writeFileAtomic(join(tmp, APPLIED), JSON.stringify(req.series.patches));
    await writeMarker(tmp, key, { source: ident.id, series }, ['Makefile'], { generation, seed }, { manifest: true });
    renameSync(tmp, tree);
  } finally {
    forget();
    rmSync(tmp, { recursive: true, force: true });
  }
  return generation;
}

async function unpack(req: SourceRequest, ident: { kind: string; git: boolean }, tmp: string): Promise<void> {
  const src = resolve(req.kernelSrc);
  if (ident.kind === 'tarball') {
    req.logger.info(`source: unpacking ${src}`);
    await run('tar', ['-xf', src, '-C', tmp, '--strip-components=1'], { logger: req.logger, onFailure: (f) => tarFailure(src, f.output, f.command) });
    // Checked before any patch: a tarball of something else would otherwise end as a patch that "did not apply".
    const missing = KERNEL_TREE_FILES.filter((f) => !existsSync(join(tmp, f)));
    if (missing.length) {
      throw usageError(`kernel source ${src} holds no kernel tree (its top folder has no ${missing.join(', ')})`, {
        hint: 'pass --kernel-src with a Linux source tarball whose files sit under one top folder (linux-6.1/Makefile, ...), e.g. /usr/src/linux-source-6.1.tar.xz, or a kernel tree',
      });
    }
    return;
  }
  req.logger.info(`source: copying ${src} (the tree itself is not modified)`);
  if (ident.git) {
    // Exactly what the identity covers: tracked files as they are now, and untracked ones that are not ignored.
    const list = await run('git', ['-C', src, 'ls-files', '-z', '--cached', '--others', '--exclude-standard']);
    const files = [...new Set(list.stdout.split('\0').filter(Boolean))].filter((f) => existsSync(join(src, f)));
    await run('rsync', ['-a', '--from0', '--files-from=-', `${src}/`, `${tmp}/`], { input: files.join('\0'), logger: req.logger });
  } else {
    await run('rsync', ['-a', '--exclude=/.git', `${src}/`, `${tmp}/`], { logger: req.logger });
  }
  if (existsSync(join(tmp, '.config')) || existsSync(join(tmp, 'include/config'))) {
    // kbuild refuses O= builds from a configured tree; clean the private copy only.
    await run('make', ['-C', tmp, 'mrproper'], { logger: req.logger });
  }
}

/**
 * Copies a complete tree of the same source (another series) into tmp and
 * reverts its series there; cp -a keeps file times, so a build directory
 * copied from that tree's build rebuilds only what the series change.
 */
async function copySibling(req: SourceRequest, base: string, key: string, tmp: string): Promise<SeedInfo | undefined> {
  const dir = join(req.cacheDir, 'trees');
  const names = readdirSync(dir).filter((n) => (n === base || n.startsWith(`${base}-`)) && n !== key && !n.includes('.tmp-'));
  // The most recently used first: the likeliest to have a build of the same config.
  names.sort((a, b) => markerTime(join(dir, b)) - markerTime(join(dir, a)));
  for (const name of names) {
    const sibling = join(dir, name);
    const seed = await withShared(entryLock(req.cacheDir, `trees/${name}`), `source tree trees/${name} (to copy it)`, req.logger, async () => {
      const m = await readValidMarker(sibling);
      if (!m?.manifest || !existsSync(join(sibling, APPLIED))) return undefined;
      req.logger.info(`source: copying trees/${name} (same source, series ${m.inputs.series}) instead of unpacking`);
      // Hard links: a variant costs the files its series changes, not another 1.3 GB tree. Safe
      // because nothing writes into a tree file in place: GNU patch (apply and revert) writes a
      // new file and renames it over the old name, and kbuild builds with O= outside the tree.
      await run('cp', ['-al', sibling, tmp], { logger: req.logger });
      return { key: name, tree: sibling, series: String(m.inputs.series), generation: String(m.meta?.generation) };
    });
    if (!seed) continue;
    rmSync(join(tmp, MARKER), { force: true });
    const old = JSON.parse(readFileSync(join(tmp, APPLIED), 'utf8')) as Patch[];
    const touched = [...new Set([...old, ...req.series.patches].flatMap(touchedFiles))].sort();
    if (await revertAll(tmp, old, req.logger).then(() => true, () => false)) return { ...seed, touched };
    rmSync(tmp, { recursive: true, force: true });
  }
  return undefined;
}

const markerTime = (dir: string) => {
  try {
    return statSync(join(dir, MARKER)).mtimeMs;
  } catch {
    return 0;
  }
};

/** A tree's seed record (see copySibling), from its marker. */
export function treeSeed(tree: string): SeedInfo | undefined {
  try {
    const m = JSON.parse(readFileSync(join(tree, MARKER), 'utf8')) as { meta?: { seed?: SeedInfo } };
    return m.meta?.seed ?? undefined;
  } catch {
    return undefined;
  }
}

/**
 * The trees a build of this one can start from: complete trees of the same
 * source, the one this tree was copied from first, then the most recently
 * used. Each comes with the files the two series touch between them (those
 * must compile again; every other file is the same in both trees).
 */
export async function seedCandidates(cacheDir: string, tree: string, key: string): Promise<SeedInfo[]> {
  const dir = join(cacheDir, 'trees');
  const base = key.split('-')[0]!;
  const mine = readApplied(tree);
  if (!mine) return [];
  const seed = treeSeed(tree);
  const names = readdirSync(dir)
    .filter((n) => (n === base || n.startsWith(`${base}-`)) && n !== key && !n.includes('.tmp-'))
    .sort((a, b) => (a === seed?.key ? -1 : b === seed?.key ? 1 : markerTime(join(dir, b)) - markerTime(join(dir, a))));
  const out: SeedInfo[] = [];
  for (const name of names) {
    const other = join(dir, name);
    const m = await readValidMarker(other);
    const theirs = readApplied(other);
    if (!m?.manifest || !theirs) continue;
    const touched = [...new Set([...theirs, ...mine].flatMap(touchedFiles))].sort();
    out.push({ key: name, tree: other, series: String(m.inputs.series), generation: String(m.meta?.generation), touched });
  }
  return out;
}

function readApplied(tree: string): Patch[] | undefined {
  try {
    return JSON.parse(readFileSync(join(tree, APPLIED), 'utf8')) as Patch[];
  } catch {
    return undefined;
  }
}

/** The applied series, kept in the tree so that it can be reverted. */
const APPLIED = '.klp-applied-series.json';

/** Applies a series in order; a patch that does not apply is reverted-to-pristine and reported. */
async function applyAll(tree: string, series: Series, logger: Logger): Promise<void> {
  const done: Patch[] = [];
  for (const patch of series.patches) {
    logger.info(`patches: applying ${patch.name}`);
    const args = [`-p${patch.strip ?? 1}`, '--forward', '--batch', '-d', tree];
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
    await run('patch', [`-p${patch.strip ?? 1}`, '-R', '--batch', '-s', '-d', tree], { input: patch.text, logger });
  }
}
