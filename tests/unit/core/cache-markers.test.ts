// Completion markers: an entry counts only with its marker, and only while
// the files the marker lists (and, for a tree, its manifest) are intact.
import { appendFileSync, mkdirSync, readFileSync, statSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { hashOf, invalidate, MARKER, readValidMarker, writeMarker } from '../../../harness/core/cache.js';
import { tempDir } from '../../helpers.js';

function entry(dir: string) {
  mkdirSync(join(dir, 'sub'), { recursive: true });
  writeFileSync(join(dir, 'initramfs.cpio'), 'cpio bytes');
  writeFileSync(join(dir, 'sub/other'), 'other');
  return dir;
}

t.test('no marker, no entry; a written marker makes it count, with its key and meta', async (t) => {
  const dir = entry(tempDir(t));
  t.equal(await readValidMarker(dir), undefined, 'half an entry (no marker) is not taken');
  await writeMarker(dir, 'k1', { init: 'abc' }, ['initramfs.cpio'], { files: 3 });
  const m = await readValidMarker(dir);
  t.equal(m?.key, 'k1');
  t.same(m?.inputs, { init: 'abc' });
  t.same(m?.meta, { files: 3 });
  invalidate(dir);
  t.equal(await readValidMarker(dir), undefined, 'invalidated');
});

t.test('a truncated or changed listed file voids the entry', async (t) => {
  const dir = entry(tempDir(t));
  await writeMarker(dir, 'k', {}, ['initramfs.cpio']);
  truncateSync(join(dir, 'initramfs.cpio'), 3);
  t.equal(await readValidMarker(dir), undefined, 'truncated');
  const again = entry(tempDir(t));
  await writeMarker(again, 'k', {}, ['initramfs.cpio']);
  writeFileSync(join(again, 'initramfs.cpio'), 'cpio bytEs'); // same size, other bytes
  t.equal(await readValidMarker(again), undefined, 'same size, other content');
});

t.test('a manifest catches a file added to or grown in a tree', async (t) => {
  const dir = entry(tempDir(t));
  await writeMarker(dir, 'k', {}, [], undefined, { manifest: true });
  t.ok(await readValidMarker(dir), 'intact');
  appendFileSync(join(dir, 'sub/other'), 'more');
  t.equal(await readValidMarker(dir), undefined, 'a grown file');
  const planted = entry(tempDir(t));
  await writeMarker(planted, 'k', {}, [], undefined, { manifest: true });
  writeFileSync(join(planted, 'sub/planted'), 'x');
  t.equal(await readValidMarker(planted), undefined, 'a planted file');
});

t.test('an unreadable marker is no marker; reading a valid one marks it used', async (t) => {
  const dir = entry(tempDir(t));
  writeFileSync(join(dir, MARKER), '{ not json');
  t.equal(await readValidMarker(dir), undefined);
  await writeMarker(dir, 'k', {}, []);
  const old = new Date(Date.now() - 10 * 86_400_000);
  utimesSync(join(dir, MARKER), old, old);
  await readValidMarker(dir);
  t.ok(Date.now() - statSync(join(dir, MARKER)).mtimeMs < 60_000, 'last-used time refreshed (what cache --prune goes by)');
});

t.test('keys are stable and tell their inputs apart', async (t) => {
  t.equal(hashOf('a', 'b'), hashOf('a', 'b'));
  t.not(hashOf('a', 'b'), hashOf('ab'), 'parts are not simply concatenated');
  t.not(hashOf('a'), hashOf(Buffer.from('b')));
});

t.test('a file listed by size alone is checked by its size; a listed file without a sum and not said to be size-only voids the entry', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'image'), 'the image');
  writeFileSync(join(dir, 'ram'), Buffer.alloc(8192));
  await writeMarker(dir, 'k', {}, ['image'], undefined, { sizeOnly: ['ram'] });
  t.ok(await readValidMarker(dir), 'made');
  writeFileSync(join(dir, 'ram'), Buffer.alloc(8192, 1));
  t.ok(await readValidMarker(dir), 'the same size, other bytes: still taken (the size is all that is checked)');
  truncateSync(join(dir, 'ram'), 4096);
  t.notOk(await readValidMarker(dir), 'another size: void');
  truncateSync(join(dir, 'ram'), 8192);
  const marker = JSON.parse(readFileSync(join(dir, MARKER), 'utf8'));
  delete marker.files.image.sha256;
  writeFileSync(join(dir, MARKER), JSON.stringify(marker));
  t.notOk(await readValidMarker(dir), 'a hashed file whose sum went missing from the marker: void, not size-only');
});
