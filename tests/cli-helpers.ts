// Runs the command-line tool as a child process, as a person would.
import { spawn } from 'node:child_process';
import { nodeChild } from './child-env.js';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './helpers.js';

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs `klp-harness ...`; onStderr may act on progress lines (e.g. send a signal). */
export function runCli(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; onStderr?: (text: string, child: ReturnType<typeof spawn>) => void; timeoutMs?: number } = {},
): Promise<CliResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    const [cmd, argv] = nodeChild(join(ROOT, 'bin/klp-harness.js'), args, opts.env);
    const child = spawn(cmd, argv, {
      env: opts.env ?? process.env,
      cwd: opts.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    const killer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      opts.onStderr?.(stderr, child);
    });
    child.on('close', (code, signal) => {
      clearTimeout(killer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started });
    });
  });
}

/** A directory that looks enough like a kernel tree for the source stage. */
export function fakeKernelTree(dir: string): string {
  mkdirSync(join(dir, 'kernel/livepatch'), { recursive: true });
  writeFileSync(join(dir, 'Makefile'), 'VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 0\nEXTRAVERSION =\n');
  writeFileSync(join(dir, 'Kconfig'), '');
  writeFileSync(join(dir, 'kernel/livepatch/core.c'), 'one\ntwo\nthree\n');
  return dir;
}

/** True while a process exists and is not a zombie. */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}


/** A one-patch series that applies to fakeKernelTree(). */
export function okSeries(dir: string): string {
  writeFileSync(join(dir, 'series'), 'ok.patch\n');
  writeFileSync(join(dir, 'ok.patch'), 'Subject: ok\n---\n--- a/kernel/livepatch/core.c\n+++ b/kernel/livepatch/core.c\n@@ -1,3 +1,3 @@\n one\n-two\n+2\n three\n');
  return dir;
}
