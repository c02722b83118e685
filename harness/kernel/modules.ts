// The out-of-tree guest modules (guest/modules) built against one kernel
// build, cached beside it by the content of their sources and flags.
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { ArchRecord } from '../core/arch.js';
import { compilerErrors, makeArgs, type BuildResult } from './build.js';
import { hashOf, readValidMarker, writeMarker } from '../core/cache.js';
import { entryLock, useEntry } from '../core/lock.js';
import { buildError } from '../core/errors.js';
import { run } from '../proc/exec.js';
import type { Logger } from '../core/log.js';

export const GUEST_MODULES = ['klp_sleeper.ko', 'klp_sleeper_lp.ko', 'klp_sleeper_lp_replace.ko'];
/** User programs built beside the modules (no libc in the guest for them: freestanding, static). */
export const GUEST_PROGRAMS = ['restart-canary', 'thread-blocker'];
export const PROGRAM_CFLAGS = ['-O2', '-static', '-nostdlib', '-ffreestanding', '-fno-builtin', '-fno-stack-protector', '-fno-pie', '-no-pie', '-fno-asynchronous-unwind-tables', '-Wall'];

export interface ModulesResult {
  dir: string;
  modules: Record<string, string>;
  reused: boolean;
}

export async function buildGuestModules(opts: {
  arch: ArchRecord;
  build: BuildResult;
  tree: string;
  sourceDir: string;
  logger: Logger;
  /** The cache root (default: two levels above the build directory, where builds/ is). */
  cacheDir?: string;
  /** Where the entry goes instead of <build>/klp-guest-modules/ (a kbuild tree that is not ours: a binary kernel's), relative to cacheDir. */
  entry?: string;
  /** More make variables (CC= for a binary kernel's own compiler). */
  makeVars?: string[];
}): Promise<ModulesResult> {
  const { arch, build } = opts;
  const sources = readdirSync(opts.sourceDir).sort();
  const key = hashOf(build.key, arch.moduleCflags, ...arch.userCflags, ...PROGRAM_CFLAGS, ...(opts.makeVars ?? []), ...sources.flatMap((f) => [f, readFileSync(join(opts.sourceDir, f))]));
  const cacheDir = opts.cacheDir ?? join(build.buildDir, '../..');
  const name = opts.entry ? `${opts.entry}/${key}` : `${build.buildDir.slice(build.buildDir.lastIndexOf('builds/'))}/klp-guest-modules/${key}`;
  const dir = opts.entry ? join(cacheDir, name) : join(build.buildDir, 'klp-guest-modules', key);
  const modules = Object.fromEntries([...GUEST_MODULES, ...GUEST_PROGRAMS].map((m) => [m, join(dir, m)]));
  const check = async () => ((await readValidMarker(dir)) ? { dir, modules, reused: true } : undefined);
  return useEntry({ lock: entryLock(cacheDir, name), what: `guest modules ${name}`, logger: opts.logger, check, make: () => make(opts, dir, key, modules) });
}

async function make(opts: { arch: ArchRecord; build: BuildResult; tree: string; sourceDir: string; logger: Logger; makeVars?: string[] }, dir: string, key: string, modules: Record<string, string>): Promise<ModulesResult> {
  const { arch, build } = opts;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  cpSync(opts.sourceDir, dir, { recursive: true });
  const logPath = join(dir, 'build.log');
  opts.logger.info(`modules ${arch.name}: building ${[...GUEST_MODULES, ...GUEST_PROGRAMS].join(', ')}`);
  // External modules build from the kernel's output directory, which knows its source tree.
  const args = ['-C', build.buildDir, ...makeArgs(arch, opts.tree, build.buildDir).slice(3), `M=${dir}`, `KLP_LP_CFLAGS=${arch.moduleCflags}`, ...(opts.makeVars ?? []), 'modules'];
  await run('make', args, {
    logPath,
    logger: opts.logger,
    onFailure: (f) =>
      buildError(`guest modules for ${arch.name} failed to build`, {
        arch: arch.name,
        command: f.command,
        exitCode: f.exitCode,
        logPath,
        details: compilerErrors(f.output).join('\n'),
      }),
  });
  for (const program of GUEST_PROGRAMS) {
    await run(`${arch.crossCompile}gcc`, [...PROGRAM_CFLAGS, ...arch.userCflags, '-o', join(dir, program), join(dir, `${program}.c`)], {
      logPath: join(dir, `${program}.log`),
      logger: opts.logger,
      onFailure: (f) =>
        buildError(`guest program ${program} for ${arch.name} failed to build`, { arch: arch.name, command: f.command, exitCode: f.exitCode, logPath: join(dir, `${program}.log`), details: compilerErrors(f.output).join('\n') }),
    });
  }
  await writeMarker(dir, key, { build: build.key }, [...GUEST_MODULES, ...GUEST_PROGRAMS]);
  return { dir, modules, reused: false };
}
