// Several runs on one cache at once (issue 14, item 1): the same series,
// different series, different arches, and `cache --prune` in the middle.
// Each run is a process of its own going through the real source, build,
// image and module stages (tests/stage-runner.ts) with the fake kbuild and apt
// of tests/fake-tools.ts, on a stand-in kernel tree. Every run must finish with
// the result its own inputs call for, and one that waits must say for what.
import { spawn } from 'node:child_process';
import { nodeChild } from '../child-env.js';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { fakeKernelTree, okSeries, runCli } from '../cli-helpers.js';
import { fakeEnv, fakeKconfigs, fakeTools } from '../fake-tools.js';
import { ROOT, tempDir } from '../helpers.js';

interface StageResult {
  pid: number;
  tree: string;
  treeReused: boolean;
  coreC: string;
  buildDir: string;
  buildReused: boolean;
  kernelImage: string;
  compiled: number;
  image: string;
  module: string;
}

interface Run {
  pid: number;
  done: Promise<{ code: number | null; stderr: string; result?: StageResult }>;
  stderr: () => string;
}

/** A stand-in tree with a few more files than the patched one, so that "only the changed file rebuilt" means something. */
function tree(t: Test): string {
  const dir = fakeKernelTree(tempDir(t));
  for (const n of ['sched', 'fork', 'exit', 'signal', 'module']) writeFileSync(join(dir, `kernel/${n}.c`), `int ${n};\n`);
  return dir;
}

/** A one-patch series changing core.c's "two" into the given word. */
function series(t: Test, word: string): string {
  const dir = okSeries(tempDir(t));
  writeFileSync(join(dir, 'ok.patch'), readFileSync(join(dir, 'ok.patch'), 'utf8').replace('+2', `+${word}`));
  return dir;
}

function start(o: { cache: string; src: string; patches: string; arch?: string; holdMs?: number; env: NodeJS.ProcessEnv; kconfigs: string }): Run {
  const args = ['--cache-dir', o.cache, '--kernel-src', o.src, '--patches', o.patches, '--kconfigs', o.kconfigs, '--arch', o.arch ?? 'x86_64', '--hold-ms', String(o.holdMs ?? 0)];
  const [cmd, argv] = nodeChild(join(ROOT, 'dist/tests/stage-runner.js'), args, o.env);
  const child = spawn(cmd, argv, { env: o.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const done = new Promise<{ code: number | null; stderr: string; result?: StageResult }>((resolve) =>
    child.on('close', (code) => resolve({ code, stderr: err, result: out.trim() ? (JSON.parse(out) as StageResult) : undefined })),
  );
  return { pid: child.pid!, done, stderr: () => err };
}

function setup(t: Test, makeSeconds = 2) {
  const bin = fakeTools(tempDir(t));
  const makeLog = join(tempDir(t), 'make.log');
  return {
    cache: tempDir(t),
    src: tree(t),
    kconfigs: fakeKconfigs(tempDir(t)),
    env: fakeEnv(bin, { FAKE_MAKE_SECONDS: String(makeSeconds), FAKE_MAKE_LOG: makeLog }),
    kernelBuilds: () => readFileSync(makeLog, 'utf8').split('\n').filter((l) => / (bzImage|vmlinux) modules /.test(l)).length,
  };
}

const waitLine = (stderr: string) => stderr.split('\n').filter((l) => /lock: waiting for/.test(l));

t.test('two runs of one series at once: the second waits, says for what and whom, then reuses', async (t) => {
  const s = setup(t);
  const patches = series(t, '2');
  const a = start({ ...s, patches });
  await new Promise((r) => setTimeout(r, 300));
  const b = start({ ...s, patches });
  const [ra, rb] = await Promise.all([a.done, b.done]);
  t.equal(ra.code, 0, ra.stderr);
  t.equal(rb.code, 0, rb.stderr);
  // Either may get the source lock first: the other is "the second".
  const [first, second, firstPid] = ra.result!.buildReused ? [rb, ra, b.pid] : [ra, rb, a.pid];
  const waits = waitLine(second.stderr);
  t.ok(waits.length > 0, 'the second run said it waits');
  t.match(waits.join('\n'), new RegExp(`waiting for (source tree trees/|kernel build builds/)\\S+ \\((shared|exclusive)\\): held by pid ${firstPid} `), 'naming the entry and the holder pid');
  t.comment(`first run: pid ${firstPid}; the second printed:\n${waits.join('\n')}`);
  t.equal(s.kernelBuilds(), 1, 'the kernel was built once');
  t.equal(first.result!.buildReused, false);
  t.equal(second.result!.buildReused, true, 'the second run reused the first one\'s build');
  t.equal(ra.result!.kernelImage, rb.result!.kernelImage);
  t.match(ra.result!.kernelImage, /^2$/m, 'built from the patched tree');
});

t.test('two series at once, then a third: never mixed; the third starts from a copy and rebuilds one file', async (t) => {
  const s = setup(t);
  const [ra, rb] = await Promise.all([start({ ...s, patches: series(t, 'TWO') }).done, start({ ...s, patches: series(t, 'DOS') }).done]);
  t.equal(ra.code, 0, ra.stderr);
  t.equal(rb.code, 0, rb.stderr);
  t.not(ra.result!.tree, rb.result!.tree, 'a tree per series');
  t.not(ra.result!.buildDir, rb.result!.buildDir, 'a build directory per series');
  t.match(ra.result!.kernelImage, /^TWO$/m);
  t.notMatch(ra.result!.kernelImage, /DOS/, 'no object of the other series');
  t.match(rb.result!.kernelImage, /^DOS$/m);
  t.notMatch(rb.result!.kernelImage, /TWO/, 'no object of the other series');
  t.match(ra.result!.module, new RegExp(ra.result!.tree.replace(/[/.]/g, '\\$&')), 'guest modules built against their own build');

  const rc = await start({ ...s, patches: series(t, 'II') }).done;
  t.equal(rc.code, 0, rc.stderr);
  t.match(rc.stderr, /source: copying trees\/\S+ \(same source/, 'the third tree is copied from a sibling');
  t.match(rc.stderr, /build x86_64: starting from a copy of builds\//, 'its build from the sibling\'s build');
  t.equal(rc.result!.compiled, 1, 'only the file the series changes is compiled again (6 in a cold build)');
  t.equal(Math.max(ra.result!.compiled, rb.result!.compiled), 6, 'a cold build compiles all 6');
  t.match(rc.result!.kernelImage, /^II$/m);
  t.notMatch(rc.result!.kernelImage, /TWO|DOS/);
});

t.test('a build starts from any sibling tree\'s build, not only from the one its tree was copied from', async (t) => {
  const s = setup(t, 1);
  const ra = await start({ ...s, patches: series(t, 'TWO') }).done;
  t.equal(ra.code, 0, ra.stderr);
  // ppc64le of another series: its tree is copied from the first, which has no ppc64le build (a cold one).
  const rb = await start({ ...s, patches: series(t, 'DOS'), arch: 'ppc64le' }).done;
  t.equal(rb.code, 0, rb.stderr);
  // x86_64 of a third: its tree is copied from the second (the newest), which has no x86_64 build; the first has.
  const rc = await start({ ...s, patches: series(t, 'II') }).done;
  t.equal(rc.code, 0, rc.stderr);
  t.match(rc.stderr, /build x86_64: starting from a copy of builds\/x86_64-\S+ \(the build of sibling tree trees\//, 'seeded from the first series\' build');
  t.equal(rc.result!.compiled, 1, 'only the file the series differ in is compiled again');
  t.match(rc.result!.kernelImage, /^II$/m);
  t.notMatch(rc.result!.kernelImage, /TWO|DOS/);
});

t.test('two arches at once share the tree and build apart', async (t) => {
  const s = setup(t);
  const patches = series(t, '2');
  const [rx, rp] = await Promise.all([start({ ...s, patches }).done, start({ ...s, patches, arch: 'ppc64le' }).done]);
  t.equal(rx.code, 0, rx.stderr);
  t.equal(rp.code, 0, rp.stderr);
  t.equal(rx.result!.tree, rp.result!.tree, 'one tree');
  t.not(rx.result!.buildDir, rp.result!.buildDir);
  t.match(rp.result!.buildDir, /builds\/ppc64le-/);
  t.equal(s.kernelBuilds(), 2);
  t.equal(statSync(rx.result!.image).mode & 0o777, 0o600, 'the initramfs (it holds the guest host key) is 0600');
  t.equal(statSync(join(rx.result!.image, '..')).mode & 0o777, 0o700, 'and its directory 0700');
});

t.test('cache --prune during a run keeps what the run uses, removes the rest, and the run finishes', async (t) => {
  const s = setup(t, 3);
  const old = start({ ...s, patches: series(t, 'OLD') });
  t.equal((await old.done).code, 0);
  const a = start({ ...s, patches: series(t, '2'), holdMs: 3000 });
  await new Promise<void>((resolve) => {
    const poll = setInterval(() => {
      if (/build x86_64: log in/.test(a.stderr())) {
        clearInterval(poll);
        resolve();
      }
    }, 50);
  });
  const prune = await runCli(['cache', '--prune', '--max-age', '0', '--cache-dir', s.cache]);
  t.comment(prune.stdout);
  t.equal(prune.code, 0, prune.stderr);
  t.match(prune.stdout, new RegExp(`kept trees/\\S+: in use by pid ${a.pid}`), 'the running run\'s tree is kept, naming it');
  t.match(prune.stdout, new RegExp(`kept builds/x86_64-\\S+: in use by pid ${a.pid}`), 'and its build under way');
  t.match(prune.stdout, /pruned [1-9]\d* entr/, 'entries no run holds are removed');
  const ra = await a.done;
  t.equal(ra.code, 0, ra.stderr);
  t.match(ra.result!.kernelImage, /^2$/m, 'the run finished with its own result');
  t.match(ra.result!.module, /module klp_sleeper/);
});

t.test('a run killed with SIGKILL leaves no lock behind', async (t) => {
  const s = setup(t, 0);
  const a = start({ ...s, patches: series(t, '2'), holdMs: 60_000 });
  await new Promise<void>((resolve) => {
    const poll = setInterval(() => {
      if (/modules x86_64: building/.test(a.stderr())) {
        clearInterval(poll);
        resolve();
      }
    }, 50);
  });
  await new Promise((r) => setTimeout(r, 500)); // holding its entries, as a run in its scenarios
  process.kill(a.pid, 'SIGKILL');
  await a.done;
  const killedAt = Date.now();
  let prune = await runCli(['cache', '--prune', '--max-age', '0', '--cache-dir', s.cache]);
  for (let i = 0; i < 20 && /kept /.test(prune.stdout); i++) {
    await new Promise((r) => setTimeout(r, 250));
    prune = await runCli(['cache', '--prune', '--max-age', '0', '--cache-dir', s.cache]);
  }
  t.notMatch(prune.stdout, /kept /, `every lock was free ${Date.now() - killedAt} ms after the kill`);
  t.match(prune.stdout, /pruned [1-9]\d* entr/);
  t.comment(prune.stdout);
});
