import { readFileSync } from 'node:fs';
import t from 'tap';
import { classifyUpdateFailures, parseDependsClosure } from '../../../harness/image/apt.js';
import { fixture } from '../../helpers.js';

t.test('a failing security index (mirror sync) is tolerated', async (t) => {
  const r = classifyUpdateFailures(readFileSync(fixture('apt-update-security-mirror-sync.log'), 'utf8'));
  t.ok(r.failed.length > 0);
  t.equal(r.tolerable, true);
});

t.test('a failing main index is not tolerated', async (t) => {
  const out = 'Err:4 http://deb.debian.org/debian bookworm/main ppc64el Packages\n  404  Not Found\nE: Failed to fetch http://deb.debian.org/debian/dists/bookworm/main/binary-ppc64el/Packages.xz  404  Not Found\nE: Some index files failed to download.\n';
  t.equal(classifyUpdateFailures(out).tolerable, false);
  t.equal(classifyUpdateFailures('E: Could not open lock file\n').tolerable, false);
});

t.test('the dependency closure comes from package metadata, virtual packages skipped', async (t) => {
  const pkgs = parseDependsClosure(readFileSync(fixture('apt-depends-ppc64el.txt'), 'utf8'));
  for (const p of ['busybox', 'dropbear-bin', 'libc6', 'libtomcrypt1', 'libgmp10', 'bash']) t.ok(pkgs.includes(p), p);
  t.notOk(pkgs.some((p) => p.startsWith('<')), 'no virtual packages');
});
