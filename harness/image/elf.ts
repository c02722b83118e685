// Just enough ELF reading to find what a dynamically linked program needs:
// its interpreter (PT_INTERP) and its DT_NEEDED libraries. Works for any
// 64-bit little- or big-endian ELF, whatever the host arch.

export interface ElfDeps {
  interpreter?: string;
  needed: string[];
}

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NEEDED = 1n;
const DT_STRTAB = 5n;

export function isElf(buf: Buffer): boolean {
  return buf.length > 64 && buf.readUInt32BE(0) === 0x7f454c46;
}

/** Reads PT_INTERP and DT_NEEDED from an ELF64 image; a static program gives an empty list. */
export function readElfDeps(buf: Buffer): ElfDeps {
  if (!isElf(buf)) throw new Error('not an ELF file');
  if (buf[4] !== 2) throw new Error('only 64-bit ELF is supported');
  const le = buf[5] === 1;
  const u16 = (o: number) => (le ? buf.readUInt16LE(o) : buf.readUInt16BE(o));
  const u64 = (o: number) => (le ? buf.readBigUInt64LE(o) : buf.readBigUInt64BE(o));
  const phoff = Number(u64(0x20));
  const phentsize = u16(0x36);
  const phnum = u16(0x38);
  const loads: { vaddr: bigint; offset: bigint; filesz: bigint }[] = [];
  let dynamic: { offset: number; size: number } | undefined;
  let interpreter: string | undefined;
  for (let i = 0; i < phnum; i++) {
    const o = phoff + i * phentsize;
    const type = le ? buf.readUInt32LE(o) : buf.readUInt32BE(o);
    const offset = u64(o + 8);
    const vaddr = u64(o + 16);
    const filesz = u64(o + 32);
    if (type === PT_LOAD) loads.push({ vaddr, offset, filesz });
    if (type === PT_DYNAMIC) dynamic = { offset: Number(offset), size: Number(filesz) };
    if (type === PT_INTERP) interpreter = cString(buf, Number(offset));
  }
  const needed: string[] = [];
  if (!dynamic) return { interpreter, needed };
  const neededOffsets: bigint[] = [];
  let strtab: bigint | undefined;
  for (let o = dynamic.offset; o + 16 <= dynamic.offset + dynamic.size; o += 16) {
    const tag = u64(o);
    const val = u64(o + 8);
    if (tag === 0n) break;
    if (tag === DT_NEEDED) neededOffsets.push(val);
    if (tag === DT_STRTAB) strtab = val;
  }
  if (strtab === undefined) return { interpreter, needed };
  const seg = loads.find((l) => strtab! >= l.vaddr && strtab! < l.vaddr + l.filesz);
  if (!seg) throw new Error('DT_STRTAB is outside every PT_LOAD segment');
  const strOff = Number(strtab - seg.vaddr + seg.offset);
  for (const n of neededOffsets) needed.push(cString(buf, strOff + Number(n)));
  return { interpreter, needed };
}

function cString(buf: Buffer, at: number): string {
  const end = buf.indexOf(0, at);
  return buf.toString('latin1', at, end < 0 ? buf.length : end);
}
