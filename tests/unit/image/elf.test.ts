// readElfDeps finds a program's interpreter and DT_NEEDED libraries as
// readelf does, in little- and big-endian ELF64 alike, gives a static program
// none, and refuses what is not a (64-bit) ELF instead of inventing deps.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import t from 'tap';
import { isElf, readElfDeps } from '../../../harness/image/elf.js';

/** What readelf says a file needs (undefined without readelf). */
function readelf(path: string): { interpreter?: string; needed: string[] } | undefined {
  try {
    const l = execFileSync('readelf', ['-lW', path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const d = execFileSync('readelf', ['-dW', path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return { interpreter: /Requesting program interpreter: (.*)\]/.exec(l)?.[1], needed: [...d.matchAll(/\(NEEDED\)\s+Shared library: \[(.*)\]/g)].map((m) => m[1]!) };
  } catch {
    return undefined;
  }
}

const HOST_FILES = ['/bin/true', '/usr/bin/env', '/bin/sh', '/lib/x86_64-linux-gnu/libm.so.6', '/lib/aarch64-linux-gnu/libm.so.6', '/lib/powerpc64le-linux-gnu/libm.so.6'].filter((p) => existsSync(p) && isElf(readFileSync(p)));

t.test('host programs and libraries: the same interpreter and DT_NEEDED list as readelf', async (t) => {
  t.ok(HOST_FILES.length >= 2, `some host ELF files to read (${HOST_FILES.join(', ')})`);
  const deps = readElfDeps(readFileSync('/bin/true'));
  t.match(deps.interpreter, /^\/lib.*\/ld[-.].*\.so/, '/bin/true has a dynamic loader');
  t.ok(deps.needed.includes('libc.so.6'), '/bin/true needs libc');
  const lib = HOST_FILES.find((p) => p.endsWith('libm.so.6'));
  if (lib) t.ok(readElfDeps(readFileSync(lib)).needed.includes('libc.so.6'), `${lib} needs libc`);
  for (const p of HOST_FILES) {
    const want = readelf(p);
    if (!want) {
      t.comment(`no readelf: ${p} not cross-checked`);
      continue;
    }
    t.same(readElfDeps(readFileSync(p)), { interpreter: want.interpreter, needed: want.needed }, `${p} as readelf reads it`);
  }
});

// Debian's ldconfig is static-pie: a PT_DYNAMIC with no DT_NEEDED and no PT_INTERP.
const ldconfig = existsSync('/sbin/ldconfig') ? readelf('/sbin/ldconfig') : undefined;
const staticSkip = !ldconfig ? 'no /sbin/ldconfig or no readelf' : ldconfig.interpreter || ldconfig.needed.length ? "this host's ldconfig is dynamically linked" : false;

t.test('a static program (static-pie ldconfig) needs nothing', { skip: staticSkip }, async (t) => {
  t.same(readElfDeps(readFileSync('/sbin/ldconfig')), { interpreter: undefined, needed: [] });
});

// ---- a made-up ELF64, little- or big-endian ----

interface Ph {
  type: number;
  offset: number;
  vaddr: number;
  filesz: number;
}

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NULL = 0;
const DT_NEEDED = 1;
const DT_STRTAB = 5;
const DT_SONAME = 14;

function makeElf(o: { le: boolean; phentsize?: number; phs: Ph[]; dyn?: { at: number; entries: [number, number][] }; strings?: { at: number; text: string }[]; size?: number }): Buffer {
  const buf = Buffer.alloc(o.size ?? 0x1000);
  const u16 = (at: number, v: number) => (o.le ? buf.writeUInt16LE(v, at) : buf.writeUInt16BE(v, at));
  const u32 = (at: number, v: number) => (o.le ? buf.writeUInt32LE(v, at) : buf.writeUInt32BE(v, at));
  const u64 = (at: number, v: number) => (o.le ? buf.writeBigUInt64LE(BigInt(v), at) : buf.writeBigUInt64BE(BigInt(v), at));
  buf.writeUInt32BE(0x7f454c46, 0);
  buf[4] = 2; // ELFCLASS64
  buf[5] = o.le ? 1 : 2;
  buf[6] = 1;
  u16(0x10, 3); // ET_DYN
  u16(0x12, o.le ? 62 : 21); // x86-64 / PowerPC64
  const phentsize = o.phentsize ?? 56;
  u64(0x20, 64);
  u16(0x34, 64);
  u16(0x36, phentsize);
  u16(0x38, o.phs.length);
  o.phs.forEach((p, i) => {
    const at = 64 + i * phentsize;
    u32(at, p.type);
    u64(at + 8, p.offset);
    u64(at + 16, p.vaddr);
    u64(at + 24, p.vaddr);
    u64(at + 32, p.filesz);
    u64(at + 40, p.filesz);
  });
  o.dyn?.entries.forEach(([tag, val], i) => {
    u64(o.dyn!.at + i * 16, tag);
    u64(o.dyn!.at + i * 16 + 8, val);
  });
  for (const s of o.strings ?? []) buf.write(s.text, s.at, 'latin1');
  return buf;
}

// The string table is in the second PT_LOAD, whose address is not its file offset: a reader must translate.
const STRTAB = '\0libfoo.so.1\0libc.so.6\0libignored.so\0';
const layout = (le: boolean, extra: Partial<Parameters<typeof makeElf>[0]> = {}) =>
  makeElf({
    le,
    phs: [
      { type: PT_INTERP, offset: 0x300, vaddr: 0x300, filesz: 15 },
      { type: PT_LOAD, offset: 0, vaddr: 0, filesz: 0x380 },
      { type: PT_LOAD, offset: 0x400, vaddr: 0x20400, filesz: 0x100 },
      { type: PT_DYNAMIC, offset: 0x600, vaddr: 0x30600, filesz: 6 * 16 },
    ],
    // NEEDED before STRTAB, an unrelated tag, DT_NULL ending the table, an entry after it.
    dyn: { at: 0x600, entries: [[DT_NEEDED, 1], [DT_SONAME, 1], [DT_STRTAB, 0x20400], [DT_NEEDED, 13], [DT_NULL, 0], [DT_NEEDED, 23]] },
    strings: [{ at: 0x300, text: '/lib/ld64.so.2\0' }, { at: 0x400, text: STRTAB }],
    ...extra,
  });

t.test('made-up ELF64: interpreter and DT_NEEDED in file order, strtab found through its segment, the table ends at DT_NULL', async (t) => {
  const want = { interpreter: '/lib/ld64.so.2', needed: ['libfoo.so.1', 'libc.so.6'] };
  t.same(readElfDeps(layout(true)), want, 'little-endian');
  t.same(readElfDeps(layout(false)), want, 'big-endian (ppc64 images read on an x86 host)');
});

t.test('program headers are read at e_phentsize, and the dynamic table no further than its size', async (t) => {
  const wide = layout(true, { phentsize: 64 });
  t.same(readElfDeps(wide).needed, ['libfoo.so.1', 'libc.so.6'], 'headers 64 bytes apart');
  const short = makeElf({
    le: true,
    phs: [
      { type: PT_LOAD, offset: 0x400, vaddr: 0x400, filesz: 0x100 },
      { type: PT_DYNAMIC, offset: 0x600, vaddr: 0x600, filesz: 2 * 16 },
    ],
    dyn: { at: 0x600, entries: [[DT_STRTAB, 0x400], [DT_NEEDED, 1], [DT_NEEDED, 13]] },
    strings: [{ at: 0x400, text: STRTAB }],
  });
  t.same(readElfDeps(short), { interpreter: undefined, needed: ['libfoo.so.1'] }, 'the third entry is past p_filesz and not read');
});

t.test('no PT_DYNAMIC, or no DT_STRTAB: nothing needed; DT_STRTAB outside every segment is an error', async (t) => {
  const noDynamic = makeElf({ le: true, phs: [{ type: PT_INTERP, offset: 0x300, vaddr: 0x300, filesz: 8 }, { type: PT_LOAD, offset: 0, vaddr: 0, filesz: 0x400 }], strings: [{ at: 0x300, text: '/ld.so\0' }] });
  t.same(readElfDeps(noDynamic), { interpreter: '/ld.so', needed: [] });
  const noStrtab = makeElf({ le: false, phs: [{ type: PT_DYNAMIC, offset: 0x600, vaddr: 0x600, filesz: 32 }], dyn: { at: 0x600, entries: [[DT_NEEDED, 1], [DT_NULL, 0]] } });
  t.same(readElfDeps(noStrtab), { interpreter: undefined, needed: [] });
  const outside = makeElf({
    le: true,
    phs: [
      { type: PT_LOAD, offset: 0, vaddr: 0, filesz: 0x400 },
      { type: PT_DYNAMIC, offset: 0x600, vaddr: 0x600, filesz: 48 },
    ],
    // The strtab address is the first byte after the segment: outside.
    dyn: { at: 0x600, entries: [[DT_NEEDED, 1], [DT_STRTAB, 0x400], [DT_NULL, 0]] },
  });
  t.throws(() => readElfDeps(outside), /DT_STRTAB is outside every PT_LOAD segment/);
});

t.test('not an ELF, or not 64-bit: refused by name', async (t) => {
  const cases: [string, Buffer][] = [
    ['empty', Buffer.alloc(0)],
    ['a shell script', Buffer.from('#!/bin/sh\n' + 'echo hello\n'.repeat(20))],
    ['random bytes', Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919 + 13) & 0xff))],
    ['ELF magic with nothing after it', Buffer.from('\x7fELF', 'latin1')],
    ['a 64-byte header only', layout(true).subarray(0, 64)],
    ['a cpio archive', Buffer.concat([Buffer.from('070701'), Buffer.alloc(600, 0x30)])],
  ];
  for (const [what, buf] of cases) {
    t.equal(isElf(buf), false, `${what}: isElf false`);
    t.throws(() => readElfDeps(buf), /not an ELF file/, `${what}: refused`);
  }
  const elf32 = Buffer.from(layout(true));
  elf32[4] = 1;
  t.equal(isElf(elf32), true, 'a 32-bit ELF is an ELF');
  t.throws(() => readElfDeps(elf32), /only 64-bit ELF is supported/);
});

t.test('a truncated host program is refused or read whole: never a partial list', async (t) => {
  const buf = readFileSync('/bin/true');
  const whole = JSON.stringify(readElfDeps(buf));
  let threw = 0;
  const partial: number[] = [];
  for (let len = 65; len < buf.length; len += 7) {
    let got: string | undefined;
    try {
      got = JSON.stringify(readElfDeps(buf.subarray(0, len)));
    } catch {
      threw++;
    }
    if (got !== undefined && got !== whole) partial.push(len);
  }
  t.same(partial, [], 'no cut gives other deps than the whole file');
  t.ok(threw > 0, `cuts before the dynamic section throw (${threw} did)`);
  t.throws(() => readElfDeps(buf.subarray(0, 100)), 'cut inside the program headers');
});
