// `npm run bench`: measures what issue "Speed" asks, on this machine, and
// writes bench/RESULTS.md. Prints figures; asserts nothing.
//   cold build per arch vs a plain make of the same .config and tree
//   warm full matrix per arch (both arches alongside, as the main job runs)
//   boot to SSH per arch, median of 5
//   remedy-to-completion latency per scenario
//   the kernel's own KUnit runner on the same tree, as a peer
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { ARCHES, type ArchRecord } from '../harness/core/arch.js';
import { bootGuest } from '../harness/vm/boot.js';
import { buildKernel, makeArgs } from '../harness/kernel/build.js';
import { cacheRoot } from '../harness/core/cache.js';
import { run } from '../harness/core/exec.js';
import { loadKeys } from '../harness/image/keys.js';
import { createLogger } from '../harness/core/log.js';
import { readSeries } from '../harness/kernel/patches.js';
import { PROJECT_ROOT } from '../harness/core/paths.js';
import { prepareArch } from '../harness/pipeline/prepare.js';
import { runMain } from '../harness/pipeline/run.js';
import { pickAccel } from '../harness/vm/qemu.js';
import { SCENARIOS } from '../harness/scenarios/index.js';
import { DEFAULT_KERNEL_SRC, prepareSource } from '../harness/kernel/source.js';

const args = new Set(process.argv.slice(2));
const skipCold = args.has('--no-cold');
const skipKunit = args.has('--no-kunit');
const logger = createLogger(args.has('--verbose') ? 'verbose' : 'quiet');
const lines: string[] = [];
const say = (s = '') => {
  lines.push(s);
  process.stdout.write(s + '\n');
};
const sec = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const arches: ArchRecord[] = Object.values(ARCHES);
const cacheDir = cacheRoot();
const series = readSeries(join(PROJECT_ROOT, 'patches'));
const keys = loadKeys(cacheDir);
const initScript = readFileSync(join(PROJECT_ROOT, 'guest/init'), 'utf8');
const jobs = availableParallelism();

say('# klp-harness benchmark');
say();
say(`- date: ${new Date().toISOString()}`);
say(`- machine: ${cpus()[0]?.model ?? '?'}, ${jobs} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, accel x86_64=${pickAccel(ARCHES.x86_64!)} ppc64le=${pickAccel(ARCHES.ppc64le!)}`);
say(`- command: npm run bench${process.argv.slice(2).length ? ' -- ' + process.argv.slice(2).join(' ') : ''}`);
say(`- kernel: ${DEFAULT_KERNEL_SRC} + patches/ (${series.patches.length} patch)`);
say();

/**
 * Puts both timed builds on the same footing: nothing left to write back, and
 * the source tree read into the page cache just before. (This host reclaims
 * idle page cache within minutes, so without this the first build of a pair
 * reads the tree from disk and the second finds it warm: seen as 11% here.)
 */
async function settle(tree: string) {
  await run('sync', []);
  await run('sh', ['-c', 'find . -type f -print0 | xargs -0 cat > /dev/null'], { cwd: tree });
}

if (!skipCold) {
  say('## Cold build per arch: harness vs plain make');
  say();
  say('| arch | harness (config + make) | plain make (same .config, same tree) | ratio |');
  say('| --- | --- | --- | --- |');
  const coldCache = mkdtempSync(join(tmpdir(), 'klp-bench-cold-'));
  try {
    const t0 = Date.now();
    const src = await prepareSource({ kernelSrc: DEFAULT_KERNEL_SRC, series, cacheDir: coldCache, logger });
    const srcMs = Date.now() - t0;
    for (const arch of arches) {
      await settle(src.tree);
      const h = await buildKernel({ arch, tree: src.tree, treeKey: src.key, series: src.series, generation: src.generation, kconfigDir: join(PROJECT_ROOT, 'kconfigs'), cacheDir: coldCache, logger });
      const plainDir = join(coldCache, `plain-${arch.name}`);
      mkdirSync(plainDir, { recursive: true });
      copyFileSync(join(h.buildDir, '.config'), join(plainDir, '.config'));
      const base = makeArgs(arch, src.tree, plainDir);
      await settle(src.tree);
      const p0 = Date.now();
      await run('make', [...base, 'olddefconfig']);
      await run('make', [...base, `-j${jobs}`, arch.imageTarget, 'modules']);
      const plainMs = Date.now() - p0;
      say(`| ${arch.name} | ${sec(h.durationMs)} | ${sec(plainMs)} | ${(h.durationMs / plainMs).toFixed(3)} |`);
      rmSync(plainDir, { recursive: true, force: true });
    }
    say();
    say(`Source unpack + patch (once for both): ${sec(srcMs)}.`);
    say();
  } finally {
    rmSync(coldCache, { recursive: true, force: true });
  }
}

// Make sure the default cache is warm before timing warm runs.
const src = await prepareSource({ kernelSrc: DEFAULT_KERNEL_SRC, series, cacheDir, logger });
const prepared = new Map<string, Awaited<ReturnType<typeof prepareArch>>>();
for (const arch of arches) prepared.set(arch.name, await prepareArch({ arch, src, keys, initScript, cacheDir, logger }));

say('## Boot to SSH, median of 5');
say();
say('| arch | cpu | median | all |');
say('| --- | --- | --- | --- |');
for (const arch of arches) {
  const { build, image } = prepared.get(arch.name)!;
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const dir = mkdtempSync(join(tmpdir(), 'klp-bench-boot-'));
    {
      await using b = await bootGuest({ arch, kernel: build.image, initrd: image.path, keys, consoleLog: join(dir, 'console.log'), logger });
      times.push(b.bootMs);
    }
    rmSync(dir, { recursive: true, force: true });
  }
  say(`| ${arch.name} | ${arch.qemu.cpuModels[0]} | ${sec(median(times))} | ${times.map(sec).join(', ')} |`);
}
say();

say('## Warm full matrix (both arches alongside, as `klp-harness run` does)');
say();
const runDir = mkdtempSync(join(tmpdir(), 'klp-bench-run-'));
const w0 = Date.now();
const report = await runMain({ arches, scenarios: [...SCENARIOS], logger, outDir: runDir });
process.stdout.write(`(logs of this run: ${runDir})\n`);
const wallMs = Date.now() - w0;
say('| arch | scenarios | passed | wall, first boot to last scenario end | sum of scenario times | sum of boot times (overlapping scenarios) |');
say('| --- | --- | --- | --- | --- | --- |');
for (const a of report.arches) {
  const scen = a.scenarios.reduce((s, x) => s + x.durationMs, 0);
  const boots = a.boots.reduce((s, b) => s + (b.bootMs ?? 0), 0);
  say(`| ${a.arch} | ${a.scenarios.length} | ${a.scenarios.filter((s) => s.ok).length} | ${sec(a.scenariosWallMs ?? 0)} | ${sec(scen)} | ${sec(boots)} |`);
}
say();
say(`Wall time for both arches together: ${sec(wallMs)} (goal: under 180 s). Exit code ${report.exitCode}.`);
say();
say('## Remedy to completion, per scenario');
say();
say('From the write to `signal`/`force`/`enabled` to the transition seen finished by the guest-side wait (guest clock, 100 ms polls of `transition` inside one SSH command); `stuckSeenMs` is from loading the patch to the stuck state confirmed over 3 s of retries.');
say();
say('| arch | scenario | cpu | remedyToDoneMs | stuckSeenMs | other |');
say('| --- | --- | --- | --- | --- | --- |');
for (const a of report.arches) {
  for (const s of a.scenarios) {
    const { remedyToDoneMs, stuckSeenMs, ...rest } = s.timings;
    const other = Object.entries(rest).map(([k, v]) => `${k}=${v}`).join(' ');
    say(`| ${a.arch} | ${s.name} | ${s.cpu ?? ''} | ${remedyToDoneMs ?? ''} | ${stuckSeenMs ?? ''} | ${other} |`);
  }
}
say();

if (!skipKunit) {
  say('## Peer: the kernel\'s KUnit runner on the same tree');
  say();
  say('`tools/testing/kunit/kunit.py run --arch=ARCH --kunitconfig=lib/kunit/.kunitconfig` (configure + build + boot + parse), same tree, same machine.');
  say();
  say('| arch | kunit.py run | result |');
  say('| --- | --- | --- |');
  for (const [arch, extra] of [['x86_64', []], ['powerpc', ['--cross_compile=powerpc64le-linux-gnu-']]] as const) {
    const dir = mkdtempSync(join(tmpdir(), `klp-bench-kunit-${arch}-`));
    const k0 = Date.now();
    const r = await run('python3', ['tools/testing/kunit/kunit.py', 'run', `--arch=${arch}`, `--build_dir=${dir}`, `--jobs=${jobs}`, '--kunitconfig=lib/kunit/.kunitconfig', ...extra], {
      cwd: src.tree,
      timeoutMs: 15 * 60_000,
    }).then(
      (x) => `ok: ${/Testing complete\. (.*)/.exec(x.output)?.[1] ?? 'done'}`,
      (e: Error) => `failed: ${e.message.split('\n')[0]}`,
    );
    say(`| ${arch} | ${sec(Date.now() - k0)} | ${r} |`);
    rmSync(dir, { recursive: true, force: true });
  }
  say();
}

mkdirSync(join(PROJECT_ROOT, 'bench'), { recursive: true });
writeFileSync(join(PROJECT_ROOT, 'bench/RESULTS.md'), lines.join('\n') + '\n');
process.stdout.write(`\nwritten to bench/RESULTS.md\n`);
