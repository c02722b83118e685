// Everything an arch needs on the host before its first guest boots: the
// kernel build, the guest modules, each initramfs the scenarios ask for and
// the scenarios' own host-side artifacts (the selftest modules). All cached.
import type { ArchRecord } from '../core/arch.js';
import { checkInterrupted } from '../proc/supervisor.js';
import type { Logger } from '../core/log.js';
import { projectPath } from '../core/paths.js';
import type { Keys } from '../image/keys.js';
import { buildImage, type ImageResult, type ImageVariant } from '../image/initramfs.js';
import { buildKernel, type BuildResult } from '../kernel/build.js';
import type { KernelRecord } from '../kernel/kernels.js';
import { buildGuestModules, type ModulesResult } from '../kernel/modules.js';
import type { Scenario } from '../scenarios/types.js';
import { readFileSync } from 'node:fs';
import { loadKeys } from '../image/keys.js';
import { readSeries } from '../kernel/patches.js';
import { DEFAULT_KERNEL_SRC, prepareSource } from '../kernel/source.js';
import { DEFAULT_QEMU, qemuInstall, type QemuChoice, type QemuInstall } from '../vm/qemu-dist.js';

type SourceResult = Awaited<ReturnType<typeof prepareSource>>;

/** A cached stage that `--rebuild` can redo. */
export type Stage = 'source' | 'build' | 'image';

export interface PrepareRequest {
  arch: ArchRecord;
  src: { tree: string; key: string; series: string; generation: string };
  keys: Keys;
  initScript: string;
  cacheDir: string;
  logger: Logger;
  rebuild?: Set<Stage>;
  kconfigDir?: string;
  kconfigExtra?: string[];
  absentOptions?: KernelRecord['absentOptions'];
  /** The scenarios to come: their images and host-side artifacts are made too. */
  scenarios?: readonly Scenario[];
}

export interface ArchArtifacts {
  build: BuildResult;
  /** The base initramfs. */
  image: ImageResult;
  /** Every initramfs the scenarios need, by variant (base among them). */
  images: Map<ImageVariant, ImageResult>;
  modules: ModulesResult;
}

/** Kernel build, guest images, guest modules and the scenarios' host artifacts for one arch. */
export async function prepareArch(o: PrepareRequest): Promise<ArchArtifacts> {
  const { arch, logger } = o;
  checkInterrupted();
  const build = await buildKernel({
    arch,
    tree: o.src.tree,
    treeKey: o.src.key,
    series: o.src.series,
    generation: o.src.generation,
    kconfigDir: o.kconfigDir ?? projectPath('kconfigs'),
    extraFragments: o.kconfigExtra,
    absentOptions: o.absentOptions,
    cacheDir: o.cacheDir,
    logger,
    rebuild: o.rebuild?.has('build'),
  });
  logger.info(`build ${arch.name}: ${build.reused ? 'reused' : 'built'} in ${(build.durationMs / 1000).toFixed(1)} s`);
  const images = new Map<ImageVariant, ImageResult>();
  const variants = new Set<ImageVariant>(['base', ...(o.scenarios ?? []).map((s) => s.image ?? 'base')]);
  for (const variant of variants) {
    checkInterrupted();
    logger.status(arch.name, `image: guest initramfs${variant === 'base' ? '' : ` (${variant})`}`);
    images.set(variant, await buildImage({ arch, cacheDir: o.cacheDir, initScript: o.initScript, keys: o.keys, logger, rebuild: o.rebuild?.has('image'), variant }));
  }
  logger.status(arch.name, 'modules: klp_sleeper, klp_sleeper_lp');
  checkInterrupted();
  const modules = await buildGuestModules({ arch, build, tree: o.src.tree, sourceDir: projectPath('guest/modules'), logger });
  for (const scenario of o.scenarios ?? []) {
    if (!scenario.prepare) continue;
    checkInterrupted();
    logger.status(arch.name, `prepare: ${scenario.name}`);
    // A preparation that fails is left to the scenario: it asks again and reports the failure as its own.
    await scenario.prepare({ arch, build, tree: o.src.tree, modules, logger }).catch((e: Error) => {
      if (scenario.prepareFailsRun) throw e;
      logger.info(`prepare ${arch.name}: ${scenario.name}: ${e.message}`);
    });
  }
  checkInterrupted();
  return { build, image: images.get('base')!, images, modules };
}

/** What prepareRun needs: the run's inputs, as the CLI options give them. */
export interface RunInputs {
  arches: ArchRecord[];
  cacheDir: string;
  logger: Logger;
  kernelSrc?: string;
  patches?: string;
  kconfigDir?: string;
  kconfigExtra?: string[];
  absentOptions?: KernelRecord['absentOptions'];
  rebuild?: Set<Stage>;
  scenarios?: readonly Scenario[];
  qemu?: QemuChoice;
}

/** Everything on the host a run's guests need: the patched source, keys, each arch's artifacts, the QEMU. */
export interface PreparedRun {
  series: ReturnType<typeof readSeries>;
  src: SourceResult;
  keys: Keys;
  initScript: string;
  artifacts: Map<string, ArchArtifacts>;
  qemu: QemuInstall;
  cacheDir: string;
  logger: Logger;
}

/** The one way from inputs to host artifacts for tools that want them all at once (repro, shell, bench, profile, tests). */
export async function prepareRun(i: RunInputs): Promise<PreparedRun> {
  const series = readSeries(i.patches ?? projectPath('patches'));
  const src = await prepareSource({ kernelSrc: i.kernelSrc ?? DEFAULT_KERNEL_SRC, series, cacheDir: i.cacheDir, logger: i.logger, rebuild: i.rebuild?.has('source') });
  const keys = loadKeys(i.cacheDir);
  const initScript = readFileSync(projectPath('guest/init'), 'utf8');
  const artifacts = new Map<string, ArchArtifacts>();
  for (const arch of i.arches) {
    artifacts.set(arch.name, await prepareArch({ arch, src, keys, initScript, cacheDir: i.cacheDir, logger: i.logger, rebuild: i.rebuild, kconfigDir: i.kconfigDir, kconfigExtra: i.kconfigExtra, absentOptions: i.absentOptions, scenarios: i.scenarios }));
  }
  const qemu = await qemuInstall(i.qemu ?? DEFAULT_QEMU, i.cacheDir, i.logger, i.arches);
  return { series, src, keys, initScript, artifacts, qemu, cacheDir: i.cacheDir, logger: i.logger };
}
