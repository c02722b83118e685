// Options that name a kernel the harness does not build: Debian's prebuilt
// packages (--kernel debian-image:X.Y) and any binary kernel by path.
import type { ArchRecord } from '../core/arch.js';
import { usageError } from '../core/errors.js';
import { binaryKernelFromPaths, lineOf } from '../kernel/binary-kernel.js';
import { debianImage, type DebianImageRecord } from '../kernel/debian-images.js';
import type { BinarySource } from '../pipeline/prepare-binary.js';
import { basename } from 'node:path';
import { parseRemedies, type UserPatchInput } from '../scenarios/user-patch.js';
import { pathOption } from './options.js';

export const BINARY_INPUTS = {
  'kernel-image': { type: 'string', arg: 'FILE', help: 'a binary kernel to boot instead of building one (bzImage/vmlinuz,\nppc64le: vmlinux); needs --kernel-modules and --kernel-build, one --arch' },
  'kernel-modules': { type: 'string', arg: 'DIR', help: "that kernel's /lib/modules/<release> (its boot drivers go into the image)" },
  'kernel-build': { type: 'string', arg: 'DIR', help: "that kernel's kbuild tree (headers dir or make O= output): the guest\nmodules are built against it" },
} as const;

/** A user's livepatch under a user's workload (run --scenario user-patch, repro). */
export const USER_PATCH_INPUTS = {
  livepatch: { type: 'string', arg: 'FILE.ko|DIR', help: "your own livepatch module, built for the kernel under test, or its\nsource directory (built against it); runs the scenario user-patch" },
  workload: { type: 'string', arg: 'CMD', help: 'a shell command started in the guest before the patch loads\n(e.g. a program that sleeps in the function the patch replaces)' },
  remedy: { type: 'string', arg: 'LIST', help: 'levers tried in order while the transition is stuck, each only if\nthe one before did not end it (default: signal,force)' },
} as const;

/** The user-patch input the options give, or undefined; --workload without --livepatch (or the reverse) is bad usage. */
export function userPatchInput(values: { livepatch?: string; workload?: string; remedy?: string }): UserPatchInput | undefined {
  if (!values.livepatch && !values.workload && values.remedy === undefined) return undefined;
  if (!values.livepatch || !values.workload) {
    throw usageError(`--${values.livepatch ? 'livepatch' : values.workload ? 'workload' : 'remedy'} without --${values.livepatch ? 'workload' : 'livepatch'}`, { hint: 'a user patch needs both: --livepatch FILE.ko|DIR --workload CMD (and optionally --remedy signal,force)' });
  }
  return { livepatch: pathOption(values.livepatch)!, workload: values.workload, remedies: parseRemedies(values.remedy) };
}

type BinaryValues = { 'kernel-image'?: string; 'kernel-modules'?: string; 'kernel-build'?: string; 'kernel-src'?: string; patches?: string; kconfigs?: string; 'kconfig-extra'?: string[] };

/** The source of a Debian image record for the pipeline. */
export function debianImageSource(r: DebianImageRecord): BinarySource & { line: string } {
  return { name: r.name, line: r.line, forArch: (arch, cacheDir, logger, refresh) => debianImage(r, arch, cacheDir, logger, refresh) };
}

/** --kernel-image/--kernel-modules/--kernel-build as a source, or undefined when none is given; half of them, or with a source kernel's options, is bad usage. */
export function pathKernelSource(values: BinaryValues, arches: readonly ArchRecord[]): (BinarySource & { line: string }) | undefined {
  const given = (['kernel-image', 'kernel-modules', 'kernel-build'] as const).filter((k) => values[k]);
  if (!given.length) return undefined;
  const missing = (['kernel-image', 'kernel-modules', 'kernel-build'] as const).filter((k) => !values[k]);
  if (missing.length) throw usageError(`--${given.join(', --')} without --${missing.join(', --')}`, { hint: 'a binary kernel needs all three: --kernel-image FILE --kernel-modules DIR --kernel-build DIR' });
  if (arches.length !== 1) throw usageError(`--kernel-image with --arch ${arches.map((a) => a.name).join(',')}`, { hint: 'a kernel image is for one arch: give exactly one --arch' });
  noSourceOptions(values, '--kernel-image');
  const paths = { image: pathOption(values['kernel-image'])!, modules: pathOption(values['kernel-modules'])!, build: pathOption(values['kernel-build'])! };
  const k = binaryKernelFromPaths(paths);
  return { name: `kernel-image ${basename(paths.modules)}`, line: lineOf(k.release), forArch: async () => binaryKernelFromPaths(paths) };
}

/** A binary kernel is not built here: options about its source, series or config do not apply. */
export function noSourceOptions(values: BinaryValues, what: string): void {
  for (const o of ['kernel-src', 'patches', 'kconfigs', 'kconfig-extra'] as const) {
    if (values[o] !== undefined) throw usageError(`--${o} with ${what}`, { hint: `${what} boots a kernel that is not built here: it takes no source, series or config fragments` });
  }
}
