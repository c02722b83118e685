// What cache-markers and cache-trust leave out: where the cache root is
// (flag, KLP_HARNESS_CACHE, XDG_CACHE_HOME, ~/.cache; empty counts as unset),
// an unusable root, the tree manifest, file checksums and atomic writes.
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, truncateSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { cacheRoot, envVar, MARKER, sha256File, treeManifest, writeFileAtomic } from '../../../harness/core/cache.js';
import type { HarnessError } from '../../../harness/core/errors.js';
import { setEnv, tempDir } from '../../helpers.js';

type Teardown = { teardown(fn: () => void): void };

t.test('envVar: an empty value counts as unset', async (t) => {
  setEnv(t, { KLP_TEST_A: 'x', KLP_TEST_B: '', KLP_TEST_C: undefined });
  t.equal(envVar('KLP_TEST_A'), 'x');
  t.equal(envVar('KLP_TEST_B'), undefined);
  t.equal(envVar('KLP_TEST_C'), undefined);
});

t.test('the cache root: --cache-dir, else KLP_HARNESS_CACHE, else $XDG_CACHE_HOME/klp-harness, else ~/.cache/klp-harness', async (t) => {
  const home = tempDir(t);
  const xdg = tempDir(t);
  const env = tempDir(t);
  const flag = tempDir(t);
  setEnv(t, { HOME: home, XDG_CACHE_HOME: xdg, KLP_HARNESS_CACHE: env });
  t.equal(cacheRoot(flag), flag, 'the flag first');
  t.equal(cacheRoot(''), env, 'an empty flag is no flag');
  t.equal(cacheRoot(), env, 'then KLP_HARNESS_CACHE');
  process.env.KLP_HARNESS_CACHE = '';
  t.equal(cacheRoot(), join(xdg, 'klp-harness'), 'then XDG_CACHE_HOME (an empty KLP_HARNESS_CACHE is unset)');
  process.env.XDG_CACHE_HOME = '';
  t.equal(cacheRoot(), join(home, '.cache', 'klp-harness'), 'then the home directory (so is an empty XDG_CACHE_HOME)');
  t.equal(statSync(join(home, '.cache', 'klp-harness')).mode & 0o777, 0o700, 'made, for us alone');
  t.equal(statSync(join(home, '.cache')).mode & 0o777, 0o700, 'with the directories above it');
});

t.test('the cache root is absolute, since it ends up in make O=', async (t) => {
  const dir = tempDir(t);
  const before = process.cwd();
  process.chdir(dir);
  t.teardown(() => process.chdir(before));
  t.equal(cacheRoot('rel/cache'), join(dir, 'rel/cache'));
  t.ok(statSync(join(dir, 'rel/cache')).isDirectory(), 'made where it resolves');
});

t.test('an existing root of ours that others may only read is fine', async (t) => {
  const dir = tempDir(t);
  chmodSync(dir, 0o755);
  t.equal(cacheRoot(dir), dir);
  t.equal(statSync(dir).mode & 0o777, 0o755, 'its mode is left alone');
});

t.test('a root that cannot be made is an infrastructure error saying what to do', async (t) => {
  const file = join(tempDir(t), 'a-file');
  writeFileSync(file, '');
  const err = (() => {
    try {
      cacheRoot(join(file, 'cache'));
    } catch (e) {
      return e as HarnessError;
    }
  })();
  t.equal(err?.kind, 'infra');
  t.equal(err?.message, `cache directory ${join(file, 'cache')} is not writable`);
  t.match(err?.context.details, /ENOTDIR/, 'with the system’s reason');
  t.match(err?.context.hint, /--cache-dir DIR.*KLP_HARNESS_CACHE/);
});

/** A small tree: two files, a nested one, a symlink, and a marker. */
function tree(t: Teardown) {
  const dir = tempDir(t);
  mkdirSync(join(dir, 'sub/deeper'), { recursive: true });
  writeFileSync(join(dir, 'Makefile'), 'all:\n');
  writeFileSync(join(dir, 'sub/a.c'), 'int a;\n');
  writeFileSync(join(dir, 'sub/deeper/b.h'), '#define B\n');
  symlinkSync('sub/a.c', join(dir, 'link'));
  mkdirSync(join(dir, 'empty'));
  writeFileSync(join(dir, MARKER), '{}');
  return dir;
}

t.test('treeManifest counts every file and link below, not directories nor the marker', async (t) => {
  const dir = tree(t);
  const m = treeManifest(dir);
  t.equal(m.files, 4, 'Makefile, a.c, b.h and the link');
  t.match(m.digest, /^[0-9a-f]{64}$/);
  writeFileSync(join(dir, MARKER), '{"a": "marker rewritten"}');
  t.same(treeManifest(dir), m, 'the marker itself is not part of it');
  mkdirSync(join(dir, 'another-empty-dir'));
  t.same(treeManifest(dir), m, 'an empty directory changes nothing');
});

t.test('treeManifest: the same names and sizes give the same digest, wherever the tree is and however old', async (t) => {
  const one = tree(t);
  const two = tree(t);
  t.same(treeManifest(two), treeManifest(one), 'another copy');
  const old = new Date('2001-01-01');
  utimesSync(join(two, 'Makefile'), old, old);
  writeFileSync(join(two, 'sub/a.c'), 'int b;\n'); // same size, other bytes: only stats are read
  t.same(treeManifest(two), treeManifest(one), 'times and same-size content are not looked at (it only stats)');
});

t.test('treeManifest: a renamed, grown, removed file or a retargeted link changes the digest', async (t) => {
  const changes: [string, (dir: string) => void][] = [
    ['a grown file', (d) => writeFileSync(join(d, 'sub/a.c'), 'int aa;\n')],
    ['a truncated file', (d) => truncateSync(join(d, 'Makefile'), 1)],
    ['a removed file', (d) => unlinkSync(join(d, 'sub/deeper/b.h'))],
    ['a file moved to another directory', (d) => (writeFileSync(join(d, 'sub/b.h'), '#define B\n'), unlinkSync(join(d, 'sub/deeper/b.h')))],
    ['a link pointing elsewhere', (d) => (unlinkSync(join(d, 'link')), symlinkSync('Makefile', join(d, 'link')))],
    ['a link replaced by a file of its target’s size', (d) => (unlinkSync(join(d, 'link')), writeFileSync(join(d, 'link'), '1234567'))],
  ];
  const base = treeManifest(tree(t));
  const seen = new Set([base.digest]);
  for (const [what, change] of changes) {
    const dir = tree(t);
    change(dir);
    const m = treeManifest(dir);
    t.not(m.digest, base.digest, what);
    seen.add(m.digest);
  }
  t.equal(seen.size, changes.length + 1, 'each change gives a digest of its own');
});

t.test('sha256File is the sha256 of the whole file, also one larger than a read chunk', async (t) => {
  const dir = tempDir(t);
  const big = Buffer.alloc(300_000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7919) & 0xff;
  writeFileSync(join(dir, 'big'), big);
  writeFileSync(join(dir, 'empty'), '');
  t.equal(await sha256File(join(dir, 'big')), createHash('sha256').update(big).digest('hex'));
  t.equal(await sha256File(join(dir, 'empty')), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', 'the well-known empty-input digest');
  await t.rejects(sha256File(join(dir, 'missing')), /ENOENT/);
});

t.test('writeFileAtomic replaces a file whole, with the mode asked for, leaving no temporary file', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'key');
  writeFileSync(path, 'old contents that are longer');
  writeFileAtomic(path, 'new', 0o600);
  t.equal(readFileSync(path, 'utf8'), 'new');
  t.equal(statSync(path).mode & 0o777, 0o600);
  writeFileAtomic(join(dir, 'bin'), Buffer.from([0, 1, 2]));
  t.same([...readFileSync(join(dir, 'bin'))], [0, 1, 2], 'a buffer too');
  t.same(readdirSync(dir).sort(), ['bin', 'key'], 'no temporary file left');
});
