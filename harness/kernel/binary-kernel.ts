// A kernel the harness does not build: a distribution's package
// (--kernel debian-image:X.Y) or any binary kernel given by path
// (--kernel-image FILE --kernel-modules DIR --kernel-build DIR). What the
// rest of the pipeline needs of it: the image QEMU boots, its own modules
// (the few it needs to reach SSH go into the guest image), and a kbuild tree
// the guest modules are built against, with the compiler it was built with.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { ArchRecord } from '../core/arch.js';
import { hashOf } from '../core/cache.js';
import { usageError } from '../core/errors.js';
import { run } from '../proc/exec.js';
import { onPath } from '../core/preflight.js';

export interface BinaryKernel {
  /** How reports name it, e.g. "debian-image 6.1.0-57 amd64" or "kernel-image 6.1.0-57-amd64". */
  label: string;
  /** uname -r of the kernel (the name of its modules directory). */
  release: string;
  /** The package version, or the release for a kernel given by path. */
  version: string;
  /** major.minor: picks the generation record (the input's identity, not its behaviour). */
  line: string;
  /** What QEMU boots (-kernel). */
  image: string;
  /** Its /lib/modules/<release>. */
  modulesDir: string;
  /** Its kbuild tree (headers + scripts): `make -C <buildDir> M=...` builds modules for it. */
  buildDir: string;
  /** The kernel's config (the kbuild tree's .config). */
  config: string;
  /** Identity of the inputs, for cache keys. */
  key: string;
  /** Where it came from: packages and versions, or paths. */
  origin: string;
  reused: boolean;
  durationMs: number;
}

/** A config value: 'y', 'm', a string without its quotes, or undefined when not set. */
export function configValue(config: string, option: string): string | undefined {
  const m = new RegExp(`^${option}=(.*)$`, 'm').exec(config);
  return m ? m[1]!.replace(/^"(.*)"$/, '$1') : undefined;
}

/** The major.minor of a release such as 6.1.0-57-amd64 or 6.12.117+deb13-amd64. */
export function lineOf(release: string): string {
  const m = /^(\d+\.\d+)/.exec(release);
  if (!m) throw usageError(`kernel release '${release}' does not start with a version`, { hint: 'the modules directory must be /lib/modules/<release>, e.g. 6.1.0-57-amd64' });
  return m[1]!;
}

/** What the kernel's own config says about the things a run depends on. */
export function kernelFacts(config: string): { livepatch: boolean; haveLivepatch: boolean; moduleSig: boolean; lockdep: boolean; testLivepatch: boolean; cc: string } {
  return {
    livepatch: configValue(config, 'CONFIG_LIVEPATCH') === 'y',
    haveLivepatch: configValue(config, 'CONFIG_HAVE_LIVEPATCH') === 'y',
    moduleSig: configValue(config, 'CONFIG_MODULE_SIG') === 'y',
    lockdep: configValue(config, 'CONFIG_PROVE_LOCKING') === 'y',
    testLivepatch: configValue(config, 'CONFIG_TEST_LIVEPATCH') === 'm',
    cc: configValue(config, 'CONFIG_CC_VERSION_TEXT') ?? 'unknown (no CONFIG_CC_VERSION_TEXT)',
  };
}

/**
 * The C compiler for modules of this kernel: the one its config names
 * (CONFIG_CC_VERSION_TEXT "gcc-12 (Debian 12.2.0-14) 12.2.0": gcc-12 with
 * the arch's cross prefix) when the host has it, else the arch's default
 * gcc; `same` says whether its --version is the kernel's exactly.
 */
export async function moduleCompiler(arch: ArchRecord, config: string, has: (tool: string) => boolean = onPath): Promise<{ cc: string; version: string; kernelCc: string; same: boolean; note: string }> {
  const kernelCc = kernelFacts(config).cc;
  const major = /\b(\d+)\.\d+\.\d+\s*$/.exec(kernelCc)?.[1] ?? /^gcc-(\d+)/.exec(kernelCc)?.[1];
  const named = major ? `${arch.crossCompile}gcc-${major}` : undefined;
  const cc = named && has(named) ? named : `${arch.crossCompile}gcc`;
  const version = (await run(cc, ['--version']).catch(() => ({ stdout: '' }))).stdout.split('\n')[0]?.trim() ?? '';
  // The kernel records its own compiler as `gcc-12 (...)`; the cross compiler names itself `powerpc64le-linux-gnu-gcc-12 (...)`.
  const tail = (v: string) => v.replace(/^\S+/, '');
  const same = tail(version) === tail(kernelCc) && version !== '';
  const note = same
    ? `the kernel's own compiler: ${kernelCc}`
    : `the kernel was built with ${kernelCc}; this host has ${version || `no ${cc}`}, so the guest modules are built with ${cc} (kbuild only warns; a module it cannot build fails the run as a build error)`;
  return { cc, version, kernelCc, same, note };
}

/**
 * A binary kernel given by path: the image, its /lib/modules/<release>, and
 * its kbuild tree. Bad paths are usage errors saying which and what to give.
 */
export function binaryKernelFromPaths(o: { image: string; modules: string; build: string }): BinaryKernel {
  const started = Date.now();
  const must = (path: string, what: string, kind: 'file' | 'dir', hint: string) => {
    if (!existsSync(path)) throw usageError(`${what} ${path} does not exist`, { hint });
    if (kind === 'file' ? !statSync(path).isFile() : !statSync(path).isDirectory()) throw usageError(`${what} ${path} is not a ${kind === 'file' ? 'file' : 'directory'}`, { hint });
  };
  must(o.image, '--kernel-image', 'file', 'give the kernel image QEMU boots: a bzImage/vmlinuz (x86_64) or a vmlinux (ppc64le)');
  must(o.modules, '--kernel-modules', 'dir', 'give the kernel\'s /lib/modules/<release> directory (with modules.dep)');
  must(o.build, '--kernel-build', 'dir', 'give the kernel\'s kbuild tree: its headers directory (/usr/src/linux-headers-<release>) or its build output (make O=)');
  if (!existsSync(join(o.modules, 'modules.dep'))) throw usageError(`--kernel-modules ${o.modules} has no modules.dep`, { hint: 'give /lib/modules/<release> of that kernel (run depmod there if it has none)' });
  for (const f of ['.config', 'Makefile']) {
    if (!existsSync(join(o.build, f))) throw usageError(`--kernel-build ${o.build} has no ${f}`, { hint: 'give the kernel\'s headers directory or its build output directory, where `make M=...` builds modules' });
  }
  const release = basename(o.modules);
  const config = readFileSync(join(o.build, '.config'), 'utf8');
  const stamp = (p: string) => `${p}:${statSync(p).size}:${statSync(p).mtimeMs}`;
  return {
    label: `kernel-image ${release}`,
    release,
    version: release,
    line: lineOf(release),
    image: o.image,
    modulesDir: o.modules,
    buildDir: o.build,
    config,
    key: hashOf(stamp(o.image), stamp(join(o.modules, 'modules.dep')), stamp(join(o.build, '.config')), stamp(join(o.build, 'Makefile'))),
    origin: `--kernel-image ${o.image} --kernel-modules ${o.modules} --kernel-build ${o.build}`,
    reused: true,
    durationMs: Date.now() - started,
  };
}
