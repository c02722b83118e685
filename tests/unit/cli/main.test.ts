// Bad input: each case gets a clear message and its exit code, and leaves
// no process and no partial cache entry behind.
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { EXIT } from '../../../harness/core/errors.js';
import { fakeKernelTree, okSeries, runCli } from '../../cli-helpers.js';
import { tempDir } from '../../helpers.js';

const noPartialEntries = (cache: string) => {
  const leftovers: string[] = [];
  for (const sub of ['trees', 'images']) {
    const d = join(cache, sub);
    if (existsSync(d)) leftovers.push(...readdirSync(d).filter((n) => n.includes('.tmp-')));
  }
  return leftovers;
};

t.test('--help prints usage and exits 0', async (t) => {
  const r = await runCli(['--help']);
  t.equal(r.code, EXIT.ok);
  t.match(r.stdout, /Usage: klp-harness run/);
  t.match(r.stdout, /Exit codes:/);
});

t.test('an unknown option is bad usage', async (t) => {
  const r = await runCli(['run', '--frobnicate']);
  t.equal(r.code, EXIT.usage);
  t.match(r.stderr, /Unknown option '--frobnicate'/);
});

t.test('an unknown arch lists the valid ones', async (t) => {
  const r = await runCli(['run', '--arch', 'arm64', '--cache-dir', tempDir(t)]);
  t.equal(r.code, EXIT.usage);
  t.match(r.stderr, /unknown arch 'arm64'/);
  t.match(r.stderr, /use one of: x86_64, ppc64le/);
});

t.test('an unknown scenario lists the valid ones', async (t) => {
  const r = await runCli(['run', '--scenario', 'nope', '--cache-dir', tempDir(t)]);
  t.equal(r.code, EXIT.usage);
  t.match(r.stderr, /unknown scenario 'nope'/);
  t.match(r.stderr, /signal-user-int/);
});

t.test('a kernel source that does not exist', async (t) => {
  const cache = tempDir(t);
  const r = await runCli(['run', '--arch', 'x86_64', '--kernel-src', '/nonexistent/linux', '--cache-dir', cache]);
  t.equal(r.code, EXIT.usage);
  t.match(r.stderr, /kernel source \/nonexistent\/linux does not exist/);
  t.same(noPartialEntries(cache), []);
});

t.test('a directory that is not a kernel tree', async (t) => {
  const r = await runCli(['run', '--arch', 'x86_64', '--kernel-src', tempDir(t), '--cache-dir', tempDir(t)]);
  t.equal(r.code, EXIT.usage);
  t.match(r.stderr, /is not a kernel tree \(no Makefile\)/);
});

t.test('a patch series that does not exist, or has an empty series file', async (t) => {
  const tree = fakeKernelTree(tempDir(t));
  const r1 = await runCli(['run', '--arch', 'x86_64', '--kernel-src', tree, '--patches', '/nonexistent/patches', '--cache-dir', tempDir(t)]);
  t.equal(r1.code, EXIT.usage);
  t.match(r1.stderr, /patch series \/nonexistent\/patches does not exist/);
  const series = tempDir(t);
  writeFileSync(join(series, 'series'), '\n# nothing here\n');
  const r2 = await runCli(['run', '--arch', 'x86_64', '--kernel-src', tree, '--patches', series, '--cache-dir', tempDir(t)]);
  t.equal(r2.code, EXIT.usage);
  t.match(r2.stderr, /series file .* is empty/);
});

t.test('a patch that does not apply: named, with its hunk, exit 2, no partial tree', async (t) => {
  const tree = fakeKernelTree(tempDir(t));
  const series = tempDir(t);
  writeFileSync(join(series, 'series'), 'broken.patch\n');
  writeFileSync(
    join(series, 'broken.patch'),
    'Subject: broken\n---\n--- a/kernel/livepatch/core.c\n+++ b/kernel/livepatch/core.c\n@@ -1,3 +1,3 @@\n one\n-TWO\n+2\n three\n',
  );
  const cache = tempDir(t);
  const r = await runCli(['run', '--arch', 'x86_64', '--kernel-src', tree, '--patches', series, '--cache-dir', cache]);
  t.equal(r.code, EXIT.kernelFailed);
  t.match(r.stderr, /patch 'broken.patch' does not apply/);
  t.match(r.stderr, /kernel\/livepatch\/core\.c, hunk #1/);
  t.match(r.stderr, /-TWO/);
  t.same(noPartialEntries(cache), []);
  t.same(readdirSync(join(cache, 'trees')), [], 'no tree entry');
});

t.test('missing config fragments are bad usage', async (t) => {
  const kc = tempDir(t);
  mkdirSync(kc, { recursive: true });
  writeFileSync(join(kc, 'common.config'), 'CONFIG_LIVEPATCH=y\n');
  const tree = fakeKernelTree(tempDir(t));
  const r = await runCli(['run', '--arch', 'x86_64', '--kernel-src', tree, '--patches', okSeries(tempDir(t)), '--kconfigs', kc, '--cache-dir', tempDir(t)]);
  t.equal(r.code, EXIT.usage);
  t.match(r.stderr, /config fragment\(s\) missing: .*x86_64\.config/);
});

t.test('a missing host tool names its Debian package', async (t) => {
  const bin = tempDir(t);
  const { symlinkSync } = await import('node:fs');
  symlinkSync(process.execPath, join(bin, 'node'));
  const r = await runCli(['run', '--arch', 'ppc64le', '--cache-dir', tempDir(t)], { env: { ...process.env, PATH: bin } });
  t.equal(r.code, EXIT.infra);
  t.match(r.stderr, /missing host tools: .*qemu-system-ppc64 \(Debian package qemu-system-ppc\)/);
  t.match(r.stderr, /powerpc64le-linux-gnu-gcc \(Debian package gcc-powerpc64le-linux-gnu\)/);
  t.match(r.stderr, /apt-get install .*qemu-system-ppc/);
});

t.test('an unwritable cache directory', async (t) => {
  const r = await runCli(['run', '--arch', 'x86_64', '--cache-dir', '/dev/null/klp-cache']);
  t.equal(r.code, EXIT.infra);
  t.match(r.stderr, /cache directory \/dev\/null\/klp-cache is not writable/);
  t.match(r.stderr, /--cache-dir/);
});

t.test('output that is not a terminal has no escape sequences', async (t) => {
  const tree = fakeKernelTree(tempDir(t));
  const r = await runCli(['run', '--arch', 'x86_64', '--kernel-src', tree, '--patches', okSeries(tempDir(t)), '--kconfigs', tempDir(t), '--cache-dir', tempDir(t)]);
  t.ok(r.stderr.length > 100, 'the run printed progress');
  t.match(r.stderr, /^\[\d\d:\d\d:\d\d\] /m, 'timestamped lines');
  // eslint-disable-next-line no-control-regex
  t.notMatch(r.stdout + r.stderr, /[\x1b\r]/, 'no ESC or carriage return');
});

t.test('KLP_HARNESS_TIMEOUT_SCALE that is not a positive number is bad usage, named', async (t) => {
  for (const bad of ['abc', '0', '-2', 'Infinity']) {
    const r = await runCli(['run', '--cache-dir', tempDir(t)], { env: { ...process.env, KLP_HARNESS_TIMEOUT_SCALE: bad } });
    t.equal(r.code, EXIT.usage, `'${bad}' exits ${EXIT.usage}`);
    t.match(r.stderr, new RegExp(`KLP_HARNESS_TIMEOUT_SCALE='${bad}' is not a usable factor`));
    t.match(r.stderr, /give a positive number/);
  }
});

t.test('KLP_HARNESS_GUESTS_PER_CORE that is not a whole number is bad usage, named, before any work', async (t) => {
  const r = await runCli(['run', '--cache-dir', tempDir(t)], { env: { ...process.env, KLP_HARNESS_GUESTS_PER_CORE: 'lots' } });
  t.equal(r.code, EXIT.usage);
  t.match(r.stderr, /KLP_HARNESS_GUESTS_PER_CORE='lots' is not a number of guests per core/);
  t.notMatch(r.stderr, /source:/, 'refused at the door, not after the source stage');
});

t.test('a tarball that holds no kernel tree is bad usage naming the tarball, not a patch that did not apply', async (t) => {
  const dir = tempDir(t);
  const cache = join(dir, 'cache');
  mkdirSync(join(dir, 'stuff/docs'), { recursive: true });
  writeFileSync(join(dir, 'stuff/docs/README'), 'not a kernel\n');
  const tarball = join(dir, 'not-a-kernel.tar.xz');
  const { execFileSync } = await import('node:child_process');
  execFileSync('tar', ['-cJf', tarball, '-C', dir, 'stuff']);
  const r = await runCli(['run', '--arch', 'x86_64', '--kernel-src', tarball, '--patches', okSeries(dir), '--cache-dir', cache]);
  t.equal(r.code, EXIT.usage);
  t.match(r.stderr, /not-a-kernel\.tar\.xz holds no kernel tree \(its top folder has no Makefile, Kconfig, kernel\/livepatch\)/);
  t.notMatch(r.stderr, /did not apply/);
  t.same(noPartialEntries(cache), [], 'no partial tree left');
});
