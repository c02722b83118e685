// The initramfs writer makes a newc archive the kernel (and GNU cpio) reads:
// each header's 13 fields, 4-byte alignment of names and data, the
// TRAILER!!! entry and the 512-byte tail; listCpio reads back what it wrote.
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, readFileSync, readlinkSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { listCpio, writeCpio, type CpioEntry } from '../../../harness/image/cpio.js';
import { tempDir } from '../../helpers.js';

const FIELDS = ['ino', 'mode', 'uid', 'gid', 'nlink', 'mtime', 'filesize', 'devmajor', 'devminor', 'rdevmajor', 'rdevminor', 'namesize', 'check'] as const;
type Header = Record<(typeof FIELDS)[number], number> & { offset: number; name: string; data: Buffer; end: number };

/** A newc reader of its own (not listCpio): every field, and where each header starts. */
function parseNewc(buf: Buffer): Header[] {
  const out: Header[] = [];
  let o = 0;
  for (;;) {
    if (buf.toString('latin1', o, o + 6) !== '070701') throw new Error(`no newc magic at ${o}`);
    const h = { offset: o } as Header;
    FIELDS.forEach((f, i) => {
      const hex = buf.toString('latin1', o + 6 + i * 8, o + 14 + i * 8);
      if (!/^[0-9a-f]{8}$/.test(hex)) throw new Error(`field ${f} at ${o} is ${JSON.stringify(hex)}, not 8 lower-case hex digits`);
      h[f] = parseInt(hex, 16);
    });
    const nameAt = o + 110;
    if (buf[nameAt + h.namesize - 1] !== 0) throw new Error(`name at ${nameAt} is not NUL-terminated within namesize`);
    h.name = buf.toString('utf8', nameAt, nameAt + h.namesize - 1);
    const dataAt = Math.ceil((nameAt + h.namesize) / 4) * 4;
    if (buf.subarray(nameAt + h.namesize, dataAt).some((b) => b !== 0)) throw new Error(`name padding at ${nameAt + h.namesize} is not zeros`);
    h.data = buf.subarray(dataAt, dataAt + h.filesize);
    h.end = Math.ceil((dataAt + h.filesize) / 4) * 4;
    if (buf.subarray(dataAt + h.filesize, h.end).some((b) => b !== 0)) throw new Error(`data padding at ${dataAt + h.filesize} is not zeros`);
    out.push(h);
    o = h.end;
    if (h.name === 'TRAILER!!!') return out;
  }
}

const SAMPLE: CpioEntry[] = [
  { type: 'dir', path: '/etc', mode: 0o700 },
  { type: 'dir', path: '/bin' },
  { type: 'file', path: '/etc/passwd', data: Buffer.from('root:x:0:0::/root:/bin/sh\n') },
  { type: 'file', path: '/init', data: Buffer.from('#!/bin/sh\nexec /bin/sh\n'), mode: 0o755 },
  { type: 'file', path: '/etc/empty', data: Buffer.alloc(0) },
  { type: 'symlink', path: '/bin/sh', target: 'busybox' },
  { type: 'file', path: '///etc/odd', data: Buffer.from([0, 1, 2, 0xff, 0x30, 0x37, 0x30, 0x37, 0x30, 0x31]) },
];

t.test('header fields: owner root, inode numbers, types and modes, link counts, sizes, name sizes', async (t) => {
  const hs = parseNewc(writeCpio(SAMPLE));
  t.same(hs.map((h) => h.name), ['etc', 'bin', 'etc/passwd', 'init', 'etc/empty', 'bin/sh', 'etc/odd', 'TRAILER!!!'], 'leading slashes stripped, order kept, the trailer last');
  t.same(hs.map((h) => h.mode.toString(8)), ['40700', '40755', '100644', '100755', '100644', '120777', '100644', '0'], 'type bits with the given or default permissions');
  t.same(hs.map((h) => h.ino), [1, 2, 3, 4, 5, 6, 7, 0], 'distinct inode numbers (the kernel links equal ones), 0 for the trailer');
  t.same(hs.map((h) => h.nlink), [2, 2, 1, 1, 1, 1, 1, 1]);
  t.same(hs.map((h) => h.filesize), [0, 0, 26, 23, 0, 7, 10, 0]);
  t.same(hs.map((h) => h.namesize), hs.map((h) => Buffer.byteLength(h.name) + 1), 'namesize counts the NUL');
  for (const f of ['uid', 'gid', 'mtime', 'devmajor', 'devminor', 'rdevmajor', 'rdevminor', 'check'] as const) {
    t.ok(hs.every((h) => h[f] === 0), `${f} is 0 everywhere`);
  }
  t.equal(hs[5]!.data.toString(), 'busybox', "a symlink's data is its target");
  t.same([...hs[6]!.data], [0, 1, 2, 0xff, 0x30, 0x37, 0x30, 0x37, 0x30, 0x31], 'file data kept byte for byte');
});

t.test('every header starts 4-aligned whatever the name and data lengths; the archive ends in zeros to 512', async (t) => {
  const entries: CpioEntry[] = [];
  // Name lengths 1..9 (with the 110-byte header that is every remainder mod 4), data lengths 0..6.
  for (let n = 1; n <= 9; n++) for (let d = 0; d <= 6; d++) entries.push({ type: 'file', path: `/${'n'.repeat(n)}`, data: Buffer.alloc(d, 0x41 + d) });
  const buf = writeCpio(entries);
  const hs = parseNewc(buf);
  t.equal(hs.length, entries.length + 1);
  t.ok(hs.every((h) => h.offset % 4 === 0), 'headers 4-aligned');
  // Entry i has a name of i / 7 + 1 bytes and i % 7 bytes of data.
  t.ok(hs.slice(0, -1).every((h, i) => h.name.length === Math.floor(i / 7) + 1 && h.data.equals(Buffer.alloc(i % 7, 0x41 + (i % 7)))), 'names and data where the padding rules put them');
  const trailer = hs.at(-1)!;
  t.equal(buf.length % 512, 0, 'a whole number of 512-byte blocks');
  t.ok(buf.length - trailer.end < 512, 'no more padding than needed');
  t.ok(buf.subarray(trailer.end).every((b) => b === 0), 'zeros after the trailer');
  // A body that is already a multiple of 512 gets no extra block.
  const body = (data: number) => writeCpio([{ type: 'file', path: 'x', data: Buffer.alloc(data) }]);
  const exact = 512 - (parseNewc(body(0)).at(-1)!.end % 512);
  t.equal(body(exact).length, parseNewc(body(exact)).at(-1)!.end, 'ends right after the trailer when that is on a block boundary');
});

t.test('names are sized in bytes, not characters', async (t) => {
  const hs = parseNewc(writeCpio([{ type: 'file', path: '/lib/modules/über-ß.ko', data: Buffer.from('x') }]));
  t.equal(hs[0]!.name, 'lib/modules/über-ß.ko');
  t.equal(hs[0]!.namesize, Buffer.byteLength('lib/modules/über-ß.ko') + 1);
  t.same(listCpio(writeCpio([{ type: 'file', path: '/über', data: Buffer.from('x') }])).map((e) => e.path), ['über']);
});

t.test('listCpio reads back names, modes, sizes and data, stopping at the trailer', async (t) => {
  const buf = writeCpio(SAMPLE);
  const l = listCpio(buf);
  t.same(l.map((e) => [e.path, e.mode.toString(8), e.size]), [
    ['etc', '40700', 0],
    ['bin', '40755', 0],
    ['etc/passwd', '100644', 26],
    ['init', '100755', 23],
    ['etc/empty', '100644', 0],
    ['bin/sh', '120777', 7],
    ['etc/odd', '100644', 10],
  ]);
  t.equal(l[3]!.data.toString(), '#!/bin/sh\nexec /bin/sh\n');
  // Two archives back to back (the kernel accepts concatenated ones): listCpio stops at the first trailer.
  t.equal(listCpio(Buffer.concat([buf, writeCpio([{ type: 'file', path: 'second', data: Buffer.from('2') }])])).length, SAMPLE.length);
  t.throws(() => listCpio(Buffer.concat([Buffer.from('070707'), buf])), /bad cpio magic at 0/, 'the old binary/odc magic is refused');
  t.same(listCpio(writeCpio([])), [], 'an empty archive is just the trailer');
  t.equal(writeCpio([]).length, 512);
});

const cpio = (() => {
  try {
    return execFileSync('sh', ['-c', 'command -v cpio'], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
})();

t.test('GNU cpio extracts the archive to the same tree', { skip: cpio ? false : 'no cpio on this host' }, async (t) => {
  const dir = tempDir(t);
  const buf = writeCpio([...SAMPLE, { type: 'dir', path: '/lib' }, { type: 'dir', path: '/lib/modules' }, { type: 'file', path: '/lib/modules/m.ko', data: Buffer.alloc(70_001, 7), mode: 0o600 }]);
  execFileSync(cpio!, ['-i', '-d', '-m', '--no-absolute-filenames', '--quiet'], { cwd: dir, input: buf, stdio: ['pipe', 'pipe', 'pipe'] });
  const listed = execFileSync(cpio!, ['-t', '--quiet'], { input: buf, encoding: 'utf8' }).trim().split('\n');
  t.same(listed, ['etc', 'bin', 'etc/passwd', 'init', 'etc/empty', 'bin/sh', 'etc/odd', 'lib', 'lib/modules', 'lib/modules/m.ko'], 'cpio -t lists the entries');
  t.same(readdirSync(dir).sort(), ['bin', 'etc', 'init', 'lib']);
  t.equal(readFileSync(join(dir, 'etc/passwd'), 'utf8'), 'root:x:0:0::/root:/bin/sh\n');
  t.equal(readFileSync(join(dir, 'init'), 'utf8'), '#!/bin/sh\nexec /bin/sh\n');
  t.equal(readFileSync(join(dir, 'etc/empty')).length, 0);
  t.same([...readFileSync(join(dir, 'etc/odd'))], [0, 1, 2, 0xff, 0x30, 0x37, 0x30, 0x37, 0x30, 0x31]);
  t.ok(readFileSync(join(dir, 'lib/modules/m.ko')).equals(Buffer.alloc(70_001, 7)), 'a large file whole');
  t.equal(readlinkSync(join(dir, 'bin/sh')), 'busybox');
  t.ok(lstatSync(join(dir, 'bin/sh')).isSymbolicLink());
  const mode = (p: string) => (lstatSync(join(dir, p)).mode & 0o7777).toString(8);
  t.equal(mode('init'), '755');
  t.equal(mode('lib/modules/m.ko'), '600');
  t.equal(mode('etc'), '700');
  t.equal(mode('etc/passwd'), '644');
  t.notOk(existsSync(join(dir, 'TRAILER!!!')), 'the trailer is no file');
});
