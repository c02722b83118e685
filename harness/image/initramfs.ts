// The guest's initramfs, one per arch: busybox and dropbear from Debian
// packages of the guest's architecture, with exactly the shared libraries
// their ELF headers ask for, plus our init, users and keys.
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { dirname, join, posix } from 'node:path';
import type { ArchRecord } from '../core/arch.js';
import { aptState, aptUpdate, dependencyClosure, downloadDebs } from './apt.js';
import { hashOf, readValidMarker, writeMarker, writeFileAtomic } from '../core/cache.js';
import { onCleanup } from '../proc/supervisor.js';
import { entryLock, useEntry, withExclusive } from '../core/lock.js';
import { writeCpio, type CpioEntry } from './cpio.js';
import { isElf, readElfDeps } from './elf.js';
import { buildError, infraError } from '../core/errors.js';
import { projectPath } from '../core/paths.js';
import { PROGRAM_CFLAGS } from '../kernel/modules.js';
import { run } from '../proc/exec.js';
import type { Keys } from './keys.js';
import type { Logger } from '../core/log.js';

/** What a guest image holds: Debian packages, the programs taken from them, extra links. */
export interface ImageContents {
  packages: string[];
  programs: string[];
  links: [string, string][];
}

/**
 * busybox and dropbear run every guest; small, for fast boots. busybox is
 * Debian's static build: under emulation the dynamic one spent about 85 ms
 * of QEMU CPU per program started (the dynamic loader and libc's
 * relocations, each time), the static one about 15 ms (x86_64, measured with
 * scripts/profile-guest.ts), and a scenario starts many.
 */
const BASE: ImageContents = { packages: ['busybox-static', 'dropbear-bin'], programs: ['/bin/busybox', '/usr/sbin/dropbear'], links: [] };

/**
 * What the kernel's livepatch selftests call besides busybox: bash, kmod,
 * procps' sysctl, diffutils and a few coreutils (6.11+ stamp dmesg with
 * `date --rfc-3339=ns`, which busybox lacks, and test-syscall.sh asks
 * libc-bin's `getconf` for the CPU count). Only guests that run them
 * carry these (they more than double the initramfs). `sleep` stays
 * busybox's: the selftests' loop_until sleeps 0.1 s between two looks, and
 * coreutils' dynamic sleep cost more QEMU CPU per call than that (the
 * selftests spent half their wall time on CPU).
 */
const KSELFTEST: ImageContents = {
  packages: [...BASE.packages, 'bash', 'coreutils', 'diffutils', 'kmod', 'procps', 'libc-bin'],
  programs: [...BASE.programs, '/bin/bash', '/sbin/modprobe', '/sbin/modinfo', '/sbin/insmod', '/sbin/rmmod', '/sbin/lsmod', '/sbin/sysctl', '/usr/bin/diff', '/usr/bin/comm', '/usr/bin/stat', '/bin/mktemp', '/bin/date', '/usr/bin/getconf'],
  // The selftests call /bin/stat, where Debian's merged /usr would have it.
  links: [['/bin/stat', '/usr/bin/stat']],
};

export type ImageVariant = 'base' | 'kselftest';
export const IMAGE_CONTENTS: Readonly<Record<ImageVariant, ImageContents>> = { base: BASE, kselftest: KSELFTEST };

export interface ImageRequest {
  arch: ArchRecord;
  cacheDir: string;
  initScript: string;
  keys: Keys;
  logger: Logger;
  rebuild?: boolean;
  variant?: ImageVariant;
}

export interface ImageResult {
  path: string;
  reused: boolean;
  durationMs: number;
  files: number;
  bytes: number;
}

/** Directories searched for shared libraries inside the unpacked packages. */
export function libraryDirs(sysroot: string): string[] {
  const dirs = ['lib', 'usr/lib', 'lib64', 'usr/lib64'];
  const multiarch: string[] = [];
  for (const d of ['lib', 'usr/lib']) {
    const abs = join(sysroot, d);
    if (!existsSync(abs)) continue;
    for (const n of readdirSync(abs)) if (/-linux-gnu/.test(n)) multiarch.push(`${d}/${n}`);
  }
  return [...multiarch, ...dirs].map((d) => `/${d}`);
}

/**
 * Collects the files a set of programs needs from a sysroot: the programs,
 * their interpreter and their DT_NEEDED libraries, recursively, with the
 * symlinks on the way. Returns guest paths; throws on a library not found.
 */
export function resolveClosure(sysroot: string, programs: string[]): { paths: string[]; symlinks: Map<string, string> } {
  const paths = new Set<string>();
  const symlinks = new Map<string, string>();
  const libDirs = libraryDirs(sysroot);
  const queue = [...programs];
  const addPath = (guestPath: string, depth = 0): string => {
    if (depth > 16) throw new Error(`symlink loop at ${guestPath}`);
    const host = join(sysroot, guestPath);
    const st = lstatSync(host);
    if (st.isSymbolicLink()) {
      const target = readlinkSync(host);
      symlinks.set(guestPath, target);
      const resolved = target.startsWith('/') ? target : posix.join(posix.dirname(guestPath), target);
      return addPath(resolved, depth + 1);
    }
    paths.add(guestPath);
    return guestPath;
  };
  const seen = new Set<string>();
  while (queue.length) {
    const p = queue.shift()!;
    if (seen.has(p)) continue;
    seen.add(p);
    if (!lexists(join(sysroot, p))) throw new Error(`${p} is not in the unpacked packages`);
    const real = addPath(p);
    const buf = readFileSync(join(sysroot, real));
    if (!isElf(buf)) continue;
    const deps = readElfDeps(buf);
    if (deps.interpreter) queue.push(deps.interpreter);
    for (const lib of deps.needed) {
      const dir = libDirs.find((d) => lexists(join(sysroot, d, lib)));
      if (!dir) throw new Error(`${lib}, needed by ${p}, is in none of ${libDirs.join(' ')}`);
      queue.push(posix.join(dir, lib));
    }
  }
  return { paths: [...paths].sort(), symlinks };
}

/** Exists without following a symlink: package symlinks are absolute and must not resolve on the host. */
function lexists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Our programs in every image, compiled for the arch (freestanding and
 * static, as the guest programs built with the modules): klp-poll does the
 * harness's waits and samples of sysfs files (guest/klp-poll.c).
 */
export const IMAGE_PROGRAMS = [{ source: 'guest/klp-poll.c', headers: ['guest/modules/start.h'], path: '/usr/bin/klp-poll' }] as const;
/** Their flags: the guest programs' (no C library), and no loop turned into a memcpy/memset call there is none to link. */
export const IMAGE_PROGRAM_CFLAGS = [...PROGRAM_CFLAGS, '-fno-tree-loop-distribute-patterns'];

function passwd(): string {
  return 'root:x:0:0:root:/root:/bin/sh\n';
}

/** Builds (or reuses) the initramfs for an arch. */
export async function buildImage(req: ImageRequest): Promise<ImageResult> {
  const started = Date.now();
  const { arch, logger } = req;
  const variant = req.variant ?? 'base';
  const contents = IMAGE_CONTENTS[variant];
  const programs = IMAGE_PROGRAMS.flatMap((p) => [p.source, ...p.headers].map((f) => readFileSync(projectPath(f), 'utf8')));
  const key = hashOf(arch.debArch, JSON.stringify(contents), req.initScript, req.keys.clientPublic, req.keys.hostKeyDropbear, ...programs, IMAGE_PROGRAM_CFLAGS.join(' '), arch.userCflags.join(' '));
  const dir = join(req.cacheDir, 'images', `${arch.name}-${variant}-${key}`);
  const path = join(dir, 'initramfs.cpio');
  const check = async (): Promise<ImageResult | undefined> => {
    const marker = await readValidMarker(dir);
    if (marker) {
      // Images made before they were kept private.
      chmodSync(dir, 0o700);
      chmodSync(path, 0o600);
    }
    return marker ? { path, reused: true, durationMs: Date.now() - started, files: Number(marker.meta?.files ?? 0), bytes: statSync(path).size } : undefined;
  };
  const name = `images/${arch.name}-${variant}-${key}`;
  return useEntry({ lock: entryLock(req.cacheDir, name), what: `guest image ${name}`, logger, rebuild: req.rebuild, check, make: () => makeImage(req, { dir, path, key, contents, variant, started }) });
}

async function makeImage(
  req: ImageRequest,
  o: { dir: string; path: string; key: string; contents: ImageContents; variant: ImageVariant; started: number },
): Promise<ImageResult> {
  const { arch, logger } = req;
  const { dir, path, key, contents, variant, started } = o;
  rmSync(dir, { recursive: true, force: true });
  // The image holds the guest's private host key: only its owner may read it.
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const state = aptState(req.cacheDir, arch.debArch);
  const { pkgs, debs } = await withExclusive(entryLock(req.cacheDir, `apt/${arch.debArch}`), `package state apt/${arch.debArch}`, logger, async () => {
    await aptUpdate(state, logger);
    const pkgs = await dependencyClosure(state, contents.packages);
    return { pkgs, debs: await downloadDebs(state, pkgs, logger) };
  });
  const sysroot = join(dir, `sysroot.tmp-${process.pid}`);
  const forget = onCleanup(() => rmSync(sysroot, { recursive: true, force: true }));
  try {
    mkdirSync(sysroot, { recursive: true });
    for (const deb of debs) await run('dpkg-deb', ['-x', deb, sysroot]);
    let closure: ReturnType<typeof resolveClosure>;
    try {
      closure = resolveClosure(sysroot, contents.programs);
    } catch (e) {
      throw infraError(`guest image for ${arch.name}: ${(e as Error).message}`, {
        details: `packages: ${pkgs.join(' ')}`,
        hint: 'a package layout changed; run with --rebuild image, or report it',
      });
    }
    const built = await compilePrograms(req, dir, sysroot);
    const entries = [...imageEntries(req, sysroot, closure, contents), ...built];
    const cpio = writeCpio(entries);
    writeFileAtomic(path, cpio, 0o600);
    await writeMarker(dir, key, { packages: pkgs.join(' ') }, ['initramfs.cpio'], {
      files: entries.length,
      debs: debs.map((d) => d.slice(dirname(d).length + 1)),
    });
    logger.info(`image ${arch.name} (${variant}): ${entries.length} entries, ${(cpio.length / 1048576).toFixed(1)} MiB from ${debs.length} packages`);
    return { path, reused: false, durationMs: Date.now() - started, files: entries.length, bytes: cpio.length };
  } finally {
    forget();
    rmSync(sysroot, { recursive: true, force: true });
  }
}

/** IMAGE_PROGRAMS compiled for the arch into sysroot (the compiler's output kept in dir on failure). */
async function compilePrograms(req: ImageRequest, dir: string, sysroot: string): Promise<CpioEntry[]> {
  const { arch, logger } = req;
  const out: CpioEntry[] = [];
  for (const p of IMAGE_PROGRAMS) {
    const bin = join(sysroot, `klp-program-${out.length}`);
    const logPath = join(dir, `${posix.basename(p.path)}.log`);
    await run(`${arch.crossCompile}gcc`, [...IMAGE_PROGRAM_CFLAGS, ...arch.userCflags, '-o', bin, projectPath(p.source)], {
      logPath,
      logger,
      onFailure: (f) => buildError(`guest program ${p.source} for ${arch.name} failed to build`, { arch: arch.name, command: f.command, exitCode: f.exitCode, logPath, details: f.output.slice(-2000) }),
    });
    out.push({ type: 'file', path: p.path, data: readFileSync(bin), mode: 0o755 });
  }
  return out;
}

/** The image's files: the programs' closure from the unpacked packages, our init, users, and the keys. */
function imageEntries(req: ImageRequest, sysroot: string, closure: ReturnType<typeof resolveClosure>, contents: ImageContents): CpioEntry[] {
  const entries: CpioEntry[] = [];
  const dirs = new Set<string>();
  const addDir = (d: string, mode = 0o755) => {
    if (d === '/' || dirs.has(d)) return;
    addDir(posix.dirname(d));
    dirs.add(d);
    entries.push({ type: 'dir', path: d, mode });
  };
  for (const d of ['/proc', '/sys', '/dev', '/tmp', '/run', '/etc/dropbear', '/var/log', '/bin', '/sbin', '/usr/bin', '/usr/sbin']) addDir(d);
  addDir('/root', 0o700);
  addDir('/root/.ssh', 0o700);
  for (const p of closure.paths) {
    addDir(posix.dirname(p));
    const mode = lstatSync(join(sysroot, p)).mode & 0o7777;
    entries.push({ type: 'file', path: p, data: readFileSync(join(sysroot, p)), mode });
  }
  for (const [link, target] of [...closure.symlinks, ...contents.links]) {
    addDir(posix.dirname(link));
    entries.push({ type: 'symlink', path: link, target });
  }
  entries.push(
    { type: 'file', path: '/init', data: Buffer.from(req.initScript), mode: 0o755 },
    { type: 'file', path: '/etc/passwd', data: Buffer.from(passwd()) },
    { type: 'file', path: '/etc/group', data: Buffer.from('root:x:0:\ntty:x:5:\n') },
    { type: 'file', path: '/etc/shells', data: Buffer.from('/bin/sh\n') },
    { type: 'file', path: '/root/.ssh/authorized_keys', data: Buffer.from(req.keys.clientPublic + '\n'), mode: 0o600 },
    { type: 'file', path: '/etc/dropbear/dropbear_ed25519_host_key', data: req.keys.hostKeyDropbear, mode: 0o600 },
  );
  return entries;
}

