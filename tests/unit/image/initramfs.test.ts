import { copyFileSync, mkdirSync, symlinkSync, writeFileSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import t from 'tap';
import { listCpio, writeCpio } from '../../../harness/image/cpio.js';
import { readElfDeps } from '../../../harness/image/elf.js';
import { resolveClosure } from '../../../harness/image/initramfs.js';
import { tempDir } from '../../helpers.js';

t.test('ELF dependencies of a host program: interpreter and DT_NEEDED', async (t) => {
  const deps = readElfDeps(readFileSync('/bin/true'));
  t.match(deps.interpreter, /ld-linux/);
  t.ok(deps.needed.includes('libc.so.6'));
});

t.test('resolveClosure follows DT_NEEDED and symlinks in a sysroot, and reports a missing library', async (t) => {
  const root = tempDir(t);
  const ls = readElfDeps(readFileSync('/bin/true'));
  const put = (guest: string, host: string) => {
    mkdirSync(dirname(join(root, guest)), { recursive: true });
    copyFileSync(host, join(root, guest));
  };
  put('/usr/bin/prog', '/bin/true');
  // the interpreter as a symlink into the multiarch dir, as libc6 ships it
  put(`/lib/x86_64-linux-gnu/${ls.interpreter!.split('/').pop()}`, ls.interpreter!);
  mkdirSync(join(root, dirname(ls.interpreter!)), { recursive: true });
  if (ls.interpreter!.startsWith('/lib64')) symlinkSync(`/lib/x86_64-linux-gnu/${ls.interpreter!.split('/').pop()}`, join(root, ls.interpreter!));
  const missing = () => resolveClosure(root, ['/usr/bin/prog']);
  t.throws(missing, /libc\.so\.6|needed by \/usr\/bin\/prog/, 'missing library named');
  for (const lib of ls.needed) {
    const hostLib = ['/lib/x86_64-linux-gnu', '/usr/lib/x86_64-linux-gnu'].map((d) => join(d, lib)).find((p) => { try { readFileSync(p); return true; } catch { return false; } });
    put(`/lib/x86_64-linux-gnu/${lib}`, hostLib!);
  }
  const c = resolveClosure(root, ['/usr/bin/prog']);
  t.ok(c.paths.includes('/usr/bin/prog'));
  t.ok(c.paths.includes('/lib/x86_64-linux-gnu/libc.so.6'));
  if (ls.interpreter!.startsWith('/lib64')) t.equal(c.symlinks.get(ls.interpreter!), `/lib/x86_64-linux-gnu/${ls.interpreter!.split('/').pop()}`);
});

t.test('cpio newc round trip keeps names, modes, data and links', async (t) => {
  const buf = writeCpio([
    { type: 'dir', path: '/etc', mode: 0o755 },
    { type: 'file', path: '/etc/passwd', data: Buffer.from('root:x:0:0::/root:/bin/sh\n') },
    { type: 'file', path: '/init', data: Buffer.from('#!/bin/sh\n'), mode: 0o755 },
    { type: 'symlink', path: '/bin/sh', target: 'busybox' },
  ]);
  t.equal(buf.length % 512, 0);
  const l = listCpio(buf);
  t.same(l.map((e) => e.path), ['etc', 'etc/passwd', 'init', 'bin/sh']);
  t.equal(l[2]!.mode, 0o100755);
  t.equal(l[3]!.data.toString(), 'busybox');
  t.equal(l[1]!.data.toString(), 'root:x:0:0::/root:/bin/sh\n');
  writeFileSync(join(tempDir(t), 'x.cpio'), buf);
});
