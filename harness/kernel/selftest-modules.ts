// The livepatch selftests' modules, built once per kernel build and kept
// beside it: the kernel's own test_klp_* modules (CONFIG_TEST_LIVEPATCH=m, up
// to 6.10), installed into a staging tree, or the selftests' out-of-tree
// test_modules/ and programs (6.11 and later). scenarios/kselftest.ts runs them.
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { ArchRecord } from '../core/arch.js';
import { hashOf, readValidMarker, writeMarker } from '../core/cache.js';
import { entryLock, useEntry } from '../core/lock.js';
import type { Logger } from '../core/log.js';
import { run } from '../proc/exec.js';
import { makeArgs } from './build.js';

export const SELFTEST_DIR = 'tools/testing/selftests/livepatch';

/** What building them needs: the arch, the kernel build, its tree. */
export interface SelftestHost {
  arch: ArchRecord;
  build: { buildDir: string; key: string };
  tree: string;
  logger: Logger;
}

/** A staging directory beside the build, made once under its cache lock; `sub` is its path under the build. */
function stagedBesideBuild(ctx: SelftestHost, sub: string, make: (staging: string) => Promise<void>): Promise<string> {
  const staging = join(ctx.build.buildDir, sub);
  const name = `${ctx.build.buildDir.slice(ctx.build.buildDir.lastIndexOf('builds/'))}/${sub}`;
  return useEntry({
    lock: entryLock(join(ctx.build.buildDir, '../..'), name),
    what: `selftest modules ${name}`,
    logger: ctx.logger,
    check: async () => ((await readValidMarker(staging)) ? staging : undefined),
    make: async () => {
      rmSync(staging, { recursive: true, force: true });
      await make(staging);
      return staging;
    },
  });
}

/** Installs the kernel's modules (test_klp_* among them) into a staging tree with depmod, once per build. */
export function stageModules(ctx: SelftestHost, tree: string): Promise<string> {
  return stagedBesideBuild(ctx, 'klp-modules-staging', async (staging) => {
    await run('make', [...makeArgs(ctx.arch, tree, ctx.build.buildDir), `INSTALL_MOD_PATH=${staging}`, 'modules_install'], {
      logPath: join(ctx.build.buildDir, 'modules-install.log'),
      logger: ctx.logger,
    });
    await writeMarker(staging, ctx.build.key, {}, []);
  });
}

/** The selftests' out-of-tree modules (test_modules/) and programs (TEST_GEN_FILES), built once per build and sources. */
export function stageOutOfTree(ctx: SelftestHost, tree: string): Promise<string> {
  const src = join(tree, SELFTEST_DIR);
  const programs = readdirSync(src).filter((f) => f.endsWith('.c'));
  const sources = [...readdirSync(join(src, 'test_modules')).sort().map((f) => join('test_modules', f)), ...programs];
  const key = hashOf(ctx.build.key, ...sources.flatMap((f) => [f, readFileSync(join(src, f))]));
  return stagedBesideBuild(ctx, join('klp-selftest-modules', key), async (staging) => {
    mkdirSync(staging, { recursive: true });
    cpSync(join(src, 'test_modules'), join(staging, 'test_modules'), { recursive: true });
    const logPath = join(staging, 'build.log');
    ctx.logger.info(`kselftest ${ctx.arch.name}: building the selftests' test_modules/ and ${programs.join(', ') || 'no programs'} out of tree`);
    await run('make', ['-C', ctx.build.buildDir, ...makeArgs(ctx.arch, tree, ctx.build.buildDir).slice(3), `M=${join(staging, 'test_modules')}`, 'modules'], { logPath, logger: ctx.logger });
    for (const c of programs) {
      // Static: the guest image has a C library, but not necessarily the one these link against.
      await run(`${ctx.arch.crossCompile}gcc`, ['-O2', '-static', '-o', join(staging, c.replace(/\.c$/, '')), join(src, c)], { logPath: join(staging, 'programs.log'), logger: ctx.logger });
    }
    const built = readdirSync(join(staging, 'test_modules')).filter((f) => f.endsWith('.ko'));
    await writeMarker(staging, key, { build: ctx.build.key }, [...built.map((f) => join('test_modules', f)), ...programs.map((c) => c.replace(/\.c$/, ''))]);
  });
}

export const hasTestModules = (host: SelftestHost) => /^CONFIG_TEST_LIVEPATCH=m$/m.test(readFileSync(join(host.build.buildDir, '.config'), 'utf8'));
export const hasOutOfTreeModules = (host: SelftestHost) => existsSync(join(host.tree, SELFTEST_DIR, 'test_modules', 'Makefile'));
