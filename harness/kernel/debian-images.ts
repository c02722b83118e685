// Debian's own prebuilt kernels (--kernel debian-image:X.Y): the unsigned
// image, its modules, and the headers + kbuild packages the guest modules
// are built against, fetched with a private apt state (every .deb checked
// against the signed index's SHA256, as the source packages are), unpacked
// once and kept by package version in <cache>/kernel-images/.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ArchRecord } from '../core/arch.js';
import { hashOf, readValidMarker, writeMarker } from '../core/cache.js';
import { onCleanup } from '../proc/supervisor.js';
import { infraError, usageError } from '../core/errors.js';
import { run } from '../proc/exec.js';
import { entryLock, holdShared, useEntry, withExclusive } from '../core/lock.js';
import type { Logger } from '../core/log.js';
import { aptState, aptUpdate, compareDebVersions, downloadDebs, newestRecords, parseIndexRecords, type AptState, type IndexRecord } from '../image/apt.js';
import type { BinaryKernel } from './binary-kernel.js';

const KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';
const DEBIAN = 'http://deb.debian.org/debian';
const SECURITY = 'http://deb.debian.org/debian-security';

interface Suite {
  uri: string;
  suite: string;
}

/** How Debian names its image packages in one generation. */
type Layout = 'image' | 'split';

export interface DebianImageRecord {
  /** As given to --kernel. */
  name: string;
  line: string;
  /** The suites searched per Debian architecture (the newest build among them is taken). */
  suites: Readonly<Record<string, readonly Suite[]>>;
  /** The ABI part of the package names of this line (6.1.0-57, 6.12.117+deb13). */
  abi: RegExp;
  /**
   * 'image': linux-image-<abi>-<flavour>[-unsigned] holds kernel and modules
   * (to 6.12); 'split': linux-binary[-unsigned]-<abi>-<flavour> and
   * linux-modules-<abi>-<flavour> (7.x).
   */
  layout: Layout;
}

/** Debian's kernel flavour per Debian architecture, and whether its image package has a signed twin (then the one we take is -unsigned). */
const FLAVOURS: Readonly<Record<string, { flavour: string; signedTwin: boolean }>> = {
  amd64: { flavour: 'amd64', signedTwin: true },
  ppc64el: { flavour: 'powerpc64le', signedTwin: false },
};

const bookworm = [{ uri: DEBIAN, suite: 'bookworm' }, { uri: SECURITY, suite: 'bookworm-security' }];
const trixie = [{ uri: DEBIAN, suite: 'trixie' }, { uri: SECURITY, suite: 'trixie-security' }];

/**
 * What Debian publishes (looked up 2026-11-30 on deb.debian.org): bullseye's
 * 5.10 for amd64 only (bullseye-security is LTS, without ppc64el, and the
 * mirror lists no ppc64el packages for bullseye any more); bookworm's 6.1,
 * trixie's 6.12 and sid's 7.2 for both.
 */
export const DEBIAN_IMAGES: readonly DebianImageRecord[] = [
  {
    name: 'debian-image:5.10',
    line: '5.10',
    suites: { amd64: [{ uri: DEBIAN, suite: 'bullseye' }, { uri: SECURITY, suite: 'bullseye-security' }] },
    abi: /^5\.10\.0-\d+$/,
    layout: 'image',
  },
  { name: 'debian-image:6.1', line: '6.1', suites: { amd64: bookworm, ppc64el: bookworm }, abi: /^6\.1\.0-\d+$/, layout: 'image' },
  { name: 'debian-image:6.12', line: '6.12', suites: { amd64: trixie, ppc64el: trixie }, abi: /^6\.12\.\d+\+deb13$/, layout: 'image' },
  { name: 'debian-image:7.2', line: '7.2', suites: { amd64: [{ uri: DEBIAN, suite: 'sid' }], ppc64el: [{ uri: DEBIAN, suite: 'sid' }] }, abi: /^7\.2\.\d+\+deb14$/, layout: 'split' },
];

export const isImageKernelName = (v: string) => v.trim().startsWith('debian-image:');

/** Parses `debian-image:6.1,debian-image:6.12`; an unknown name is bad input listing the known ones. */
export function parseImageList(value: string): DebianImageRecord[] {
  return value
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean)
    .map((v) => {
      const k = DEBIAN_IMAGES.find((x) => x.name === v);
      if (!k && !isImageKernelName(v)) throw usageError(`--kernel mixes kernels built here ('${v}') with Debian's prebuilt ones`, { hint: 'run them in separate runs: one --kernel debian:X.Y,..., one --kernel debian-image:X.Y,...' });
      if (!k) throw usageError(`unknown kernel '${v}'`, { hint: `Debian's prebuilt kernels: ${DEBIAN_IMAGES.map((x) => x.name).join(', ')}` });
      return k;
    });
}

/** The packages of one build: what boots, and what modules are built against. */
export interface ImagePackages {
  abi: string;
  release: string;
  version: string;
  /** Packages of the kernel's own arch: image (and modules), headers. */
  target: string[];
  /** The kbuild package: its programs run on the host, so it is the host's arch's. */
  kbuild: string;
}

/** The package names of an ABI, per the record's layout and the arch's flavour. */
export function packageNames(r: DebianImageRecord, debArch: string, abi: string): { image: string[]; headers: string[] } {
  const f = FLAVOURS[debArch];
  if (!f) throw usageError(`Debian's prebuilt kernels are looked up for ${Object.keys(FLAVOURS).join(', ')}, not ${debArch}`);
  const rel = `${abi}-${f.flavour}`;
  const image = r.layout === 'image' ? [`linux-image-${rel}${f.signedTwin ? '-unsigned' : ''}`] : [`linux-binary${f.signedTwin ? '-unsigned' : ''}-${rel}`, `linux-modules-${rel}`];
  return { image, headers: [`linux-headers-${rel}`, `linux-headers-${abi}-common`] };
}

/** The newest ABI of the record's line among the headers packages an index lists (by package version). */
export function newestAbi(r: DebianImageRecord, debArch: string, records: IndexRecord[]): IndexRecord & { abi: string } | undefined {
  const flavour = FLAVOURS[debArch]!.flavour;
  const re = new RegExp(`^linux-headers-(.+)-${flavour}$`);
  const candidates = records.filter((x) => r.abi.test(re.exec(x.package)?.[1] ?? '') && (x.architecture === debArch));
  const best = candidates.sort((a, b) => compareDebVersions(a.version, b.version)).at(-1);
  return best && { ...best, abi: re.exec(best.package)![1]! };
}

/** The kbuild package a headers package depends on (linux-kbuild-6.1, linux-kbuild-6.12.117+deb13). */
export function kbuildOf(showText: string): string | undefined {
  return /^Depends:.*?\b(linux-kbuild-[^\s,(]+)/m.exec(showText)?.[1];
}

function state(cacheDir: string, r: DebianImageRecord, debArch: string): { state: AptState; lock: string } {
  const suites = r.suites[debArch];
  if (!suites) throw usageError(`Debian publishes no ${r.name} for ${debArch}`, { hint: `its arches: ${Object.keys(r.suites).join(', ')}` });
  const name = `image-${r.line}`;
  const lines = suites.map((s) => `deb [signed-by=${KEYRING}] ${s.uri} ${s.suite} main`);
  return { state: aptState(cacheDir, debArch, { name, lines }), lock: entryLock(cacheDir, `apt/${debArch}-${name}`) };
}

/** Names of every package in a private state's index that start with prefix. */
async function pkgnames(s: AptState, prefix: string): Promise<string[]> {
  return (await run('apt-cache', [...s.options, 'pkgnames', prefix])).stdout.split('\n').filter(Boolean);
}

async function showRecords(s: AptState, packages: string[]): Promise<{ text: string; records: IndexRecord[] }> {
  const text = (await run('apt-cache', [...s.options, 'show', ...packages])).stdout;
  return { text, records: parseIndexRecords(text) };
}

const HOST_DEB_ARCH = 'amd64';

/**
 * Fetches (or reuses) one arch's build of a Debian kernel line. The newest
 * one kept is reused unless `refresh` (--rebuild source); else the index
 * picks the newest ABI, and its packages are downloaded, checked and unpacked.
 */
export async function debianImage(r: DebianImageRecord, arch: ArchRecord, cacheDir: string, logger: Logger, refresh = false): Promise<BinaryKernel> {
  const started = Date.now();
  const flavour = FLAVOURS[arch.debArch]?.flavour;
  if (!flavour || !r.suites[arch.debArch]) throw usageError(`Debian publishes no ${r.name} for ${arch.name}`, { hint: `its arches: ${Object.keys(r.suites).join(', ')}` });
  // One level under kernel-images/, as every cache entry (`klp-harness cache` lists and prunes them).
  const top = join(cacheDir, 'kernel-images');
  const prefix = `debian-${r.line}-${arch.debArch}-`;
  if (!refresh) {
    for (const name of keptEntries(top, prefix)) {
      // Held shared like any entry in use, so that a prune leaves it alone.
      await holdShared(entryLock(cacheDir, `kernel-images/${name}`), `Debian kernel kernel-images/${name}`, logger);
      const k = await readEntry(join(top, name), r, arch, started);
      if (k) return k;
    }
  }
  const target = state(cacheDir, r, arch.debArch);
  const pkgs = await withExclusive(target.lock, `apt state for ${r.name} ${arch.debArch}`, logger, async () => {
    logger.info(`kernel ${r.name} ${arch.name}: looking up the newest ${r.line} build (${r.suites[arch.debArch]!.map((s) => s.suite).join(', ')})`);
    await aptUpdate(target.state, logger);
    const names = (await pkgnames(target.state, 'linux-headers-')).filter((n) => n.endsWith(`-${flavour}`));
    const best = newestAbi(r, arch.debArch, (await showRecords(target.state, names)).records);
    if (!best) throw infraError(`the index lists no ${r.name} headers for ${arch.debArch}`, { hint: 'check the mirror; run again' });
    const { image, headers } = packageNames(r, arch.debArch, best.abi);
    const kbuild = kbuildOf((await showRecords(target.state, [headers[0]!])).text);
    if (!kbuild) throw infraError(`${headers[0]} names no linux-kbuild package in its Depends`, { hint: 'Debian changed its packaging; report it' });
    return { abi: best.abi, release: `${best.abi}-${flavour}`, version: best.version, target: [...image, ...headers], kbuild } satisfies ImagePackages;
  });
  const dir = join(top, `${prefix}${pkgs.release}_${pkgs.version}`);
  const name = `kernel-images/${prefix}${pkgs.release}_${pkgs.version}`;
  const check = async () => readEntry(dir, r, arch, started);
  return useEntry({ lock: entryLock(cacheDir, name), what: `Debian kernel ${name}`, logger, check, make: () => makeEntry({ r, arch, cacheDir, logger, pkgs, dir, started }) });
}

/** Kept entries of a line and arch (their names), newest package version first. */
function keptEntries(top: string, prefix: string): string[] {
  if (!existsSync(top)) return [];
  const version = (d: string) => d.slice(d.indexOf('_') + 1);
  return readdirSync(top)
    .filter((d) => d.startsWith(prefix) && d.includes('_') && !/\.tmp-\d+$/.test(d))
    .sort((a, b) => compareDebVersions(version(b), version(a)));
}

async function readEntry(dir: string, r: DebianImageRecord, arch: ArchRecord, started: number): Promise<BinaryKernel | undefined> {
  const marker = await readValidMarker(dir);
  if (!marker?.meta) return undefined;
  const m = marker.meta as { release: string; version: string; image: string; modules: string; build: string; packages: string[] };
  const root = join(dir, 'root');
  const config = readFileSync(join(root, m.build, '.config'), 'utf8');
  return {
    label: `debian-image ${m.release.slice(0, -(FLAVOURS[arch.debArch]!.flavour.length + 1))} ${arch.debArch}`,
    release: m.release,
    version: m.version,
    line: r.line,
    image: join(root, m.image),
    modulesDir: join(root, m.modules),
    buildDir: join(root, m.build),
    config,
    key: marker.key,
    origin: m.packages.join(' '),
    reused: true,
    durationMs: Date.now() - started,
  };
}

async function makeEntry(o: { r: DebianImageRecord; arch: ArchRecord; cacheDir: string; logger: Logger; pkgs: ImagePackages; dir: string; started: number }): Promise<BinaryKernel> {
  const { r, arch, cacheDir, logger, pkgs, dir } = o;
  const target = state(cacheDir, r, arch.debArch);
  const debs = await withExclusive(target.lock, `apt state for ${r.name} ${arch.debArch}`, logger, () => downloadDebs(target.state, pkgs.target, logger));
  // kbuild's programs (fixdep, modpost) run on the host: the host's arch's build of the same line.
  const host = HOST_DEB_ARCH === arch.debArch ? target : state(cacheDir, r, HOST_DEB_ARCH);
  const kbuildDeb = await withExclusive(host.lock, `apt state for ${r.name} ${HOST_DEB_ARCH}`, logger, async () => {
    if (host !== target) await aptUpdate(host.state, logger);
    const index = newestRecords((await showRecords(host.state, [pkgs.kbuild])).records, [pkgs.kbuild], HOST_DEB_ARCH);
    if (!index.has(pkgs.kbuild)) throw infraError(`the ${HOST_DEB_ARCH} index lists no ${pkgs.kbuild} (needed to build modules for ${pkgs.release})`, { hint: 'check the mirror; run again' });
    return (await downloadDebs(host.state, [pkgs.kbuild], logger))[0]!;
  });
  rmSync(dir, { recursive: true, force: true });
  const tmp = `${dir}.tmp-${process.pid}`;
  const forget = onCleanup(() => rmSync(tmp, { recursive: true, force: true }));
  try {
    rmSync(tmp, { recursive: true, force: true });
    const root = join(tmp, 'root');
    mkdirSync(root, { recursive: true });
    for (const deb of [...debs, kbuildDeb]) await run('dpkg-deb', ['-x', deb, root]);
    // Packages leave modules.dep to depmod in their postinst: run it on the unpacked tree (kmod reads any arch's modules).
    if (!existsSync(join(root, 'lib')) && existsSync(join(root, 'usr/lib/modules'))) symlinkSync('usr/lib', join(root, 'lib'));
    const modDir = ['lib/modules', 'usr/lib/modules'].map((d) => join(root, d, pkgs.release)).find((d) => existsSync(d));
    if (modDir && !existsSync(join(modDir, 'modules.dep'))) await run('depmod', ['-b', root, pkgs.release]);
    const layout = locate(root, pkgs.release, arch);
    // The flavour's Makefile includes the common one by its absolute path under /usr/src: point it here.
    const mk = join(root, layout.build, 'Makefile');
    writeFileSync(mk, readFileSync(mk, 'utf8').replace(/^include \/usr\/src\//m, `include ${join(dir, 'root', 'usr/src')}/`));
    const key = hashOf(r.name, arch.debArch, pkgs.release, pkgs.version, pkgs.kbuild);
    const packages = [...pkgs.target, pkgs.kbuild].map((p, i) => `${p} (${[...debs, kbuildDeb][i]!.split('_')[1]?.replace(/%3a/g, ':')})`);
    await writeMarker(tmp, key, { packages: packages.join(' ') }, [join('root', layout.image), join('root', layout.modules, 'modules.dep'), join('root', layout.build, '.config')], {
      release: pkgs.release,
      version: pkgs.version,
      packages,
      ...layout,
    });
    mkdirSync(join(dir, '..'), { recursive: true });
    renameSync(tmp, dir);
  } finally {
    forget();
    rmSync(tmp, { recursive: true, force: true });
  }
  logger.info(`kernel ${r.name} ${arch.name}: ${pkgs.release} (${pkgs.version}) unpacked in ${((Date.now() - o.started) / 1000).toFixed(1)} s to ${dir}`);
  const k = await readEntry(dir, r, arch, o.started);
  if (!k) throw infraError(`the unpacked kernel in ${dir} did not check out`, { hint: 'run again with --rebuild source' });
  return { ...k, reused: false };
}

/** Where the unpacked packages put the kernel, its modules and its kbuild tree (relative to root). */
export function locate(root: string, release: string, arch: ArchRecord): { image: string; modules: string; build: string } {
  const image = ['boot/vmlinuz', 'boot/vmlinux', 'usr/lib/linux/vmlinuz', 'usr/lib/linux/vmlinux'].map((p) => `${p}-${release}`).find((p) => existsSync(join(root, p)));
  const modules = [`lib/modules/${release}`, `usr/lib/modules/${release}`].find((p) => existsSync(join(root, p, 'modules.dep')));
  const build = `usr/src/linux-headers-${release}`;
  const missing = [!image && `the kernel image (boot/vmlinu[xz]-${release})`, !modules && `lib/modules/${release}/modules.dep`, !existsSync(join(root, build, '.config')) && `${build}/.config`].filter(Boolean);
  if (missing.length) throw infraError(`the Debian packages of ${release} for ${arch.name} lack ${missing.join(', ')}`, { hint: 'Debian changed its packaging; report it' });
  return { image: image!, modules: modules!, build };
}
