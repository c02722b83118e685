// A writer for the "newc" cpio format the kernel unpacks as an initramfs.
// Everything is owned by root; modes and link targets come from the entry.

export type CpioEntry =
  | { type: 'dir'; path: string; mode?: number }
  | { type: 'file'; path: string; data: Buffer; mode?: number }
  | { type: 'symlink'; path: string; target: string };

const hex8 = (n: number) => n.toString(16).padStart(8, '0');
const pad4 = (n: number) => (4 - (n % 4)) % 4;

function header(ino: number, mode: number, nlink: number, size: number, name: string): Buffer {
  const nameBuf = Buffer.from(name + '\0');
  const fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, nameBuf.length, 0];
  const head = Buffer.from('070701' + fields.map(hex8).join(''), 'ascii');
  return Buffer.concat([head, nameBuf, Buffer.alloc(pad4(head.length + nameBuf.length))]);
}

/** Serialises entries (parents before children) into one uncompressed newc archive. */
export function writeCpio(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  for (const e of entries) {
    const name = e.path.replace(/^\/+/, '');
    let mode: number;
    let data: Buffer;
    if (e.type === 'dir') {
      mode = 0o040000 | (e.mode ?? 0o755);
      data = Buffer.alloc(0);
    } else if (e.type === 'file') {
      mode = 0o100000 | (e.mode ?? 0o644);
      data = e.data;
    } else {
      mode = 0o120000 | 0o777;
      data = Buffer.from(e.target);
    }
    parts.push(header(ino++, mode, e.type === 'dir' ? 2 : 1, data.length, name), data, Buffer.alloc(pad4(data.length)));
  }
  parts.push(header(0, 0, 1, 0, 'TRAILER!!!'));
  const body = Buffer.concat(parts);
  return Buffer.concat([body, Buffer.alloc((512 - (body.length % 512)) % 512)]);
}

/** Reads back the names, modes and sizes of a newc archive (for tests and checks). */
export function listCpio(buf: Buffer): { path: string; mode: number; size: number; data: Buffer }[] {
  const out: { path: string; mode: number; size: number; data: Buffer }[] = [];
  let o = 0;
  while (o + 110 <= buf.length) {
    if (buf.toString('ascii', o, o + 6) !== '070701') throw new Error(`bad cpio magic at ${o}`);
    const field = (i: number) => parseInt(buf.toString('ascii', o + 6 + i * 8, o + 14 + i * 8), 16);
    const mode = field(1);
    const size = field(6);
    const nameSize = field(11);
    const name = buf.toString('utf8', o + 110, o + 110 + nameSize - 1);
    o += 110 + nameSize;
    o += pad4(110 + nameSize);
    if (name === 'TRAILER!!!') break;
    out.push({ path: name, mode, size, data: buf.subarray(o, o + size) });
    o += size + pad4(size);
  }
  return out;
}
