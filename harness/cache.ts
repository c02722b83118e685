// The build cache: entries keyed by the content of their inputs, each valid
// only once its completion marker is written (last, atomically). A marker
// lists checksums of the entry's key files so that a truncated or corrupted
// entry is detected and rebuilt, never used.
import { createHash } from 'node:crypto';
import { accessSync, constants, createReadStream, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { infraError } from './errors.js';

export const MARKER = '.klp-complete.json';

/** Resolves the cache root and checks that it is usable. */
export function cacheRoot(explicit?: string): string {
  const root =
    explicit ??
    process.env.KLP_HARNESS_CACHE ??
    join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'klp-harness');
  try {
    mkdirSync(root, { recursive: true });
    accessSync(root, constants.W_OK);
  } catch (e) {
    throw infraError(`cache directory ${root} is not writable`, {
      details: String((e as Error).message),
      hint: 'pass --cache-dir DIR (or set KLP_HARNESS_CACHE) to a directory you can write',
    });
  }
  return root;
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
  files: Record<string, { size: number; sha256: string }>;
  meta?: Record<string, unknown>;
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
    if ((await sha256File(file)) !== want.sha256) return undefined;
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
): Promise<void> {
  const sums: Marker['files'] = {};
  for (const rel of files) {
    const file = join(dir, rel);
    sums[rel] = { size: statSync(file).size, sha256: await sha256File(file) };
  }
  const marker: Marker = { key, created: new Date().toISOString(), inputs, files: sums, meta };
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
