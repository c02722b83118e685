// --qemu: only the known choices parse (anything else is a usage error listing
// them); the host's QEMU runs each arch's binary from PATH and touches no
// cache; a fetched QEMU (trixie's, backports') already in the cache is used as it is, with its
// firmware (-L) and modules directory, never fetched again. No downloads here.
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, readdirSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ARCHES } from '../../../harness/core/arch.js';
import { readValidMarker, writeMarker } from '../../../harness/core/cache.js';
import { EXIT, exitCodeFor, HarnessError } from '../../../harness/core/errors.js';
import { createLogger } from '../../../harness/core/log.js';
import { onPath } from '../../../harness/core/preflight.js';
import { bookwormAmd64, DEFAULT_QEMU, HOST_QEMU, parseQemuChoice, QEMU_CHOICES, qemuInstall, useOwnLibraries } from '../../../harness/vm/qemu-dist.js';
import { tempDir } from '../../helpers.js';

const quiet = () => createLogger('quiet', () => {});

t.test('each choice parses to itself; the default is one of them', async (t) => {
  t.same([...QEMU_CHOICES].sort(), ['auto', 'backports', 'host', 'trixie']);
  for (const c of QEMU_CHOICES) t.equal(parseQemuChoice(c), c);
  t.ok(QEMU_CHOICES.includes(DEFAULT_QEMU));
  t.equal(DEFAULT_QEMU, 'auto', "the README's default: per arch, a QEMU that restores snapshots");
});

t.test('anything else is a usage error naming the value and listing the choices', async (t) => {
  for (const bad of ['', 'Host', ' host', 'host ', 'backport', 'Trixie', 'debian13', 'bookworm-backports', 'host,backports', 'qemu-system-x86_64']) {
    const e = (() => {
      try {
        parseQemuChoice(bad);
        return undefined;
      } catch (err) {
        return err;
      }
    })();
    t.ok(e instanceof HarnessError, `'${bad}' refused`);
    const he = e as HarnessError;
    t.equal(he.kind, 'usage');
    t.equal(exitCodeFor(he), EXIT.usage);
    t.equal(he.message, `--qemu '${bad}' is not a QEMU this harness knows`);
    t.equal(he.context.hint, 'use one of: auto, host, trixie, backports');
  }
});

t.test("the host's QEMU: each arch's own binary by name, no extra arguments, no cache", async (t) => {
  for (const a of Object.values(ARCHES)) t.equal(HOST_QEMU.binaryFor(a), a.qemu.binary, `${a.name}: ${a.qemu.binary} from PATH`);
  t.same(HOST_QEMU.dataArgsFor(ARCHES.x86_64!), []);
  t.equal(HOST_QEMU.envFor(ARCHES.x86_64!), undefined);
  t.equal(HOST_QEMU.choice, 'host');
  const cache = join(tempDir(t), 'not-made');
  t.equal(await qemuInstall('host', cache, quiet()), HOST_QEMU);
  t.notOk(existsSync(cache), 'the cache is not touched for the host QEMU');
});

/** A fetched QEMU as a finished cache entry (marker written), optionally without its firmware directory. */
async function cachedFetched(cache: string, name: 'backports' | 'trixie', firmware = true): Promise<string> {
  const root = join(cache, 'qemu', name);
  for (const d of ['root/usr/bin', 'root/usr/lib/x86_64-linux-gnu/qemu', ...(firmware ? ['root/usr/share/qemu'] : [])]) mkdirSync(join(root, d), { recursive: true });
  await writeMarker(root, `qemu-${name}`, { debs: 'qemu-system-x86_10.0.2+ds-1~bpo12+1_amd64.deb', version: 'QEMU emulator version 10.0.2' }, []);
  return root;
}
const cachedBackports = (cache: string, firmware = true) => cachedFetched(cache, 'backports', firmware);

t.test('a backported QEMU in the cache is used as it is: its binaries, its firmware first, its own modules', async (t) => {
  const cache = tempDir(t);
  const root = await cachedBackports(cache);
  // Guard: with an invalid entry qemuInstall would go to the network; this test must never.
  t.ok(await readValidMarker(root), 'the entry is complete');
  if (!(await readValidMarker(root))) return;
  const q = await qemuInstall('backports', cache, quiet());
  t.equal(q.choice, 'backports');
  for (const a of Object.values(ARCHES)) t.equal(q.binaryFor(a), join(root, 'root/usr/bin', a.qemu.binary), `${a.name}: the fetched binary, by path`);
  t.same(q.dataArgsFor(ARCHES.ppc64le!), ['-L', join(root, 'root/usr/share/qemu')]);
  t.same(q.envFor(ARCHES.ppc64le!), { QEMU_MODULE_DIR: join(root, 'root/usr/lib/x86_64-linux-gnu/qemu') });
  t.match(q.describe, root);
  t.same(readdirSync(join(root, 'root/usr/bin')), [], 'nothing was unpacked again');
});

t.test("a cached trixie QEMU is used the same way: Debian 13's, by path, its firmware and modules", async (t) => {
  const cache = tempDir(t);
  const root = await cachedFetched(cache, 'trixie');
  t.ok(await readValidMarker(root), 'the entry is complete');
  if (!(await readValidMarker(root))) return;
  const q = await qemuInstall('trixie', cache, quiet());
  t.equal(q.choice, 'trixie');
  t.equal(q.binaryFor(ARCHES.ppc64le!), join(root, 'root/usr/bin/qemu-system-ppc64'));
  t.same(q.dataArgsFor(ARCHES.x86_64!), ['-L', join(root, 'root/usr/share/qemu')]);
  t.same(q.envFor(ARCHES.ppc64le!), { QEMU_MODULE_DIR: join(root, 'root/usr/lib/x86_64-linux-gnu/qemu') });
  t.match(q.describe, /^Debian 13's QEMU /);
});

t.test('useOwnLibraries: every QEMU binary (not its symlinks) gets the root\'s loader and library directory; no loader is an infrastructure error', { skip: onPath('patchelf') ? false : 'patchelf is not installed' }, async (t) => {
  const root = tempDir(t);
  mkdirSync(join(root, 'usr/bin'), { recursive: true });
  mkdirSync(join(root, 'usr/lib/x86_64-linux-gnu'), { recursive: true });
  const e = await useOwnLibraries(root).catch((err: unknown) => err);
  t.ok(e instanceof HarnessError && e.kind === 'infra', 'no loader in the root');
  t.match((e as Error).message, /has no loader at .*ld-linux-x86-64\.so\.2/);
  copyFileSync('/bin/true', join(root, 'usr/bin/qemu-system-x86_64'));
  symlinkSync('qemu-system-x86_64', join(root, 'usr/bin/qemu-system-amd64'));
  copyFileSync('/bin/true', join(root, 'usr/bin/not-qemu'));
  const loader = join(root, 'usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2');
  copyFileSync(realpathSync('/lib64/ld-linux-x86-64.so.2'), loader);
  await useOwnLibraries(root);
  const read = (f: string, what: string) => execFileSync('patchelf', [what, join(root, 'usr/bin', f)], { encoding: 'utf8' }).trim();
  t.equal(read('qemu-system-x86_64', '--print-interpreter'), loader);
  t.equal(read('qemu-system-x86_64', '--print-rpath'), join(root, 'usr/lib/x86_64-linux-gnu'));
  t.not(read('not-qemu', '--print-interpreter'), loader, 'only QEMU binaries');
  t.ok(lstatSync(join(root, 'usr/bin/qemu-system-amd64')).isSymbolicLink(), 'the symlink is left a symlink');
  execFileSync(join(root, 'usr/bin/qemu-system-x86_64'));
  t.pass('the patched binary runs with the loader it names');
});

t.test('a cached backported QEMU without its firmware directory is a usage error saying to remove it', async (t) => {
  const cache = tempDir(t);
  const root = await cachedBackports(cache, false);
  t.ok(await readValidMarker(root), 'the entry is complete');
  if (!(await readValidMarker(root))) return;
  const e = await qemuInstall('backports', cache, quiet()).catch((err: unknown) => err);
  t.ok(e instanceof HarnessError);
  t.equal((e as HarnessError).kind, 'usage');
  t.equal((e as HarnessError).message, `the backports QEMU in ${root} has no firmware directory`);
  t.equal((e as HarnessError).context.hint, `remove ${root} and run again`);
});

/** Fake host QEMUs first on PATH that print the given version line. */
function fakeHostQemus(t: { teardown(fn: () => void): void }, version: string): void {
  const bin = tempDir(t);
  for (const a of Object.values(ARCHES)) {
    writeFileSync(join(bin, a.qemu.binary), `#!/bin/sh\necho '${version}'\n`);
    chmodSync(join(bin, a.qemu.binary), 0o755);
  }
  const path = process.env.PATH;
  process.env.PATH = `${bin}:${path}`;
  t.teardown(() => (process.env.PATH = path));
}

const bookworm = bookwormAmd64();

t.test('auto: a host QEMU that restores every arch\'s snapshots is used for all, and the cache is not touched', async (t) => {
  fakeHostQemus(t, 'QEMU emulator version 8.2.2 (Debian 1:8.2.2+ds-0ubuntu1)');
  const cache = join(tempDir(t), 'not-made');
  const q = await qemuInstall('auto', cache, quiet());
  t.equal(q.choice, 'auto');
  for (const a of Object.values(ARCHES)) t.equal(q.binaryFor(a), a.qemu.binary, `${a.name}: the host's`);
  t.notOk(existsSync(cache));
});

t.test('auto: only the arches run count; x86_64 alone needs no newer QEMU', async (t) => {
  fakeHostQemus(t, 'QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)');
  const cache = join(tempDir(t), 'not-made');
  const q = await qemuInstall('auto', cache, quiet(), [ARCHES.x86_64!]);
  t.equal(q.binaryFor(ARCHES.x86_64!), 'qemu-system-x86_64');
  t.notOk(existsSync(cache));
});

t.test('auto on a host QEMU before 8.1: ppc64le gets trixie\'s QEMU (with its firmware and modules), x86_64 keeps the host\'s', { skip: bookworm ? false : 'not a bookworm amd64 host' }, async (t) => {
  fakeHostQemus(t, 'QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)');
  const cache = tempDir(t);
  const root = await cachedFetched(cache, 'trixie');
  t.ok(await readValidMarker(root), 'the entry is complete');
  if (!(await readValidMarker(root))) return;
  const lines: string[] = [];
  const q = await qemuInstall('auto', cache, createLogger('normal', (l) => lines.push(l)));
  const ppc = ARCHES.ppc64le!;
  const x86 = ARCHES.x86_64!;
  t.equal(q.binaryFor(ppc), join(root, 'root/usr/bin', ppc.qemu.binary));
  t.same(q.dataArgsFor(ppc), ['-L', join(root, 'root/usr/share/qemu')]);
  t.ok(q.envFor(ppc)?.QEMU_MODULE_DIR);
  t.equal(q.binaryFor(x86), x86.qemu.binary);
  t.same(q.dataArgsFor(x86), [], "no -L of the other QEMU's firmware for the host's");
  t.equal(q.envFor(x86), undefined);
  t.match(q.describe, /^ppc64le: Debian 13's QEMU .* \(the host's is QEMU emulator version 7\.2\.22/);
});
