// The host artifacts of an arch whose kernel is not built here (a Debian
// package, or a kernel given by path): no kernel build. The guest images
// get the kernel's own boot modules appended, and the guest modules are
// built out of tree against the kernel's kbuild tree, with its compiler.
import { chmodSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { ArchRecord } from '../core/arch.js';
import { hashOf, readValidMarker, writeFileAtomic, writeMarker } from '../core/cache.js';
import { checkInterrupted } from '../proc/supervisor.js';
import { HarnessError } from '../core/errors.js';
import { entryLock, useEntry } from '../core/lock.js';
import type { Logger } from '../core/log.js';
import { projectPath } from '../core/paths.js';
import { bootModulesArchive, bootModulesOf } from '../image/boot-modules.js';
import { buildImage, type ImageResult, type ImageVariant } from '../image/initramfs.js';
import { loadKeys, type Keys } from '../image/keys.js';
import { NO_PATCHES, readSeries } from '../kernel/patches.js';
import { DEFAULT_QEMU, qemuInstall, type QemuChoice } from '../vm/qemu-dist.js';
import { kernelFacts, moduleCompiler, type BinaryKernel } from '../kernel/binary-kernel.js';
import type { BuildResult } from '../kernel/build.js';
import { buildGuestModules, type ModulesResult } from '../kernel/modules.js';
import type { Scenario } from '../scenarios/types.js';
import type { ArchArtifacts } from './prepare.js';

/** Where a binary kernel comes from, per arch (a Debian package is another one per arch). */
export interface BinarySource {
  /** As reports and logs name the input (debian-image:6.1, or the paths). */
  name: string;
  forArch(arch: ArchRecord, cacheDir: string, logger: Logger, refresh: boolean): Promise<BinaryKernel>;
}

export interface BinaryArtifacts extends ArchArtifacts {
  kernel: BinaryKernel;
  /** Set when the guest modules were not built, and why (a kernel without CONFIG_LIVEPATCH). */
  modulesSkipped?: string;
}

/** A BuildResult for a kernel not built here: its kbuild tree and image. */
export function binaryBuild(k: BinaryKernel): BuildResult {
  return { buildDir: k.buildDir, image: k.image, key: k.key, reused: true, durationMs: k.durationMs, logPath: '', makeCommand: `# not built here: ${k.origin}` };
}

/** The kernel, its guest images (with its boot modules) and the guest modules for one arch. */
export async function prepareBinaryArch(o: {
  arch: ArchRecord;
  source: BinarySource;
  keys: Keys;
  initScript: string;
  cacheDir: string;
  logger: Logger;
  rebuild?: Set<string>;
  scenarios?: readonly Scenario[];
}): Promise<BinaryArtifacts> {
  const { arch, logger, cacheDir } = o;
  logger.status(arch.name, `kernel: ${o.source.name}`);
  const kernel = await o.source.forArch(arch, cacheDir, logger, o.rebuild?.has('source') ?? false);
  const facts = kernelFacts(kernel.config);
  logger.info(`kernel ${arch.name}: ${kernel.label} (${kernel.version}) ${kernel.reused ? 'reused' : 'fetched'}; built with ${facts.cc}; CONFIG_LIVEPATCH ${facts.livepatch ? 'y' : 'not set'}${facts.haveLivepatch && !facts.livepatch ? ' (HAVE_LIVEPATCH=y: the arch could, this config does not)' : ''}`);
  const build = binaryBuild(kernel);
  const plan = bootModulesOf(kernel.modulesDir);
  logger.info(`kernel ${arch.name}: boot modules ${plan.load.length ? plan.load.map((p) => p.replace(/^.*\//, '')).join(' ') : 'none'}${plan.builtin.length ? `; built in: ${plan.builtin.join(' ')}` : ''}`);
  const images = new Map<ImageVariant, ImageResult>();
  const variants = new Set<ImageVariant>(['base', ...(o.scenarios ?? []).map((s) => s.image ?? 'base')]);
  for (const variant of variants) {
    checkInterrupted();
    logger.status(arch.name, `image: guest initramfs${variant === 'base' ? '' : ` (${variant})`} + ${kernel.release} boot modules`);
    const base = await buildImage({ arch, cacheDir, initScript: o.initScript, keys: o.keys, logger, rebuild: o.rebuild?.has('image'), variant });
    images.set(variant, await withBootModules({ arch, kernel, base, variant, cacheDir, logger, initScript: o.initScript, plan }));
  }
  checkInterrupted();
  let modules: ModulesResult = { dir: '', modules: {}, reused: false };
  let modulesSkipped: string | undefined;
  if (!facts.livepatch) {
    // Our livepatch modules cannot compile without it (struct klp_patch is behind CONFIG_LIVEPATCH); the boot says the rest.
    modulesSkipped = `${kernel.release} has no CONFIG_LIVEPATCH (its .config${facts.haveLivepatch ? ': HAVE_LIVEPATCH=y, LIVEPATCH not set' : ''})`;
    logger.info(`modules ${arch.name}: not built: ${modulesSkipped}`);
  } else {
    const cc = await moduleCompiler(arch, kernel.config);
    logger.info(`modules ${arch.name}: compiler ${cc.cc}: ${cc.note}`);
    logger.status(arch.name, 'modules: klp_sleeper, klp_sleeper_lp');
    modules = await buildGuestModules({ arch, build, tree: kernel.buildDir, sourceDir: projectPath('guest/modules'), logger, cacheDir, entry: 'binary-modules', makeVars: [`CC=${cc.cc}`] }).catch((e: unknown) => {
      // Seen: 6.12's flags (-fmin-function-alignment) are gcc 14's; bookworm's gcc 12 refuses them.
      if (!cc.same && e instanceof HarnessError) e.context.hint = `${cc.note.split(';')[0]}, and this host's ${cc.cc} cannot build modules for it: run on a host that has that compiler (Debian's own release of that kernel), or put it on PATH as ${arch.crossCompile}gcc-${/(\d+)\.\d+\.\d+\s*$/.exec(cc.kernelCc)?.[1] ?? 'N'}`;
      throw e;
    });
  }
  for (const scenario of o.scenarios ?? []) {
    if (!scenario.prepare) continue;
    checkInterrupted();
    await scenario.prepare({ arch, build, tree: kernel.buildDir, modules, logger }).catch((e: Error) => {
      if (scenario.prepareFailsRun) throw e;
      logger.info(`prepare ${arch.name}: ${scenario.name}: ${e.message}`);
    });
  }
  return { build, image: images.get('base')!, images, modules, kernel, modulesSkipped };
}

/** The base image with the kernel's boot modules appended (a cache entry of its own, private like the base). */
async function withBootModules(o: {
  arch: ArchRecord;
  kernel: BinaryKernel;
  base: ImageResult;
  variant: ImageVariant;
  cacheDir: string;
  logger: Logger;
  initScript: string;
  plan: ReturnType<typeof bootModulesOf>;
}): Promise<ImageResult> {
  const started = Date.now();
  const key = hashOf(readFileSync(o.base.path), o.kernel.key, JSON.stringify(o.plan.load), o.initScript);
  const name = `images/${o.arch.name}-${o.variant}-boot-${key}`;
  const dir = join(o.cacheDir, name);
  const path = join(dir, 'initramfs.cpio');
  const check = async () => ((await readValidMarker(dir)) ? { path, reused: true, durationMs: Date.now() - started, files: o.base.files, bytes: statSync(path).size } : undefined);
  const make = async (): Promise<ImageResult> => {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
    const data = Buffer.concat([readFileSync(o.base.path), await bootModulesArchive(o.kernel.modulesDir, o.plan, o.initScript)]);
    writeFileAtomic(path, data, 0o600);
    await writeMarker(dir, key, { base: o.base.path, kernel: o.kernel.key }, ['initramfs.cpio'], { modules: o.plan.load });
    o.logger.info(`image ${o.arch.name} (${o.variant}): + ${o.plan.load.length} modules of ${o.kernel.release}, ${(data.length / 1048576).toFixed(1)} MiB`);
    return { path, reused: false, durationMs: Date.now() - started, files: o.base.files, bytes: data.length };
  };
  return useEntry({ lock: entryLock(o.cacheDir, name), what: `guest image ${name}`, logger: o.logger, check, make });
}

/** prepareRun's counterpart for a binary kernel (repro, shell): keys, the one arch's artifacts, the QEMU. */
export async function prepareBinaryRun(o: { arch: ArchRecord; source: BinarySource; cacheDir: string; logger: Logger; qemu?: QemuChoice; scenarios?: readonly Scenario[] }) {
  const keys = loadKeys(o.cacheDir);
  const initScript = readFileSync(projectPath('guest/init'), 'utf8');
  const artifacts = await prepareBinaryArch({ arch: o.arch, source: o.source, keys, initScript, cacheDir: o.cacheDir, logger: o.logger, scenarios: o.scenarios });
  const qemu = await qemuInstall(o.qemu ?? DEFAULT_QEMU, o.cacheDir, o.logger, [o.arch]);
  return { keys, artifacts, qemu, src: { tree: artifacts.kernel.buildDir, version: artifacts.kernel.line }, series: readSeries(NO_PATCHES) };
}
