// Which QEMU runs the guests: the host's (`--qemu host`), or Debian's
// backported one (`--qemu backports`: bookworm-backports' 10.0 on a bookworm
// host) fetched with a private apt state into the cache and run from there.
// The host's apt sources and packages are left alone: the backported
// binaries need nothing newer than bookworm's libraries, and their firmware
// is found with -L (the host's own data directory, which has the network
// boot ROMs from ipxe-qemu, comes after it).
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { ArchRecord } from '../core/arch.js';
import { readValidMarker, writeMarker } from '../core/cache.js';
import { usageError } from '../core/errors.js';
import { run } from '../proc/exec.js';
import { entryLock, useEntry } from '../core/lock.js';
import type { Logger } from '../core/log.js';
import { aptState, aptUpdate, downloadDebs } from '../image/apt.js';

export type QemuChoice = 'host' | 'backports';
export const QEMU_CHOICES: readonly QemuChoice[] = ['host', 'backports'];
/** What a run uses unless --qemu says otherwise. */
export const DEFAULT_QEMU: QemuChoice = 'host';

/** A QEMU installation: the binary per arch and the arguments that find its firmware. */
export interface QemuInstall {
  choice: QemuChoice;
  /** The binary for an arch (a name on PATH for the host's, a path for a fetched one). */
  binaryFor(arch: ArchRecord): string;
  /** Arguments every QEMU command line of this installation starts with (-L for a fetched one's firmware). */
  dataArgs: string[];
  /** Added to QEMU's environment. */
  env?: Record<string, string>;
  /** What the run's log and report say about it. */
  describe: string;
}

export const HOST_QEMU: QemuInstall = { choice: 'host', binaryFor: (a) => a.qemu.binary, dataArgs: [], describe: "the host's QEMU" };

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
export async function qemuInstall(choice: QemuChoice, cacheDir: string, logger: Logger): Promise<QemuInstall> {
  if (choice === 'host') return HOST_QEMU;
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
  return { choice, binaryFor: (a) => join(bin, a.qemu.binary), dataArgs: ['-L', data], env, describe: `Debian's backported QEMU (${root})` };
}
