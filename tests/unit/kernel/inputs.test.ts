// Inputs checked at the door (issue 14): each bad input is refused before any
// work with exit 4 and a message saying what, where and what to do.
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { EXIT } from '../../../harness/core/errors.js';
import { createLogger } from '../../../harness/core/log.js';
import { readSeries } from '../../../harness/kernel/patches.js';
import { prepareSource } from '../../../harness/kernel/source.js';
import { SCENARIOS } from '../../../harness/scenarios/index.js';
import { fakeKernelTree, okSeries, runCli } from '../../cli-helpers.js';
import { fakeEnv, fakeKconfigs, fakeTools } from '../../fake-tools.js';
import { tempDir } from '../../helpers.js';

const run = (t: Test, args: string[], opts: Parameters<typeof runCli>[1] = {}) => runCli(['run', '--arch', 'x86_64', '--cache-dir', tempDir(t), ...args], opts);

t.test('a relative --cache-dir is made absolute before it reaches make O=', async (t) => {
  const cwd = tempDir(t);
  const log = join(tempDir(t), 'make.log');
  const env = fakeEnv(fakeTools(tempDir(t)), { FAKE_MAKE_LOG: log, FAKE_MAKE_FAIL: '1' });
  const r = await runCli(['run', '--arch', 'x86_64', '--kernel-src', fakeKernelTree(tempDir(t)), '--patches', okSeries(tempDir(t)), '--kconfigs', fakeKconfigs(tempDir(t)), '--cache-dir', 'rel/cache'], { cwd, env });
  t.equal(r.code, EXIT.kernelFailed, 'got as far as the (failing, fake) build');
  const calls = readFileSync(log, 'utf8');
  t.match(calls, new RegExp(`O=${cwd}/rel/cache/builds/x86_64-`), 'make was given the absolute build directory');
  t.notMatch(calls, /O=rel\//);
});

t.test('series entries stay in the series directory and are regular files', async (t) => {
  const tree = fakeKernelTree(tempDir(t));
  const outside = okSeries(tempDir(t));
  writeFileSync(join(outside, 'series'), '../../../../../../etc/hostname\n');
  let r = await run(t, ['--kernel-src', tree, '--patches', outside]);
  t.equal(r.code, EXIT.usage);
  t.match(r.stderr, /series:1: \.\.\/\.\.\/\.\.\/\.\.\/\.\.\/\.\.\/etc\/hostname is outside the series directory/);
  t.notMatch(r.stderr, /garbage|patching file|applying/i, 'never fed to patch');

  const linked = okSeries(tempDir(t));
  symlinkSync('/etc/hostname', join(linked, 'evil.patch'));
  writeFileSync(join(linked, 'series'), 'ok.patch\nevil.patch\n');
  r = await run(t, ['--kernel-src', tree, '--patches', linked]);
  t.equal(r.code, EXIT.usage);
  t.match(r.stderr, /series:2: evil\.patch is outside the series directory \(\/etc\/hostname\)/, 'a symlink out is refused too');

  const dir = okSeries(tempDir(t));
  mkdirSync(join(dir, 'sub'));
  writeFileSync(join(dir, 'series'), 'ok.patch\nsub\n');
  r = await run(t, ['--kernel-src', tree, '--patches', dir]);
  t.equal(r.code, EXIT.usage);
  t.match(r.stderr, /series:2: sub is not a regular file/);
  t.notMatch(r.stderr, /EISDIR/);
});

t.test('-pN in a series line is honoured; any other option is refused by name', async (t) => {
  const dir = okSeries(tempDir(t));
  writeFileSync(join(dir, 'p0.patch'), readFileSync(join(dir, 'ok.patch'), 'utf8').replace(/a\/kernel/g, 'kernel').replace(/b\/kernel/g, 'kernel'));
  writeFileSync(join(dir, 'series'), 'p0.patch -p0\n');
  const series = readSeries(dir);
  t.equal(series.patches[0]!.strip, 0);
  const r = await prepareSource({ kernelSrc: fakeKernelTree(tempDir(t)), series, cacheDir: tempDir(t), logger: createLogger('quiet') });
  t.match(readFileSync(join(r.tree, 'kernel/livepatch/core.c'), 'utf8'), /^2$/m, 'applied with -p0');
  writeFileSync(join(dir, 'series'), 'ok.patch\np0.patch -R\n');
  const bad = await run(t, ['--kernel-src', fakeKernelTree(tempDir(t)), '--patches', dir]);
  t.equal(bad.code, EXIT.usage);
  t.match(bad.stderr, /series:2: option '-R' is not supported/);
});

t.test('an unknown --cpu is refused, listing each arch\'s models', async (t) => {
  let r = await runCli(['run', '--cpu', 'power7', '--cache-dir', tempDir(t)]);
  t.equal(r.code, EXIT.usage);
  t.match(r.stderr, /unknown CPU model 'power7'/);
  t.match(r.stderr, /x86_64: max; ppc64le: power9, power8/);
  r = await runCli(['run', '--arch', 'x86_64', '--cpu', 'power8', '--cache-dir', tempDir(t)]);
  t.equal(r.code, EXIT.usage, "another arch's model is unknown for this one");
  t.match(r.stderr, /use one of: x86_64: max/);
});

t.test('--shard that selects nothing, or is out of range, is refused', async (t) => {
  const n = SCENARIOS.length;
  for (const [shard, why] of [
    [`${n + 1}/${n + 1}`, /selects no scenario/],
    ['2/2 --scenario sample', /selects no scenario/],
    [`${n + 1}/${n}`, /bad --shard/],
    ['0/3', /bad --shard/],
    ['1/0', /bad --shard/],
  ] as const) {
    const [value, ...rest] = shard.split(' ');
    const r = await runCli(['run', '--shard', value!, ...rest, '--cache-dir', tempDir(t)]);
    t.equal(r.code, EXIT.usage, `--shard ${shard}`);
    t.match(r.stderr, why);
  }
});

t.test('merge of one shard of two reports the missing shard and fails', async (t) => {
  const dir = tempDir(t);
  const names = SCENARIOS.map((s) => s.name);
  const summary = (index: number) => {
    const mine = names.filter((_, i) => i % 2 === index - 1);
    const report = {
      started: new Date().toISOString(),
      durationMs: 1,
      outDir: dir,
      cacheDir: dir,
      source: { kernelSrc: 'k', patches: 'p' },
      arches: [{ arch: 'x86_64', boots: [], scenarios: mine.map((name) => ({ name, arch: 'x86_64', cpu: 'max', ok: true, durationMs: 1, timings: {}, steps: [] })) }],
      exitCode: 0,
      selection: { scenarios: names, shard: { index, count: 2 } },
    };
    const path = join(dir, `shard-${index}.json`);
    writeFileSync(path, JSON.stringify(report));
    return path;
  };
  const one = await runCli(['merge', '--out', join(dir, 'm1'), summary(1)]);
  t.equal(one.code, EXIT.usage);
  t.match(one.stderr, /merge is missing part of the run: shard 2\/2 not given; x86_64: no result for no-blocker/);
  t.ok(existsSync(join(dir, 'm1/summary.json')), 'what there is is still written');
  const both = await runCli(['merge', '--out', join(dir, 'm2'), summary(1), summary(2)]);
  t.equal(both.code, EXIT.ok, both.stderr);
});

t.test('an empty environment variable counts as unset', async (t) => {
  const home = tempDir(t);
  const r = await runCli(['cache'], { env: { ...process.env, KLP_HARNESS_CACHE: '', XDG_CACHE_HOME: '', HOME: home } });
  t.equal(r.code, EXIT.ok, r.stderr);
  t.match(r.stdout, new RegExp(`klp-harness cache: ${home}/\\.cache/klp-harness`));
});

t.test('a --kernel-src that is not a tarball is bad input (4), not a host problem', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'linux.tar.xz'), 'not a tarball at all');
  let r = await run(t, ['--kernel-src', join(dir, 'linux.tar.xz'), '--patches', okSeries(tempDir(t))], { env: fakeEnv(fakeTools(tempDir(t))) });
  t.equal(r.code, EXIT.usage);
  t.match(r.stderr, /kernel source .*linux\.tar\.xz is not a readable tarball/);
  writeFileSync(join(dir, 'notes.txt'), 'x');
  r = await run(t, ['--kernel-src', join(dir, 'notes.txt')]);
  t.equal(r.code, EXIT.usage);
  t.match(r.stderr, /is a file but not a tarball/);
});
