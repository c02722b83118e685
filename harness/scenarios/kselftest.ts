// The kernel's own livepatch selftests (tools/testing/selftests/livepatch),
// run in the guest against the kernel's test modules: built with the kernel
// (CONFIG_TEST_LIVEPATCH=m, up to 6.10) or out of tree from the selftests'
// own test_modules/ (6.11 and later). Each upstream "TEST: ... ok" is one check.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../proc/exec.js';
import { hasOutOfTreeModules, hasTestModules, SELFTEST_DIR, stageModules, stageOutOfTree } from '../kernel/selftest-modules.js';
import { timeout } from '../core/timeouts.js';
import { Skipped, type Scenario } from './types.js';

export { SELFTEST_DIR };

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

export const kselftest: Scenario = {
  name: 'kselftest',
  // 17 s on both arches here (2026-12-02, norandmaps; 31 and 34 s before it).
  expectedSeconds: 17,
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
