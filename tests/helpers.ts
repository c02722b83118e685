// Shared test helpers: project paths and temporary directories.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (tests run from di../..sts/...). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const fixture = (name: string) => join(ROOT, 'tests/fixtures', name);

export function tempDir(t: { teardown(fn: () => void): void }, prefix = 'klp-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
