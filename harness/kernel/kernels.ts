// Kernels as a dimension of the matrix: `--kernel debian:5.10,debian:6.1,...`
// names Debian's linux-source-X packages. Each record says where the
// package comes from (one pinned suite: a combined list would pick another
// suite's build of the same version line), which series of ours restores the
// signal file on it, and what of our config fragments that kernel does not
// have. Everything else about a kernel is found in its tree or its guest.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { aptState, aptUpdate, compareDebVersions, downloadDebs } from '../image/apt.js';
import { usageError } from '../core/errors.js';
import { run } from '../core/exec.js';
import { entryLock, withExclusive } from '../core/lock.js';
import type { Logger } from '../core/log.js';

const KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';
const DEBIAN = 'http://deb.debian.org/debian';
const SECURITY = 'http://deb.debian.org/debian-security';

export interface KernelRecord {
  /** As given to --kernel, e.g. debian:6.12. */
  name: string;
  /** major.minor: picks the series and names the kernel in reports. */
  line: string;
  package: string;
  /** The one suite the package is taken from. */
  suite: { uri: string; suite: string };
  /** The source tarball when the host already has the package installed (the default kernel). */
  hostTarball?: string;
  /** Our series for it, relative to the project root. */
  series: string;
  /** Options of our fragments this kernel does not have, and why; left out of its config. */
  absentOptions: { option: string; why: string }[];
}

const NO_TEST_LIVEPATCH = {
  option: 'CONFIG_TEST_LIVEPATCH',
  why: 'gone since 6.12: the selftest modules moved to tools/testing/selftests/livepatch/test_modules/ (built out of tree)',
};

export const KERNELS: readonly KernelRecord[] = [
  { name: 'debian:5.10', line: '5.10', package: 'linux-source-5.10', suite: { uri: SECURITY, suite: 'bullseye-security' }, series: 'patches/5.10', absentOptions: [] },
  {
    name: 'debian:6.1',
    line: '6.1',
    package: 'linux-source-6.1',
    suite: { uri: SECURITY, suite: 'bookworm-security' },
    hostTarball: '/usr/src/linux-source-6.1.tar.xz',
    series: 'patches',
    absentOptions: [],
  },
  { name: 'debian:6.12', line: '6.12', package: 'linux-source-6.12', suite: { uri: DEBIAN, suite: 'trixie' }, series: 'patches/6.12', absentOptions: [NO_TEST_LIVEPATCH] },
  { name: 'debian:7.2', line: '7.2', package: 'linux-source-7.2', suite: { uri: DEBIAN, suite: 'sid' }, series: 'patches/7.2', absentOptions: [NO_TEST_LIVEPATCH] },
];

/** Parses `debian:5.10,debian:6.1`; an unknown name is bad input listing the known ones. */
export function parseKernelList(value: string): KernelRecord[] {
  return value
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean)
    .map((v) => {
      const k = KERNELS.find((x) => x.name === v);
      if (!k) throw usageError(`unknown kernel '${v}'`, { hint: `use one or more of: ${KERNELS.map((x) => x.name).join(', ')} (or --kernel-src PATH for your own tree)` });
      return k;
    });
}

/**
 * The source tarball of a kernel: the host's when its package is installed,
 * else the package fetched with a private apt state pinned to the record's
 * suite (the .deb checked against the signed index's SHA256), unpacked once
 * and kept in <cache>/kernels/ by package version.
 */
export async function kernelTarball(k: KernelRecord, cacheDir: string, logger: Logger, rebuild = false): Promise<{ tarball: string; version: string }> {
  if (k.hostTarball && existsSync(k.hostTarball)) return { tarball: k.hostTarball, version: 'host package' };
  const dir = join(cacheDir, 'kernels');
  // Fetched before: the newest version kept (a new one comes with --rebuild source or after a prune).
  const kept = existsSync(dir) ? readdirSync(dir).filter((f) => f.startsWith(`${k.package}_`) && f.endsWith('.tar.xz')) : [];
  const newest = kept.map((f) => f.slice(k.package.length + 1, -'.tar.xz'.length)).sort(compareDebVersions).at(-1);
  if (newest && !rebuild) return { tarball: join(dir, `${k.package}_${newest}.tar.xz`), version: newest };
  const lines = [`deb [signed-by=${KEYRING}] ${k.suite.uri} ${k.suite.suite} main`];
  const state = aptState(cacheDir, 'amd64', { name: k.suite.suite, lines });
  const lock = entryLock(cacheDir, `apt/amd64-${k.suite.suite}`);
  // The private apt state is shared by every run fetching from this suite: one at a time.
  const deb = await withExclusive(lock, `apt state for ${k.suite.suite}`, logger, async () => {
    logger.info(`kernel ${k.name}: ${k.package} from ${k.suite.uri} ${k.suite.suite}`);
    await aptUpdate(state, logger);
    return (await downloadDebs(state, [k.package], logger))[0]!;
  });
  const version = /_([^_]+)_all\.deb$/.exec(deb)?.[1]?.replace(/%3a/g, ':') ?? 'unknown';
  const tarball = join(dir, `${k.package}_${version}.tar.xz`);
  if (existsSync(tarball) && statSync(tarball).size > 0) return { tarball, version };
  mkdirSync(dir, { recursive: true });
  const tmp = mkdtempSync(join(dir, '.partial-'));
  try {
    // Only the tarball: the package holds nothing else we need.
    await run('sh', ['-c', `dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" ./usr/src/${k.package}.tar.xz`, 'sh', deb, tmp]);
    renameSync(join(tmp, 'usr/src', `${k.package}.tar.xz`), tarball);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  logger.info(`kernel ${k.name}: ${k.package} ${version} unpacked to ${tarball}`);
  return { tarball, version };
}

/** Drops the lines of options a kernel does not have from a fragment's text. */
export function withoutOptions(fragmentText: string, options: readonly string[]): string {
  if (!options.length) return fragmentText;
  const re = new RegExp(`^(# )?(${options.join('|')})(=| is not set)`);
  return fragmentText
    .split('\n')
    .filter((l) => !re.test(l))
    .join('\n');
}

/**
 * Which patches a forced transition pins (keeps their module), read from the
 * tree's own klp_force_transition(): since 5.1x only the patches being
 * removed; before (5.10), every patch registered then, the one being
 * enabled too. Read from the source, not guessed from a version.
 */
export function forcePinsOf(tree: string): 'removed' | 'all' {
  try {
    const text = readFileSync(join(tree, 'kernel/livepatch/transition.c'), 'utf8');
    const fn = text.slice(text.indexOf('void klp_force_transition(void)'));
    const body = fn.slice(0, fn.indexOf('\n}\n'));
    // KLP_UNPATCHED was renamed KLP_TRANSITION_UNPATCHED in 6.12.
    return /klp_target_state\s*==\s*KLP_(TRANSITION_)?UNPATCHED/.test(body) ? 'removed' : 'all';
  } catch {
    return 'removed';
  }
}
