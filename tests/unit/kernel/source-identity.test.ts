// Source identity by content (issue 14, item 5 there; item 2 of this change):
// an edit anywhere in the tree, even a second edit of an already-modified file
// or one that keeps size and second, makes a new tree and a new build.
import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { getArch } from '../../../harness/core/arch.js';
import { buildKernel } from '../../../harness/kernel/build.js';
import { createLogger } from '../../../harness/core/log.js';
import { readSeries } from '../../../harness/kernel/patches.js';
import { contentHash, prepareSource, sourceIdentity } from '../../../harness/kernel/source.js';
import { fakeKernelTree, okSeries } from '../../cli-helpers.js';
import { fakeEnv, fakeKconfigs, fakeTools } from '../../fake-tools.js';
import { tempDir } from '../../helpers.js';

const logger = createLogger('quiet');
const core = (tree: string) => join(tree, 'kernel/livepatch/core.c');
/** Same size, so only the content tells. */
const edit = (tree: string, word: string) => writeFileSync(core(tree), `one\ntwo\nthree\n${word}\n`);

t.test('a plain tree: every edit of one file, twice, gives a new identity, a new tree and a new build', async (t) => {
  const bin = fakeTools(tempDir(t));
  const env = fakeEnv(bin);
  const savedPath = process.env.PATH;
  process.env.PATH = env.PATH;
  process.env.KLP_HARNESS_CCACHE = '0';
  t.teardown(() => {
    process.env.PATH = savedPath;
  });
  const src = fakeKernelTree(tempDir(t));
  const cacheDir = tempDir(t);
  const series = readSeries(okSeries(tempDir(t)));
  const kconfigDir = fakeKconfigs(tempDir(t));
  const arch = getArch('x86_64');
  const runOnce = async () => {
    const s = await prepareSource({ kernelSrc: src, series, cacheDir, logger });
    const b = await buildKernel({ arch, tree: s.tree, treeKey: s.key, series: s.series, generation: s.generation, kconfigDir, cacheDir, logger });
    return { s, b, image: readFileSync(b.image, 'utf8') };
  };
  edit(src, 'aaaa');
  const first = await runOnce();
  edit(src, 'bbbb');
  const second = await runOnce();
  edit(src, 'cccc');
  const third = await runOnce();
  t.not(second.s.key, first.s.key, 'first edit: new source key');
  t.not(third.s.key, second.s.key, 'second edit of the same file: new source key again');
  t.equal(second.b.reused, false, 'rebuilt after the first edit');
  t.equal(third.b.reused, false, 'rebuilt after the second edit');
  t.match(third.image, /cccc/, 'the build has the latest edit');
  t.notMatch(third.image, /bbbb|aaaa/);
  const again = await runOnce();
  t.equal(again.s.reused, true, 'no edit: the tree is reused');
  t.equal(again.b.reused, true, 'and the build');
});

t.test('content hash: an index skips unchanged files, and sees a change that keeps size', async (t) => {
  const src = fakeKernelTree(tempDir(t));
  const index = join(tempDir(t), 'index.json');
  const a = contentHash(src, index);
  t.equal(a.hashed, a.files, 'first time: every file read');
  // Files written just before the index are read again (their time cannot prove them unchanged); make them old.
  execFileSync('touch', ['-d', '2020-01-01', ...['Makefile', 'Kconfig', 'kernel/livepatch/core.c'].map((f) => join(src, f))]);
  await new Promise((r) => setTimeout(r, 200));
  contentHash(src, index);
  const b = contentHash(src, index);
  t.equal(b.hashed, 0, 'unchanged files are not read again');
  t.equal(b.digest, a.digest);
  edit(src, 'zzzz');
  const c = contentHash(src, index);
  t.equal(c.hashed, 1, 'only the changed file is read');
  t.not(c.digest, a.digest);
  mkdirSync(join(src, '.git'));
  writeFileSync(join(src, '.git/HEAD'), 'x');
  t.equal(contentHash(src).digest, c.digest, '.git is not part of the content');
});

t.test('a git tree: HEAD + binary diff + untracked contents; ignored files do not count and are not copied', async (t) => {
  const src = fakeKernelTree(tempDir(t));
  const git = (...args: string[]) => execFileSync('git', ['-C', src, '-c', 'user.name=t', '-c', 'user.email=t@t', ...args]);
  git('init', '-q');
  writeFileSync(join(src, '.gitignore'), '*.o\n');
  git('add', '-A');
  git('commit', '-qm', 'base');
  const id = async () => (await sourceIdentity(src)).id;
  const clean = await id();
  edit(src, 'aaaa');
  const once = await id();
  edit(src, 'bbbb');
  const twice = await id();
  t.not(once, clean, 'an uncommitted edit counts');
  t.not(twice, once, 'a second edit of an already-modified file counts');
  writeFileSync(join(src, 'kernel/new.c'), 'int a;\n');
  const untracked = await id();
  t.not(untracked, twice, 'a new untracked file counts');
  writeFileSync(join(src, 'kernel/new.c'), 'int b;\n');
  t.not(await id(), untracked, 'and its content');
  const before = await id();
  writeFileSync(join(src, 'kernel/junk.o'), 'object');
  t.equal(await id(), before, 'an ignored file does not count');
  appendFileSync(join(src, 'kernel/junk.o'), 'more');
  const r = await prepareSource({ kernelSrc: src, series: readSeries(okSeries(tempDir(t))), cacheDir: tempDir(t), logger }).catch((e) => e);
  t.match(r, { reused: false });
  t.notOk(await import('node:fs').then((fs) => fs.existsSync(join(r.tree, 'kernel/junk.o'))), 'the copy holds what the identity covers: no ignored file');
  t.ok(readFileSync(join(r.tree, 'kernel/new.c'), 'utf8').includes('int b'), 'untracked files are copied');
});
