// Which QEMU runs the guests: the host's (`--qemu host`), or Debian's
// backported one (`--qemu backports`: bookworm-backports' 10.0 on a bookworm
// host) fetched with a private apt state into the cache and run from there.
// By default (`auto`) each arch gets the host's QEMU if its guests can be
// restored from snapshots there, else the backported one: bookworm's 7.2
// cannot restore a pseries guest, and a ppc64le boot costs three times the
// emulated CPU of a restore (bench/RESULTS.md).
// The host's apt sources and packages are left alone: the backported
// binaries need nothing newer than bookworm's libraries, and their firmware
// is found with -L (the host's own data directory, which has the network
// boot ROMs from ipxe-qemu, comes after it).
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ARCHES, type ArchRecord } from '../core/arch.js';
import { readValidMarker, writeMarker } from '../core/cache.js';
import { usageError } from '../core/errors.js';
import { hostMs } from '../core/timeouts.js';
import { run } from '../proc/exec.js';
import { entryLock, useEntry } from '../core/lock.js';
import type { Logger } from '../core/log.js';
import { aptState, aptUpdate, downloadDebs } from '../image/apt.js';
import { versionAtLeast } from './snapshot.js';

export type QemuChoice = 'auto' | 'host' | 'backports';
export const QEMU_CHOICES: readonly QemuChoice[] = ['auto', 'host', 'backports'];
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

/** The Debian suite and packages of the backported QEMU (amd64 hosts). */
const BACKPORTS = {
  lines: ['deb http://deb.debian.org/debian bookworm-backports main'],
  packages: ['qemu-system-x86', 'qemu-system-ppc', 'qemu-system-data', 'qemu-system-common'],
};

export function parseQemuChoice(value: string): QemuChoice {
  if ((QEMU_CHOICES as readonly string[]).includes(value)) return value as QemuChoice;
  throw usageError(`--qemu '${value}' is not a QEMU this harness knows`, { hint: `use one of: ${QEMU_CHOICES.join(', ')}` });
}

/** The installation for a choice; a backported one is fetched, checked against the signed index and unpacked once. */
export async function qemuInstall(choice: QemuChoice, cacheDir: string, logger: Logger, arches: readonly ArchRecord[] = Object.values(ARCHES)): Promise<QemuInstall> {
  if (choice === 'host') return HOST_QEMU;
  if (choice === 'auto') return autoInstall(cacheDir, logger, arches);
  const state = aptState(cacheDir, 'amd64', { name: 'bookworm-backports', lines: BACKPORTS.lines });
  // The index is refreshed once per entry made; a made entry is used as it is.
  const debsDir = join(cacheDir, 'qemu', 'backports');
  const check = async () => ((await readValidMarker(debsDir)) ? debsDir : undefined);
  const root = await useEntry({
    lock: entryLock(cacheDir, 'qemu/backports'),
    what: 'the backported QEMU',
    logger,
    check,
    make: async () => {
      rmSync(debsDir, { recursive: true, force: true });
      mkdirSync(debsDir, { recursive: true });
      await aptUpdate(state, logger);
      const debs = await downloadDebs(state, BACKPORTS.packages, logger);
      for (const deb of debs) await run('dpkg-deb', ['-x', deb, join(debsDir, 'root')]);
      const version = (await run(join(debsDir, 'root/usr/bin/qemu-system-x86_64'), ['--version'])).stdout.split('\n')[0] ?? '';
      await writeMarker(debsDir, 'qemu-backports', { debs: debs.map((d) => d.split('/').pop()!).join(' '), version }, []);
      logger.info(`qemu: ${version} unpacked in ${debsDir}`);
      return debsDir;
    },
  });
  const bin = join(root, 'root/usr/bin');
  const data = join(root, 'root/usr/share/qemu');
  if (!existsSync(data)) throw usageError(`the backported QEMU in ${root} has no firmware directory`, { hint: `remove ${root} and run again` });
  // Its own modules only: the host's (another build) are refused with a line on stderr each, ahead of any real error.
  const env = { QEMU_MODULE_DIR: join(root, 'root/usr/lib/x86_64-linux-gnu/qemu') };
  return { choice, binaryFor: (a) => join(bin, a.qemu.binary), dataArgsFor: () => ['-L', data], envFor: () => env, describe: `Debian's backported QEMU (${root})` };
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
 * the backported one for the others (on a bookworm amd64 host). If that
 * cannot be had, the host's runs them too and their guests boot, as the log
 * says.
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
    logger.info(`qemu: the host's QEMU cannot restore snapshots for ${names}; those guests boot (--qemu backports needs a Debian bookworm amd64 host)`);
    return { ...HOST_QEMU, choice: 'auto' };
  }
  let bp: QemuInstall;
  try {
    bp = await qemuInstall('backports', cacheDir, logger);
  } catch (e) {
    logger.info(`qemu: the host's QEMU cannot restore snapshots for ${names}, and the backported QEMU could not be had (${(e as Error).message.split('\n')[0]}); those guests boot on the host's`);
    return { ...HOST_QEMU, choice: 'auto' };
  }
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
