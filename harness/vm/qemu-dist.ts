// Which QEMU runs the guests: the host's (`--qemu host`), or one of Debian's
// newer QEMUs fetched with a private apt state into the cache and run from
// there: `--qemu trixie` (Debian 13's, the 10.0 stable series with its point
// releases) or `--qemu backports` (bookworm-backports' 10.0.2). By default
// (`auto`) each arch gets the host's QEMU if its guests can be restored from
// snapshots there, else trixie's (else backports', else the host's, booting):
// bookworm's 7.2 cannot restore a pseries guest, backports' 10.0.2 saves no
// interrupt presenter state for a POWER8 guest (see arch.ts), and a ppc64le
// boot costs several times the emulated CPU of a restore (bench/RESULTS.md).
// The host's apt sources and packages are left alone. The backported
// binaries need nothing newer than bookworm's libraries; trixie's need its C
// library and more, so they come with the libraries they depend on, unpacked
// beside them, and patchelf points each binary at that loader and library
// directory (the binary keeps its name: `pgrep qemu` finds it). Their
// firmware is found with -L (the host's own data directory, which has the
// network boot ROMs from ipxe-qemu, comes after it).
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ARCHES, type ArchRecord } from '../core/arch.js';
import { readValidMarker, writeMarker } from '../core/cache.js';
import { infraError, usageError } from '../core/errors.js';
import { hostMs } from '../core/timeouts.js';
import { run } from '../proc/exec.js';
import { entryLock, useEntry } from '../core/lock.js';
import type { Logger } from '../core/log.js';
import { onPath } from '../core/preflight.js';
import { aptState, aptUpdate, dependencyClosure, downloadDebs } from '../image/apt.js';
import { versionAtLeast } from './snapshot.js';

export type QemuChoice = 'auto' | 'host' | 'trixie' | 'backports';
export const QEMU_CHOICES: readonly QemuChoice[] = ['auto', 'host', 'trixie', 'backports'];
/** What a run uses unless --qemu says otherwise. */
export const DEFAULT_QEMU: QemuChoice = 'auto';

/** A QEMU installation: the binary per arch and the arguments that find its firmware. */
export interface QemuInstall {
  choice: QemuChoice;
  /** The binary for an arch (a name on PATH for the host's, a path for a fetched one). */
  binaryFor(arch: ArchRecord): string;
  /** Arguments every QEMU command line for an arch starts with (-L for a fetched one's firmware). */
  dataArgsFor(arch: ArchRecord): string[];
  /** Added to QEMU's environment for an arch. */
  envFor(arch: ArchRecord): Record<string, string> | undefined;
  /** What the run's log and report say about it. */
  describe: string;
}

export const HOST_QEMU: QemuInstall = { choice: 'host', binaryFor: (a) => a.qemu.binary, dataArgsFor: () => [], envFor: () => undefined, describe: "the host's QEMU" };

/** A QEMU fetched from a Debian suite (amd64 hosts). */
interface FetchedQemu {
  choice: 'trixie' | 'backports';
  /** The cache entry: qemu/<name>. */
  name: string;
  lines: string[];
  packages: string[];
  /** Whether it comes with its own C library and the rest of its libraries (a suite newer than the host's). */
  ownLibraries: boolean;
  describe: string;
}

const QEMU_PACKAGES = ['qemu-system-x86', 'qemu-system-ppc', 'qemu-system-data', 'qemu-system-common'];

const FETCHED: Record<'trixie' | 'backports', FetchedQemu> = {
  trixie: { choice: 'trixie', name: 'trixie', lines: ['deb http://deb.debian.org/debian trixie main'], packages: QEMU_PACKAGES, ownLibraries: true, describe: "Debian 13's QEMU" },
  backports: { choice: 'backports', name: 'backports', lines: ['deb http://deb.debian.org/debian bookworm-backports main'], packages: QEMU_PACKAGES, ownLibraries: false, describe: "Debian's backported QEMU" },
};

/** Where a fetched QEMU's loader and libraries are, relative to its root (Debian 13 is merged-/usr). */
const OWN_LIBDIR = 'usr/lib/x86_64-linux-gnu';
const OWN_LOADER = `${OWN_LIBDIR}/ld-linux-x86-64.so.2`;

export function parseQemuChoice(value: string): QemuChoice {
  if ((QEMU_CHOICES as readonly string[]).includes(value)) return value as QemuChoice;
  throw usageError(`--qemu '${value}' is not a QEMU this harness knows`, { hint: `use one of: ${QEMU_CHOICES.join(', ')}` });
}

/** The installation for a choice; a fetched one is fetched, checked against the signed index and unpacked once. */
export async function qemuInstall(choice: QemuChoice, cacheDir: string, logger: Logger, arches: readonly ArchRecord[] = Object.values(ARCHES)): Promise<QemuInstall> {
  if (choice === 'host') return HOST_QEMU;
  if (choice === 'auto') return autoInstall(cacheDir, logger, arches);
  return fetchedInstall(FETCHED[choice], cacheDir, logger);
}

async function fetchedInstall(src: FetchedQemu, cacheDir: string, logger: Logger): Promise<QemuInstall> {
  // The index is refreshed once per entry made; a made entry is used as it is.
  const debsDir = join(cacheDir, 'qemu', src.name);
  const check = async () => ((await readValidMarker(debsDir)) ? debsDir : undefined);
  const root = await useEntry({
    lock: entryLock(cacheDir, `qemu/${src.name}`),
    what: `${src.describe} (${src.name})`,
    logger,
    check,
    make: async () => {
      if (src.ownLibraries && !onPath('patchelf')) {
        throw infraError(`${src.describe} needs patchelf on the host (to run it with its own libraries)`, { hint: 'run scripts/setup-host.sh as root, or: apt-get install patchelf' });
      }
      rmSync(debsDir, { recursive: true, force: true });
      mkdirSync(debsDir, { recursive: true });
      const state = aptState(cacheDir, 'amd64', { name: src.name === 'backports' ? 'bookworm-backports' : src.name, lines: src.lines });
      await aptUpdate(state, logger);
      const packages = src.ownLibraries ? await dependencyClosure(state, src.packages) : src.packages;
      const debs = await downloadDebs(state, packages, logger);
      const into = join(debsDir, 'root');
      for (const deb of debs) await run('dpkg-deb', ['-x', deb, into]);
      if (src.ownLibraries) await useOwnLibraries(into);
      const version = (await run(join(into, 'usr/bin/qemu-system-x86_64'), ['--version'])).stdout.split('\n')[0] ?? '';
      await writeMarker(debsDir, `qemu-${src.name}`, { debs: debs.map((d) => d.split('/').pop()!).join(' '), version }, []);
      logger.info(`qemu: ${version} unpacked in ${debsDir}${src.ownLibraries ? ` with the ${debs.length - src.packages.length} packages it depends on` : ''}`);
      return debsDir;
    },
  });
  const bin = join(root, 'root/usr/bin');
  const data = join(root, 'root/usr/share/qemu');
  if (!existsSync(data)) throw usageError(`the ${src.name} QEMU in ${root} has no firmware directory`, { hint: `remove ${root} and run again` });
  // Its own modules only: the host's (another build) are refused with a line on stderr each, ahead of any real error.
  const env = { QEMU_MODULE_DIR: join(root, 'root/usr/lib/x86_64-linux-gnu/qemu') };
  return { choice: src.choice, binaryFor: (a) => join(bin, a.qemu.binary), dataArgsFor: () => ['-L', data], envFor: () => env, describe: `${src.describe} (${root})` };
}

/**
 * Points every QEMU binary in an unpacked root at the root's own loader and
 * libraries (an RPATH, which also serves the libraries they load in turn).
 */
export async function useOwnLibraries(root: string): Promise<void> {
  const loader = join(root, OWN_LOADER);
  if (!existsSync(loader)) throw infraError(`the unpacked QEMU has no loader at ${loader}`, { hint: 'the suite\'s libc6 package changed its layout; use --qemu backports or host' });
  const bin = join(root, 'usr/bin');
  const binaries = readdirSync(bin).filter((f) => f.startsWith('qemu-') && !lstatSync(join(bin, f)).isSymbolicLink());
  for (const f of binaries) {
    await run('patchelf', ['--set-interpreter', loader, '--force-rpath', '--set-rpath', join(root, OWN_LIBDIR), join(bin, f)]);
  }
}

/** The first line of `qemu --version` of a binary, or undefined when it does not run. */
async function versionLine(binary: string): Promise<string | undefined> {
  try {
    return (await run(binary, ['--version'], { timeoutMs: hostMs('toolVersion') })).stdout.split('\n')[0];
  } catch {
    return undefined;
  }
}

/** A bookworm amd64 host: the one bookworm-backports' amd64 QEMU runs on. */
export function bookwormAmd64(): boolean {
  try {
    return process.arch === 'x64' && /^12\./.test(readFileSync('/etc/debian_version', 'utf8'));
  } catch {
    return false;
  }
}

/**
 * --qemu auto: the host's QEMU for every arch whose snapshots it can restore;
 * for the others (on a bookworm amd64 host) Debian 13's, or if that cannot
 * be had the backported one. If neither can, the host's runs them too and
 * their guests boot, as the log says.
 */
async function autoInstall(cacheDir: string, logger: Logger, arches: readonly ArchRecord[]): Promise<QemuInstall> {
  const behind: { arch: ArchRecord; have: string }[] = [];
  for (const arch of arches) {
    const from = arch.qemu.snapshotsFrom;
    if (!from) continue;
    const have = await versionLine(arch.qemu.binary);
    if (have && !versionAtLeast(have, from.version)) behind.push({ arch, have });
  }
  if (!behind.length) return { ...HOST_QEMU, choice: 'auto' };
  const names = behind.map((b) => `${b.arch.name} (${b.have})`).join(', ');
  if (!bookwormAmd64()) {
    logger.info(`qemu: the host's QEMU cannot restore snapshots for ${names}; those guests boot (a fetched QEMU needs a Debian bookworm amd64 host)`);
    return { ...HOST_QEMU, choice: 'auto' };
  }
  let fetched: QemuInstall | undefined;
  const why: string[] = [];
  for (const src of [FETCHED.trixie, FETCHED.backports]) {
    try {
      fetched = await fetchedInstall(src, cacheDir, logger);
      break;
    } catch (e) {
      const line = (e as Error).message.split('\n')[0]!;
      why.push(`${src.name}: ${line}`);
      logger.info(`qemu: ${src.describe} could not be had (${line})`);
    }
  }
  if (!fetched) {
    logger.info(`qemu: the host's QEMU cannot restore snapshots for ${names}, and no newer QEMU could be had (${why.join('; ')}); those guests boot on the host's`);
    return { ...HOST_QEMU, choice: 'auto' };
  }
  const bp = fetched;
  const own = new Set(behind.map((b) => b.arch.name));
  const pick = (a: ArchRecord) => (own.has(a.name) ? bp : HOST_QEMU);
  return {
    choice: 'auto',
    binaryFor: (a) => pick(a).binaryFor(a),
    dataArgsFor: (a) => pick(a).dataArgsFor(a),
    envFor: (a) => pick(a).envFor(a),
    describe: `${[...own].join(', ')}: ${bp.describe}, whose snapshots restore (the host's is ${behind[0]!.have}); the rest: the host's QEMU`,
  };
}
