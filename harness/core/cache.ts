// The build cache: entries keyed by the content of their inputs, each valid
// only once its completion marker is written (last, atomically). A marker
// lists checksums of the entry's key files so that a truncated or corrupted
// entry is detected and rebuilt, never used.
import { createHash } from 'node:crypto';
import { accessSync, constants, createReadStream, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { infraError } from './errors.js';

export const MARKER = '.klp-complete.json';

/** An environment variable, with an empty value counting as unset. */
export const envVar = (name: string): string | undefined => process.env[name] || undefined;

/**
 * Resolves the cache root (always absolute: it ends up in `make O=`) and
 * checks that it is usable and trustworthy: what is in it is built and run
 * (kernels, initramfs with the guest's keys), so it must be ours alone.
 */
export function cacheRoot(explicit?: string): string {
  const root = resolve(explicit || envVar('KLP_HARNESS_CACHE') || join(envVar('XDG_CACHE_HOME') ?? join(homedir(), '.cache'), 'klp-harness'));
  try {
    if (!existsSync(root)) mkdirSync(root, { recursive: true, mode: 0o700 });
    accessSync(root, constants.W_OK);
  } catch (e) {
    throw infraError(`cache directory ${root} is not writable`, {
      details: String((e as Error).message),
      hint: 'pass --cache-dir DIR (or set KLP_HARNESS_CACHE) to a directory you can write',
    });
  }
  checkOwnership(root);
  return root;
}

/** Refuses a cache root another user owns or others may write: they could plant kernels or read keys. */
export function checkOwnership(root: string): void {
  const st = statSync(root);
  const uid = process.getuid?.();
  const problem =
    uid !== undefined && st.uid !== uid
      ? `is owned by uid ${st.uid}, not by you (uid ${uid})`
      : st.mode & 0o022
        ? `is writable by ${st.mode & 0o002 ? 'everyone' : 'its group'} (mode ${(st.mode & 0o777).toString(8)})`
        : undefined;
  if (problem) {
    throw infraError(`cache directory ${root} ${problem}`, {
      hint: `another user could plant a kernel or an image there: use a directory of your own (--cache-dir), or fix it with chown/chmod go-w ${root}`,
    });
  }
}

/** A short, stable hash of the given parts. */
export function hashOf(...parts: (string | Buffer)[]): string {
  const h = createHash('sha256');
  for (const p of parts) {
    h.update(String(Buffer.byteLength(p)));
    h.update(':');
    h.update(p);
  }
  return h.digest('hex').slice(0, 16);
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

interface Marker {
  key: string;
  created: string;
  inputs: Record<string, string>;
  /** sizeOnly: the file is checked by its size alone (a big file read on every use would cost more than it protects). */
  files: Record<string, { size: number; sha256: string } | { size: number; sizeOnly: true }>;
  /** For big entries (a source tree): every file's path and size, hashed, so that a partial or planted tree is not taken. */
  manifest?: { files: number; digest: string };
  meta?: Record<string, unknown>;
}

/** Path, size (or link target) of every file under dir but the marker, as a count and a digest. Only stats: about 1 s for a kernel tree. */
export function treeManifest(dir: string): { files: number; digest: string } {
  const h = createHash('sha256');
  let files = 0;
  const walk = (rel: string) => {
    const names = readdirSync(join(dir, rel)).sort();
    for (const n of names) {
      const r = rel ? `${rel}/${n}` : n;
      if (r === MARKER) continue;
      const st = lstatSync(join(dir, r));
      if (st.isDirectory()) {
        walk(r);
        continue;
      }
      files++;
      h.update(`${r}\0${st.isSymbolicLink() ? `->${readlinkSync(join(dir, r))}` : st.size}\n`);
    }
  };
  walk('');
  return { files, digest: h.digest('hex') };
}

/** Reads an entry's marker if every file it lists is intact; else undefined. */
export async function readValidMarker(dir: string): Promise<Marker | undefined> {
  const path = join(dir, MARKER);
  if (!existsSync(path)) return undefined;
  let marker: Marker;
  try {
    marker = JSON.parse(readFileSync(path, 'utf8')) as Marker;
  } catch {
    return undefined;
  }
  for (const [rel, want] of Object.entries(marker.files ?? {})) {
    const file = join(dir, rel);
    if (!existsSync(file) || statSync(file).size !== want.size) return undefined;
    if (!('sizeOnly' in want && want.sizeOnly) && (await sha256File(file)) !== (want as { sha256?: string }).sha256) return undefined;
  }
  if (marker.manifest) {
    const now = treeManifest(dir);
    if (now.files !== marker.manifest.files || now.digest !== marker.manifest.digest) return undefined;
  }
  // The marker's time says when the entry was last used (for pruning).
  const now = new Date();
  utimesSync(path, now, now);
  return marker;
}

/** Writes the marker last: the entry counts as complete only after this. */
export async function writeMarker(
  dir: string,
  key: string,
  inputs: Record<string, string>,
  files: string[],
  meta?: Record<string, unknown>,
  opts: { manifest?: boolean; sizeOnly?: string[] } = {},
): Promise<void> {
  const sums: Marker['files'] = {};
  for (const rel of files) {
    const file = join(dir, rel);
    sums[rel] = { size: statSync(file).size, sha256: await sha256File(file) };
  }
  for (const rel of opts.sizeOnly ?? []) sums[rel] = { size: statSync(join(dir, rel)).size, sizeOnly: true };
  const manifest = opts.manifest ? treeManifest(dir) : undefined;
  const marker: Marker = { key, created: new Date().toISOString(), inputs, files: sums, manifest, meta };
  writeFileAtomic(join(dir, MARKER), JSON.stringify(marker, null, 2) + '\n');
}

export function invalidate(dir: string): void {
  rmSync(join(dir, MARKER), { force: true });
}

/** Writes a file through a temporary name and a rename. */
export function writeFileAtomic(path: string, data: string | Buffer, mode?: number): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data, { mode });
  renameSync(tmp, path);
}
