// The kernel's own livepatch selftests (tools/testing/selftests/livepatch),
// run in the guest against the test modules built with the kernel
// (CONFIG_TEST_LIVEPATCH=m). Each upstream "TEST: ... ok" is one check.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { entryLock, useEntry } from '../core/lock.js';
import { writeMarker, readValidMarker } from '../core/cache.js';
import { run } from '../core/exec.js';
import { makeArgs } from '../kernel/build.js';
import { timeout } from '../core/timeouts.js';
import { Skipped, type HostContext, type Scenario } from './types.js';

export const SELFTEST_DIR = 'tools/testing/selftests/livepatch';

/** The scripts the upstream Makefile lists in TEST_PROGS, in its order. */
export function upstreamScripts(makefile: string): string[] {
  const m = /TEST_PROGS\s*:?=((?:[^\n]*\\\n)*[^\n]*)/.exec(makefile);
  return (m?.[1] ?? '').replace(/\\\n/g, ' ').split(/\s+/).filter((s) => s.endsWith('.sh'));
}

export interface UpstreamCase {
  name: string;
  ok: boolean;
  /** For a failed case: what the script printed after "not ok" (its expected-vs-result diff). */
  output: string;
}

/** Parses a selftest script's output: "TEST: <name> ... ok" or "... not ok" followed by a diff. */
export function parseUpstreamOutput(text: string): UpstreamCase[] {
  const cases: UpstreamCase[] = [];
  let current: UpstreamCase | undefined;
  for (const line of text.split('\n')) {
    const m = /^TEST: (.*?) \.\.\. (ok|not ok)\s*$/.exec(line);
    if (m) {
      current = { name: m[1]!, ok: m[2] === 'ok', output: '' };
      cases.push(current);
    } else if (current && !current.ok) {
      current.output += line + '\n';
    }
  }
  return cases;
}

/** Installs the kernel's modules (test_klp_* among them) into a staging tree with depmod, once per build. */
async function stageModules(ctx: HostContext, tree: string): Promise<string> {
  const staging = join(ctx.build.buildDir, 'klp-modules-staging');
  const name = `${ctx.build.buildDir.slice(ctx.build.buildDir.lastIndexOf('builds/'))}/klp-modules-staging`;
  return useEntry({
    lock: entryLock(join(ctx.build.buildDir, '../..'), name),
    what: `selftest modules ${name}`,
    logger: ctx.logger,
    check: async () => ((await readValidMarker(staging)) ? staging : undefined),
    make: async () => {
      rmSync(staging, { recursive: true, force: true });
      await run('make', [...makeArgs(ctx.arch, tree, ctx.build.buildDir), `INSTALL_MOD_PATH=${staging}`, 'modules_install'], {
        logPath: join(ctx.build.buildDir, 'modules-install.log'),
        logger: ctx.logger,
      });
      await writeMarker(staging, ctx.build.key, {}, []);
      return staging;
    },
  });
}

const hasTestModules = (host: HostContext) => /^CONFIG_TEST_LIVEPATCH=m$/m.test(readFileSync(join(host.build.buildDir, '.config'), 'utf8'));

export const kselftest: Scenario = {
  name: 'kselftest',
  description: "the kernel's livepatch selftests, one check per upstream test case",
  casesAreChecks: true,
  image: 'kselftest',
  prepare: async (host) => {
    if (hasTestModules(host)) await stageModules(host, host.tree);
  },
  async run(ctx) {
    const tree = ctx.tree;
    // 6.12 and later build the test modules out of tree (tools/testing/selftests/livepatch/test_modules/); not staged here yet.
    if (!hasTestModules(ctx)) {
      throw new Skipped('this kernel has no CONFIG_TEST_LIVEPATCH (its selftest modules are built out of tree from tools/testing/selftests/livepatch/test_modules/, which the harness does not stage yet)');
    }
    const scripts = upstreamScripts(readFileSync(join(tree, SELFTEST_DIR, 'Makefile'), 'utf8'));
    await ctx.step('install the test modules and the selftest scripts', async (s) => {
      const staging = await stageModules(ctx, tree);
      // Tars of this run only: two runs (or two CPUs of one) on one build must not overwrite each other's.
      const scratch = mkdtempSync(join(tmpdir(), 'klp-kselftest-'));
      try {
        const modsTar = join(scratch, 'modules.tar');
        const scriptsTar = join(scratch, 'kselftest.tar');
        await run('tar', ['-C', staging, '-cf', modsTar, 'lib']);
        await run('tar', ['-C', join(tree, 'tools/testing/selftests'), '-cf', scriptsTar, 'livepatch']);
        await ctx.ops.put(readFileSync(modsTar), '/tmp/modules.tar');
        await ctx.ops.put(readFileSync(scriptsTar), '/tmp/kselftest.tar');
      } finally {
        rmSync(scratch, { recursive: true, force: true });
      }
      const r = await ctx.ops.run('tar -x -C / -f /tmp/modules.tar && mkdir -p /root/kselftest && tar -x -C /root/kselftest -f /tmp/kselftest.tar && modprobe --dry-run test_klp_livepatch && echo installed');
      s.equal('test modules installed (modprobe --dry-run test_klp_livepatch)', r.stdout.trim() || r.stderr.trim(), 'installed');
      s.equal('upstream scripts found', String(scripts.length > 0 && existsSync(join(tree, SELFTEST_DIR, scripts[0]!))), 'true');
    });
    for (const script of scripts) {
      await ctx.step(`upstream ${script}`, async (s) => {
        const limit = timeout('transition', ctx.arch) * 60;
        const r = await ctx.ops.run(`cd /root/kselftest/livepatch && bash ./${script} 2>&1; echo "EXIT=$?"`, limit);
        const exit = /EXIT=(\d+)\s*$/.exec(r.stdout)?.[1] ?? '?';
        const cases = parseUpstreamOutput(r.stdout);
        for (const c of cases) s.equal(`${script}: ${c.name}`, c.ok ? 'ok' : `not ok\n${c.output.trim()}`, 'ok');
        s.equal(`${script} exit status${exit === '4' ? ' (4: skipped)' : ''}`, exit === '0' ? '0' : `${exit}\n${r.stdout.split('\n').slice(-15).join('\n')}`, '0');
      });
    }
  },
};
