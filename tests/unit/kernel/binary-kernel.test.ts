import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { getArch } from '../../../harness/core/arch.js';
import { binaryKernelFromPaths, configValue, kernelFacts, lineOf, moduleCompiler } from '../../../harness/kernel/binary-kernel.js';
import { binaryExpectations } from '../../../harness/pipeline/expectations.js';
import { tempDir } from '../../helpers.js';

// Lines as they are in Debian's 6.1 configs (amd64 from linux-headers-6.1.0-57-amd64, ppc64el from -50-powerpc64le).
const AMD64 = 'CONFIG_CC_VERSION_TEXT="gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0"\nCONFIG_HAVE_LIVEPATCH=y\nCONFIG_LIVEPATCH=y\nCONFIG_MODULE_SIG=y\n# CONFIG_SAMPLES is not set\n';
const PPC64EL = 'CONFIG_CC_VERSION_TEXT="gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0"\nCONFIG_HAVE_LIVEPATCH=y\nCONFIG_MODULE_SIG=y\n';

t.test('config readings: values without quotes, unset is undefined', async (t) => {
  t.equal(configValue(AMD64, 'CONFIG_CC_VERSION_TEXT'), 'gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0');
  t.equal(configValue(AMD64, 'CONFIG_SAMPLES'), undefined);
  t.match(kernelFacts(AMD64), { livepatch: true, haveLivepatch: true, moduleSig: true, lockdep: false });
  t.match(kernelFacts(PPC64EL), { livepatch: false, haveLivepatch: true });
});

t.test('the version line of a release', async (t) => {
  t.equal(lineOf('6.1.0-57-amd64'), '6.1');
  t.equal(lineOf('6.12.117+deb13-powerpc64le'), '6.12');
  t.throws(() => lineOf('vmlinuz'), { kind: 'usage', message: /does not start with a version/ });
});

/** Fake compilers on PATH: each prints the given first --version line. */
function compilers(t: Parameters<typeof tempDir>[0], tools: Record<string, string>) {
  const dir = tempDir(t);
  for (const [name, line] of Object.entries(tools)) {
    writeFileSync(join(dir, name), `#!/bin/sh\necho '${line}'\n`);
    chmodSync(join(dir, name), 0o755);
  }
  const old = process.env.PATH;
  process.env.PATH = `${dir}:${old}`;
  t.teardown(() => void (process.env.PATH = old));
  return (tool: string) => Object.keys(tools).includes(tool);
}

t.test("the module compiler: the kernel's own when the host has it, else the arch's gcc, saying so", async (t) => {
  const has = compilers(t, { 'gcc-12': 'gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0', 'powerpc64le-linux-gnu-gcc-12': 'powerpc64le-linux-gnu-gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0', gcc: 'gcc (Debian 12.2.0-14+deb12u1) 12.2.0' });
  const x86 = await moduleCompiler(getArch('x86_64'), AMD64, has);
  t.match(x86, { cc: 'gcc-12', same: true });
  t.match(x86.note, /the kernel's own compiler/);
  const ppc = await moduleCompiler(getArch('ppc64le'), PPC64EL, has);
  t.match(ppc, { cc: 'powerpc64le-linux-gnu-gcc-12', same: true }, 'the cross compiler of the same version counts as the same');
  const gcc14 = await moduleCompiler(getArch('x86_64'), 'CONFIG_CC_VERSION_TEXT="gcc-14 (Debian 14.2.0-19) 14.2.0"\n', has);
  t.match(gcc14, { cc: 'gcc', same: false });
  t.match(gcc14.note, /built with gcc-14 \(Debian 14\.2\.0-19\) 14\.2\.0; this host has gcc \(Debian 12\.2\.0-14\+deb12u1\) 12\.2\.0/);
});

t.test('a kernel by path: every bad path is a usage error naming it; a good one gives its release and line', async (t) => {
  const dir = tempDir(t);
  const image = join(dir, 'vmlinuz');
  const modules = join(dir, 'lib/modules/6.1.0-57-amd64');
  const build = join(dir, 'headers');
  const usage = (o: { image: string; modules: string; build: string }, re: RegExp) =>
    t.throws(() => binaryKernelFromPaths(o), { kind: 'usage', message: re }, re.source);
  usage({ image, modules, build }, /--kernel-image .*vmlinuz does not exist/);
  writeFileSync(image, 'kernel');
  usage({ image: dir, modules, build }, /--kernel-image .* is not a file/);
  usage({ image, modules, build }, /--kernel-modules .* does not exist/);
  mkdirSync(modules, { recursive: true });
  mkdirSync(build);
  usage({ image, modules, build }, /has no modules\.dep/);
  writeFileSync(join(modules, 'modules.dep'), '');
  usage({ image, modules, build }, /--kernel-build .* has no \.config/);
  writeFileSync(join(build, '.config'), AMD64);
  writeFileSync(join(build, 'Makefile'), 'include /usr/src/x/Makefile\n');
  const k = binaryKernelFromPaths({ image, modules, build });
  t.match(k, { release: '6.1.0-57-amd64', line: '6.1', label: 'kernel-image 6.1.0-57-amd64', buildDir: build });
  const again = binaryKernelFromPaths({ image, modules, build });
  t.equal(again.key, k.key, 'the same files give the same key');
});

t.test("a binary kernel's expectations: our unsigned modules' taint explained by its config, the missing sample named", async (t) => {
  const dir = tempDir(t);
  const base = { promised: {}, required: [] };
  const k = { release: '6.1.0-57-amd64', label: 'debian-image 6.1.0-57 amd64', buildDir: dir, config: AMD64 } as Parameters<typeof binaryExpectations>[1];
  const e = binaryExpectations(base, k);
  t.equal(e.explainedTaint?.mask, 1 << 13, "E: TAINT_UNSIGNED_MODULE");
  t.match(e.explainedTaint?.why, /CONFIG_MODULE_SIG=y/);
  t.match(e.noSampleModule, /comes without livepatch-sample\.ko .*CONFIG_SAMPLE_LIVEPATCH not set/);
  const unsigned = binaryExpectations(base, { ...k, config: 'CONFIG_LIVEPATCH=y\n' });
  t.equal(unsigned.explainedTaint, undefined, 'a kernel that does not check signatures explains no more taint');
  mkdirSync(join(dir, 'samples/livepatch'), { recursive: true });
  writeFileSync(join(dir, 'samples/livepatch/livepatch-sample.ko'), '');
  t.equal(binaryExpectations(base, k).noSampleModule, undefined);
});
