// Shared test helpers: project paths, temporary directories, a process's end.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { procStat } from '../harness/proc/stat.js';

/** The repository root (tests run from di../..sts/...). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const fixture = (name: string) => join(ROOT, 'tests/fixtures', name);

export function tempDir(t: { teardown(fn: () => void): void }, prefix = 'klp-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Whether `ok()` holds within `ms`, looked at every 20 ms. */
export async function soon(ok: () => boolean, ms = 1000): Promise<boolean> {
  for (let i = 0; i < ms / 20; i++) {
    if (ok()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

/** Whether a pid is gone within a second (a killed process is reaped by its parent or init). */
export const goneSoon = (pid: number): Promise<boolean> => soon(() => !procStat(pid));

type Teardown = { teardown(fn: () => void): void };

/** Sets (or, for undefined, removes) environment variables until the test ends. */
export function setEnv(t: Teardown, vars: Record<string, string | undefined>): void {
  for (const [name, value] of Object.entries(vars)) {
    const before = process.env[name];
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
    t.teardown(() => {
      if (before === undefined) delete process.env[name];
      else process.env[name] = before;
    });
  }
}

/** Kills these pids and their groups at the end of the test. */
export function killAtEnd(t: Teardown, ...pids: (() => number | undefined)[]): void {
  t.teardown(() => {
    for (const pid of pids.map((p) => p()).filter((p): p is number => !!p)) {
      for (const target of [-pid, pid]) {
        try {
          process.kill(target, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
  });
}
