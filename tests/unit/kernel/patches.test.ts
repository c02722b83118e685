import { mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { HarnessError } from '../../../harness/core/errors.js';
import { silentLogger } from '../../../harness/core/log.js';
import { findHunk, readSeries, splitMbox } from '../../../harness/kernel/patches.js';
import { DEFAULT_PATCHES, prepareSource, treeSeed } from '../../../harness/kernel/source.js';
import { ROOT, tempDir } from '../../helpers.js';

const PATCH = `From: a
Subject: [PATCH] demo

---
--- a/kernel/livepatch/core.c
+++ b/kernel/livepatch/core.c
@@ -1,3 +1,3 @@
 line one
-line two
+line 2
 line three
@@ -10,3 +10,3 @@
 ten
-eleven
+11
 twelve
`;

function fakeTree(t: Parameters<typeof tempDir>[0]): string {
  const tree = tempDir(t);
  mkdirSync(join(tree, 'kernel/livepatch'), { recursive: true });
  writeFileSync(join(tree, 'Makefile'), 'VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 0\nEXTRAVERSION =\nNAME = test\n');
  writeFileSync(join(tree, 'Kconfig'), '');
  const lines = ['line one', 'line two', 'line three', '4', '5', '6', '7', '8', '9', 'ten', 'eleven', 'twelve'];
  writeFileSync(join(tree, 'kernel/livepatch/core.c'), lines.join('\n') + '\n');
  return tree;
}

function quilt(t: Parameters<typeof tempDir>[0], patches: Record<string, string>, series?: string): string {
  const dir = tempDir(t);
  for (const [n, text] of Object.entries(patches)) writeFileSync(join(dir, n), text);
  if (series !== undefined) writeFileSync(join(dir, 'series'), series);
  return dir;
}

t.test('the project series reads in order', async (t) => {
  const s = readSeries(join(ROOT, 'patches'));
  t.ok(s.patches.length >= 1);
  t.match(s.patches[0]!.text, /signal_store/);
});

t.test('bad series input is a usage error that says what to do', async (t) => {
  const missing = (() => { try { readSeries('/nonexistent/series-dir'); } catch (e) { return e as HarnessError; } })();
  t.equal(missing?.kind, 'usage');
  t.match(missing?.message, /does not exist/);
  const noSeries = (() => { try { readSeries(quilt(t, { 'a.patch': PATCH })); } catch (e) { return e as HarnessError; } })();
  t.match(noSeries?.message, /has no 'series' file/);
  t.match(noSeries?.context.hint, /found: a\.patch/);
  const empty = (() => { try { readSeries(quilt(t, { 'a.patch': PATCH }, '# nothing\n\n')); } catch (e) { return e as HarnessError; } })();
  t.match(empty?.message, /is empty/);
  const dangling = (() => { try { readSeries(quilt(t, {}, 'b.patch\n')); } catch (e) { return e as HarnessError; } })();
  t.match(dangling?.message, /names b\.patch, which does not exist/);
});

t.test('findHunk returns the nth hunk of a file', async (t) => {
  t.match(findHunk(PATCH, 'kernel/livepatch/core.c', 2), /^@@ -10,3 \+10,3 @@\n ten\n-eleven\n\+11/);
  t.equal(findHunk(PATCH, 'kernel/livepatch/core.c', 3), undefined);
});

t.test('splitMbox finds each patch in a format-patch mbox', async (t) => {
  const mbox = `From 0123456789abcdef0123456789abcdef01234567 Mon Sep 17 00:00:00 2001\nSubject: [PATCH 1/2] one\n\n${PATCH}\nFrom 1123456789abcdef0123456789abcdef01234567 Mon Sep 17 00:00:00 2001\nSubject: [PATCH 2/2] two\n\n${PATCH}`;
  const p = splitMbox(mbox, 'x.mbox');
  t.equal(p.length, 2);
  t.match(p[1]!.name, /\[PATCH 2\/2\] two/);
});

t.test('a patch that applies lands in a private copy; the user tree is untouched', async (t) => {
  const tree = fakeTree(t);
  const cacheDir = tempDir(t);
  const series = readSeries(quilt(t, { 'ok.patch': PATCH }, 'ok.patch\n'));
  const r = await prepareSource({ kernelSrc: tree, series, cacheDir, logger: silentLogger });
  t.match(readFileSync(join(r.tree, 'kernel/livepatch/core.c'), 'utf8'), /line 2\n/);
  t.match(readFileSync(join(tree, 'kernel/livepatch/core.c'), 'utf8'), /line two\n/, 'source tree unchanged');
  t.equal(r.version, '6.1.0');
  const again = await prepareSource({ kernelSrc: tree, series, cacheDir, logger: silentLogger });
  t.equal(again.reused, true, 'second call reuses the cached tree');
});

t.test('a patch that does not apply names the patch and shows the rejected hunk', async (t) => {
  const tree = fakeTree(t);
  writeFileSync(join(tree, 'kernel/livepatch/core.c'), ['line one', 'line two', 'line three', '4', '5', '6', '7', '8', '9', 'TEN', 'ELEVEN', 'TWELVE'].join('\n') + '\n');
  const cacheDir = tempDir(t);
  const series = readSeries(quilt(t, { 'bad.patch': PATCH }, 'bad.patch\n'));
  const err = (await prepareSource({ kernelSrc: tree, series, cacheDir, logger: silentLogger }).catch((e) => e)) as HarnessError;
  t.equal(err.kind, 'patch');
  t.match(err.message, /patch 'bad.patch' does not apply/);
  t.match(err.report(), /kernel\/livepatch\/core\.c, hunk #2:\n\s*\| @@ -10,3 \+10,3 @@/);
  const { readdirSync } = await import('node:fs');
  t.same(readdirSync(join(cacheDir, 'trees')), [], 'no partial cache entry is left');
});

t.test('a kernel source that is not there or not a tree is a usage error', async (t) => {
  const series = readSeries(join(ROOT, 'patches'));
  const cacheDir = tempDir(t);
  const e1 = (await prepareSource({ kernelSrc: '/nonexistent/linux', series, cacheDir, logger: silentLogger }).catch((e) => e)) as HarnessError;
  t.equal(e1.kind, 'usage');
  t.match(e1.message, /does not exist/);
  const e2 = (await prepareSource({ kernelSrc: tempDir(t), series, cacheDir, logger: silentLogger }).catch((e) => e)) as HarnessError;
  t.match(e2.message, /is not a kernel tree \(no Makefile\)/);
});

t.test('another series gets a tree of its own, copied from the first: untouched files keep their times', async (t) => {
  const tree = fakeTree(t);
  writeFileSync(join(tree, 'untouched.c'), 'int x;\n');
  const cacheDir = tempDir(t);
  const first = await prepareSource({ kernelSrc: tree, series: readSeries(quilt(t, { 'a.patch': PATCH }, 'a.patch\n')), cacheDir, logger: silentLogger });
  const { readdirSync, statSync, utimesSync } = await import('node:fs');
  const old = new Date('2020-01-01T00:00:00Z');
  utimesSync(join(first.tree, 'untouched.c'), old, old);
  const second = await prepareSource({ kernelSrc: tree, series: readSeries(quilt(t, { 'b.patch': PATCH.replace('+line 2', '+line TWO') }, 'b.patch\n')), cacheDir, logger: silentLogger });
  t.not(second.tree, first.tree, 'a tree per series: two runs with two series never share one');
  t.not(second.series, first.series);
  t.match(readFileSync(join(second.tree, 'kernel/livepatch/core.c'), 'utf8'), /line TWO\n/);
  t.match(readFileSync(join(first.tree, 'kernel/livepatch/core.c'), 'utf8'), /line 2\n/, 'the first tree still has its series');
  t.equal(statSync(join(second.tree, 'untouched.c')).mtimeMs, old.getTime(), 'copied with its time: a copied build rebuilds only what the series change');
  t.same(treeSeed(second.tree)?.key, first.key, 'the copy records where it came from (for the build)');
  t.equal(statSync(join(second.tree, 'untouched.c')).ino, statSync(join(first.tree, 'untouched.c')).ino, 'an unchanged file is a hard link: a variant costs only what its series changes');
  t.not(statSync(join(second.tree, 'kernel/livepatch/core.c')).ino, statSync(join(first.tree, 'kernel/livepatch/core.c')).ino, 'a patched file is a file of its own');

  const bad = (await prepareSource({ kernelSrc: tree, series: readSeries(quilt(t, { 'c.patch': PATCH.replace('-line two', '-no such line') }, 'c.patch\n')), cacheDir, logger: silentLogger }).catch((e) => e)) as HarnessError;
  t.equal(bad.kind, 'patch');
  t.same(readdirSync(join(cacheDir, 'trees')).sort(), [first.key, second.key].sort(), 'a failed series leaves no entry');
  const back = await prepareSource({ kernelSrc: tree, series: readSeries(quilt(t, { 'a.patch': PATCH }, 'a.patch\n')), cacheDir, logger: silentLogger });
  t.equal(back.reused, true, 'the first series is still there');
  t.equal(back.tree, first.tree);
});

t.test('a new version of the project\'s own series gets a tree of its own; the old one is never changed', async (t) => {
  const tree = fakeTree(t);
  writeFileSync(join(tree, 'untouched.c'), 'int x;\n');
  const cacheDir = tempDir(t);
  const own = (text: string) => ({ origin: DEFAULT_PATCHES, patches: [{ name: 'own.patch', text }] });
  const first = await prepareSource({ kernelSrc: tree, series: own(PATCH), cacheDir, logger: silentLogger });
  const { statSync } = await import('node:fs');
  const firstText = readFileSync(join(first.tree, 'kernel/livepatch/core.c'), 'utf8');
  const second = await prepareSource({ kernelSrc: tree, series: own(PATCH.replace('+line 2', '+line TWO')), cacheDir, logger: silentLogger });
  t.not(second.tree, first.tree, 'a tree of its own');
  t.same(treeSeed(second.tree)?.key, first.key, 'made from the first (its build is seeded from the first\'s)');
  t.match(readFileSync(join(second.tree, 'kernel/livepatch/core.c'), 'utf8'), /line TWO\n/);
  t.equal(readFileSync(join(first.tree, 'kernel/livepatch/core.c'), 'utf8'), firstText, 'the first tree is as it was');
  t.equal(statSync(join(second.tree, 'untouched.c')).ino, statSync(join(first.tree, 'untouched.c')).ino, 'an untouched file is shared (a hard link), not rewritten');
  const bad = (await prepareSource({ kernelSrc: tree, series: own(PATCH.replace('-line two', '-no such line')), cacheDir, logger: silentLogger }).catch((e) => e)) as HarnessError;
  t.equal(bad.kind, 'patch');
  t.equal(readFileSync(join(first.tree, 'kernel/livepatch/core.c'), 'utf8'), firstText, 'a failed series changes no tree');
  const back = await prepareSource({ kernelSrc: tree, series: own(PATCH), cacheDir, logger: silentLogger });
  t.equal(back.reused, true, 'the first series is still there');
  t.equal(back.generation, first.generation, 'as made, not unpacked again');
});
