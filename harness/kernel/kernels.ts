// Kernels as a dimension of the matrix: `--kernel debian:5.10,debian:6.1,...`
// names Debian's linux-source-X packages. Each record says where the
// package comes from (one pinned suite: a combined list would pick another
// suite's build of the same version line), which series of ours restores the
// signal file on it, and what of our config fragments that kernel does not
// have. What upstream's code of each generation does (the expectations of
// the scenarios) is in GENERATIONS below, written down with its source.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { aptState, aptUpdate, compareDebVersions, downloadDebs } from '../image/apt.js';
import { usageError } from '../core/errors.js';
import { run } from '../proc/exec.js';
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
 * What upstream's livepatch code of one kernel generation does, written
 * down once from its source (never read from the tree under test, which a
 * series may have changed): the scenarios' expectations about force and the
 * kernel's own signal come from here. `npm run test:kernels` cross-checks
 * each record against the pristine source, before any series is applied.
 */
export interface Generation {
  /** major.minor */
  line: string;
  /**
   * Which patches a forced transition pins (sets `forced`, so the module
   * reference is kept): 'removed' = the patch itself when unpatching, the
   * replaced ones when a replace patch is forced in; 'all' = every patch
   * registered at the time, the one being enabled too.
   */
  forcePins: 'removed' | 'all';
  /**
   * SIGNALS_TIMEOUT: the kernel sends its own fake signal in the try that
   * follows this many failed tries (klp_signals_cnt == SIGNALS_TIMEOUT),
   * and prints "signaling remaining tasks" only then.
   */
  signalsTimeout: number;
  /** Per-patch files upstream has (besides enabled and transition); `signal` went in 5.1. */
  patchFiles: readonly PatchFile[];
  /** Where the above can be read upstream. */
  source: string;
}

/** Per-patch sysfs files a lever or a reading may need. */
export type PatchFile = 'signal' | 'force' | 'replace';

export const GENERATIONS: readonly Generation[] = [
  {
    line: '5.10',
    forcePins: 'all',
    signalsTimeout: 15,
    patchFiles: ['force'],
    source: 'v5.10 kernel/livepatch/transition.c: klp_force_transition() sets forced on klp_for_each_patch(); SIGNALS_TIMEOUT 15 (upstream narrowed the rule between 5.10 and 6.1)',
  },
  {
    line: '6.1',
    forcePins: 'removed',
    signalsTimeout: 15,
    patchFiles: ['force'],
    source: 'v6.1 kernel/livepatch/transition.c: klp_force_transition() sets forced only if klp_target_state == KLP_UNPATCHED, else on the replaced patches of a replace patch; SIGNALS_TIMEOUT 15',
  },
  {
    line: '6.12',
    forcePins: 'removed',
    signalsTimeout: 15,
    patchFiles: ['force', 'replace'],
    source: 'v6.12 kernel/livepatch/transition.c: as 6.1 with KLP_TRANSITION_UNPATCHED; core.c adds the read-only replace attribute',
  },
  {
    line: '7.2',
    forcePins: 'removed',
    signalsTimeout: 15,
    patchFiles: ['force', 'replace'],
    source: 'v7.2 kernel/livepatch/transition.c: as 6.12; core.c adds stack_order',
  },
];

/** The record for a kernel version ("6.1.192" -> 6.1), or undefined for a generation we have none for. */
export function generationOf(version: string): Generation | undefined {
  const line = /^(\d+\.\d+)/.exec(version)?.[1];
  return GENERATIONS.find((g) => g.line === line);
}

/**
 * Compares a record with a pristine (unpatched) transition.c: which rule
 * klp_force_transition() has and the value of SIGNALS_TIMEOUT. Returns the
 * disagreements, none when the record holds. Only for checking the records
 * (`npm run test:kernels`); never an expectation of a run.
 */
export function crossCheck(g: Generation, pristineTransitionC: string): string[] {
  const out: string[] = [];
  const fn = pristineTransitionC.slice(pristineTransitionC.indexOf('void klp_force_transition(void)'));
  const body = fn.slice(0, fn.indexOf('\n}\n'));
  // KLP_UNPATCHED was renamed KLP_TRANSITION_UNPATCHED in 6.12.
  const pins = /klp_target_state\s*==\s*KLP_(TRANSITION_)?UNPATCHED/.test(body) ? 'removed' : /klp_for_each_patch/.test(body) ? 'all' : 'unknown';
  if (pins !== g.forcePins) out.push(`klp_force_transition() pins '${pins}', the record says '${g.forcePins}'`);
  const timeout = Number(/#define\s+SIGNALS_TIMEOUT\s+(\d+)/.exec(pristineTransitionC)?.[1] ?? NaN);
  if (timeout !== g.signalsTimeout) out.push(`SIGNALS_TIMEOUT is ${timeout}, the record says ${g.signalsTimeout}`);
  return out;
}
