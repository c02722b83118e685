// A cache you can trust (issue 14): a root of our own (0700, refused when
// another user owns it or others may write it), packages checked against the
// index, Debian version order, private images, no planted tree taken.
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, cpSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { compareDebVersions } from '../../../harness/image/apt.js';
import { getArch } from '../../../harness/core/arch.js';
import { MARKER } from '../../../harness/core/cache.js';
import { EXIT } from '../../../harness/core/errors.js';
import { buildImage } from '../../../harness/image/initramfs.js';
import { loadKeys } from '../../../harness/image/keys.js';
import { createLogger } from '../../../harness/core/log.js';
import { readSeries } from '../../../harness/kernel/patches.js';
import { prepareSource } from '../../../harness/kernel/source.js';
import { fakeKernelTree, okSeries, runCli } from '../../cli-helpers.js';
import { fakeEnv, fakeTools } from '../../fake-tools.js';
import { tempDir } from '../../helpers.js';

const logger = createLogger('quiet');

t.test('the cache root is made 0700; one others may write or another user owns is refused (exit 3)', async (t) => {
  const parent = tempDir(t);
  const fresh = join(parent, 'new-cache');
  let r = await runCli(['cache', '--cache-dir', fresh]);
  t.equal(r.code, EXIT.ok, r.stderr);
  t.equal(statSync(fresh).mode & 0o777, 0o700, 'created 0700');

  const shared = tempDir(t);
  chmodSync(shared, 0o777);
  r = await runCli(['cache', '--cache-dir', shared]);
  t.equal(r.code, EXIT.infra);
  t.match(r.stderr, /cache directory .* is writable by everyone \(mode 777\)/);
  t.match(r.stderr, /what to do: .*chmod go-w/);
  chmodSync(shared, 0o770);
  r = await runCli(['cache', '--cache-dir', shared]);
  t.match(r.stderr, /is writable by its group/);

  if (process.getuid?.() === 0) {
    const foreign = tempDir(t);
    chownSync(foreign, 65534, 65534);
    r = await runCli(['cache', '--cache-dir', foreign]);
    t.equal(r.code, EXIT.infra);
    t.match(r.stderr, /is owned by uid 65534, not by you \(uid 0\)/);
  }
});

t.test('Debian versions are compared as dpkg does', async (t) => {
  const pairs: [string, string][] = [
    ['1.10-1', '1.9-1'],
    ['1:1.0', '2.0'],
    ['1.0~rc1', '1.0'],
    ['1.0', '1.0+b1'],
    ['2.36.1-8+deb12u1', '2.36.1-8'],
    ['1.0a', '1.0'],
    ['1.0-1~bpo12+1', '1.0-1'],
    ['10', '9'],
    ['1.0.0', '1.0'],
    ['1:2.0-1', '1:2.0-1'],
  ];
  for (const [a, b] of pairs) {
    const mine = Math.sign(compareDebVersions(a, b));
    const dpkg = (op: string) => {
      try {
        execFileSync('dpkg', ['--compare-versions', a, op, b]);
        return true;
      } catch {
        return false;
      }
    };
    const want = dpkg('gt') ? 1 : dpkg('lt') ? -1 : 0;
    t.equal(mine, want, `${a} vs ${b}: ${want} as dpkg says`);
  }
});

t.test('downloaded packages: the newest version, checked against the index; a tampered one is fetched again', async (t) => {
  const env = fakeEnv(fakeTools(tempDir(t)));
  const saved = process.env.PATH;
  process.env.PATH = env.PATH;
  t.teardown(() => {
    process.env.PATH = saved;
  });
  const cacheDir = tempDir(t);
  const keys = loadKeys(cacheDir);
  const arch = getArch('x86_64');
  const lines: string[] = [];
  const log = createLogger('normal', (s) => lines.push(s));
  const first = await buildImage({ arch, cacheDir, initScript: '#!/bin/sh\n', keys, logger: log });
  const debs = join(cacheDir, 'apt/amd64/debs');
  t.same(readdirSync(debs).filter((f) => f.endsWith('.deb')).sort(), ['busybox-static_1.10-1_amd64.deb', 'dropbear-bin_1.10-1_amd64.deb'], '1.10-1, not 1.9-1 (a text sort would pick that)');
  t.same(readdirSync(debs).filter((f) => f.startsWith('.partial')), [], 'no temporary download left');
  t.equal(statSync(first.path).mode & 0o777, 0o600, 'the initramfs holding the guest host key is 0600');
  t.equal(statSync(join(cacheDir, 'keys')).mode & 0o777, 0o700, 'the keys directory is 0700');
  writeFileSync(join(debs, 'busybox-static_1.10-1_amd64.deb'), 'tampered');
  await buildImage({ arch, cacheDir, initScript: '#!/bin/sh\n', keys, logger: log, rebuild: true });
  t.match(lines.join(''), /busybox-static_1\.10-1_amd64\.deb does not match the index's SHA256; fetching it again/);
  t.equal(readFileSync(join(debs, 'busybox-static_1.10-1_amd64.deb'), 'utf8'), 'deb:busybox-static\n', 'replaced by the real one');
});

t.test('a planted tree with the right Makefile and a copied marker is not taken', async (t) => {
  const cacheDir = tempDir(t);
  const kernelSrc = fakeKernelTree(tempDir(t));
  const series = readSeries(okSeries(tempDir(t)));
  const real = await prepareSource({ kernelSrc, series, cacheDir, logger });
  // Another cache with only the Makefile and the (valid-looking) marker of the real tree, at the right key.
  const other = tempDir(t);
  const planted = join(other, 'trees', real.key);
  mkdirSync(planted, { recursive: true });
  cpSync(join(real.tree, 'Makefile'), join(planted, 'Makefile'), { preserveTimestamps: true });
  cpSync(join(real.tree, MARKER), join(planted, MARKER));
  const r = await prepareSource({ kernelSrc, series, cacheDir: other, logger });
  t.equal(r.reused, false, 'the planted tree failed its manifest check and was made again');
  t.match(readFileSync(join(r.tree, 'kernel/livepatch/core.c'), 'utf8'), /^2$/m);
});

t.test('a tree without a manifest (from before manifests, or half-made) is never taken, nor copied from', async (t) => {
  const src = fakeKernelTree(join(tempDir(t), 'linux-6.1'));
  const tarball = join(tempDir(t), 'linux-6.1.tar.gz');
  execFileSync('tar', ['-czf', tarball, '-C', join(src, '..'), 'linux-6.1']);
  const cacheDir = tempDir(t);
  const series = readSeries(okSeries(tempDir(t)));
  const first = await prepareSource({ kernelSrc: tarball, series, cacheDir, logger });
  const markerPath = join(first.tree, MARKER);
  const m = JSON.parse(readFileSync(markerPath, 'utf8')) as Record<string, unknown>;
  delete m.manifest;
  writeFileSync(markerPath, JSON.stringify(m));
  const { rmSync } = await import('node:fs');
  rmSync(join(first.tree, 'Kconfig'));
  const again = await prepareSource({ kernelSrc: tarball, series, cacheDir, logger });
  t.equal(again.reused, false, 'made again');
  t.not(again.generation, first.generation, 'unpacked afresh: builds of the old tree are not trusted');
  t.ok(statSync(join(again.tree, 'Kconfig')).isFile(), 'with every file of its tarball');
  t.ok((JSON.parse(readFileSync(markerPath, 'utf8')) as { manifest?: unknown }).manifest, 'and a manifest');
});
