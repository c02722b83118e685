// The kernel's own livepatch selftests (tools/testing/selftests/livepatch),
// run in the guest against the kernel's test modules: built with the kernel
// (CONFIG_TEST_LIVEPATCH=m, up to 6.10) or out of tree from the selftests'
// own test_modules/ (6.11 and later). Each upstream "TEST: ... ok" is one check.
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { entryLock, useEntry } from '../core/lock.js';
import { hashOf, writeMarker, readValidMarker } from '../core/cache.js';
import { run } from '../proc/exec.js';
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

/** A staging directory beside the build, made once under its cache lock; `sub` is its path under the build. */
function stagedBesideBuild(ctx: HostContext, sub: string, make: (staging: string) => Promise<void>): Promise<string> {
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
function stageModules(ctx: HostContext, tree: string): Promise<string> {
  return stagedBesideBuild(ctx, 'klp-modules-staging', async (staging) => {
    await run('make', [...makeArgs(ctx.arch, tree, ctx.build.buildDir), `INSTALL_MOD_PATH=${staging}`, 'modules_install'], {
      logPath: join(ctx.build.buildDir, 'modules-install.log'),
      logger: ctx.logger,
    });
    await writeMarker(staging, ctx.build.key, {}, []);
  });
}

/** The selftests' out-of-tree modules (test_modules/) and programs (TEST_GEN_FILES), built once per build and sources. */
function stageOutOfTree(ctx: HostContext, tree: string): Promise<string> {
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

const hasTestModules = (host: HostContext) => /^CONFIG_TEST_LIVEPATCH=m$/m.test(readFileSync(join(host.build.buildDir, '.config'), 'utf8'));
const hasOutOfTreeModules = (host: HostContext) => existsSync(join(host.tree, SELFTEST_DIR, 'test_modules', 'Makefile'));

export const kselftest: Scenario = {
  name: 'kselftest',
  expectedSeconds: 90,
  description: "the kernel's livepatch selftests, one check per upstream test case",
  casesAreChecks: true,
  image: 'kselftest',
  prepare: async (host) => {
    if (hasTestModules(host)) await stageModules(host, host.tree);
    else if (hasOutOfTreeModules(host)) await stageOutOfTree(host, host.tree);
  },
  async run(ctx) {
    const tree = ctx.tree;
    const inTree = hasTestModules(ctx);
    const outOfTree = hasOutOfTreeModules(ctx);
    if (!inTree && !outOfTree) {
      throw new Skipped(`this kernel has neither CONFIG_TEST_LIVEPATCH=m nor ${SELFTEST_DIR}/test_modules/: no livepatch selftest modules to run`);
    }
    const scripts = upstreamScripts(readFileSync(join(tree, SELFTEST_DIR, 'Makefile'), 'utf8'));
    await ctx.step('install the test modules and the selftest scripts', async (s) => {
      const staging = inTree ? await stageModules(ctx, tree) : await stageOutOfTree(ctx, tree);
      // Tars of this run only: two runs (or two CPUs of one) on one build must not overwrite each other's.
      const scratch = mkdtempSync(join(tmpdir(), 'klp-kselftest-'));
      try {
        const modsTar = join(scratch, 'modules.tar');
        const scriptsTar = join(scratch, 'kselftest.tar');
        // In tree: /lib/modules/<release>/ for modprobe; out of tree: beside the scripts, where functions.sh insmods them.
        const outOfTreeFiles = () => readdirSync(staging, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ko') || f.startsWith('test_klp-'));
        await run('tar', ['-C', staging, '-cf', modsTar, ...(inTree ? ['lib'] : outOfTreeFiles())]);
        await run('tar', ['-C', join(tree, 'tools/testing/selftests'), '-cf', scriptsTar, 'livepatch']);
        await ctx.ops.put(readFileSync(modsTar), '/tmp/modules.tar');
        await ctx.ops.put(readFileSync(scriptsTar), '/tmp/kselftest.tar');
      } finally {
        rmSync(scratch, { recursive: true, force: true });
      }
      const install = inTree
        ? 'tar -x -C / -f /tmp/modules.tar && mkdir -p /root/kselftest && tar -x -C /root/kselftest -f /tmp/kselftest.tar && /sbin/modprobe --dry-run test_klp_livepatch && echo installed'
        : 'mkdir -p /root/kselftest && tar -x -C /root/kselftest -f /tmp/kselftest.tar && tar -x -C /root/kselftest/livepatch -f /tmp/modules.tar && /sbin/modinfo -F name /root/kselftest/livepatch/test_modules/test_klp_livepatch.ko >/dev/null && echo installed';
      // kmod's tools by path: the static busybox's shell runs its own applets first (modprobe without --dry-run).
      const r = await ctx.ops.run(install);
      s.equal(`test modules installed (${inTree ? 'modprobe --dry-run' : 'modinfo test_modules/'} test_klp_livepatch)`, r.stdout.trim() || r.stderr.trim(), 'installed');
      s.equal('upstream scripts found', String(scripts.length > 0 && existsSync(join(tree, SELFTEST_DIR, scripts[0]!))), 'true');
    });
    for (const script of scripts) {
      await ctx.step(`upstream ${script}`, async (s) => {
        const limit = timeout('transition', ctx.arch) * 60;
        // KDIR: 6.11+ scripts only check that it exists (the modules are built on the host already).
        const r = await ctx.ops.run(`cd /root/kselftest/livepatch && KDIR=/root/kselftest bash ./${script} 2>&1; echo "EXIT=$?"`, limit);
        const exit = /EXIT=(\d+)\s*$/.exec(r.stdout)?.[1] ?? '?';
        const cases = parseUpstreamOutput(r.stdout);
        for (const c of cases) s.equal(`${script}: ${c.name}`, c.ok ? 'ok' : `not ok\n${c.output.trim()}`, 'ok');
        // 4 is kselftest's skip. A script may skip only for a kernel option it names (6.12+'s
        // test-kprobe.sh needs CONFIG_KPROBES_ON_FTRACE, which kconfigs/ leaves out); a skip for
        // anything else (not root, a missing tool in the image) is the harness's failure.
        const skip = exit === '4' ? /requires CONFIG_\w+/.exec(r.stdout)?.[0] : undefined;
        if (skip) s.match(`${script} exit status`, `4 (skipped: ${skip})`, /^4 \(skipped: requires CONFIG_\w+\)$/);
        else s.equal(`${script} exit status`, exit === '0' ? '0' : `${exit}\n${r.stdout.split('\n').slice(-15).join('\n')}`, '0');
      });
    }
  },
};
