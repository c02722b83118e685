// The main job: source -> patches -> config -> build -> guest image -> boot
// -> scenarios -> report, per arch. Each stage is a function with a typed
// request and result; this file only decides the order and what to keep.
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ArchRecord } from './arch.js';
import { bootGuest } from './boot.js';
import { buildKernel, type BuildResult } from './build.js';
import { cacheRoot } from './cache.js';
import { EXIT, exitCodeFor, exitForOutcome, HarnessError } from './errors.js';
import { GuestOps } from './guestops.js';
import { buildImage, type ImageResult } from './image.js';
import type { Keys } from './keys.js';
import { guardRun, interruptReason, onCleanup, wasInterrupted } from './children.js';
import { buildGuestModules, type ModulesResult } from './modules.js';
import { toJUnit } from './junit.js';
import { toHTML } from './html.js';
import { toKTAP } from './ktap.js';
import type { KernelRecord } from './kernels.js';
import { preflight } from './preflight.js';
import { loadKeys } from './keys.js';
import type { Logger } from './log.js';
import { readSeries, NO_PATCHES } from './patches.js';
import { runScenario } from './scenarios/runner.js';
import type { Scenario, ScenarioReport } from './scenarios/types.js';
import { DEFAULT_KERNEL_SRC, prepareSource } from './source.js';
import { timeout } from './timeouts.js';

export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export type Stage = 'source' | 'build' | 'image';

export interface RunOptions {
  arches: ArchRecord[];
  scenarios: Scenario[];
  kernelSrc?: string;
  patches?: string;
  cacheDir?: string;
  outDir?: string;
  rebuild?: Stage[];
  /** Run the arches' scenarios one after the other instead of alongside. */
  sequential?: boolean;
  /** Config fragments (common.config + one per arch); default kconfigs/. */
  kconfigDir?: string;
  /** Fragments appended after those (a debug variant); the build gets its own directory. */
  kconfigExtra?: string[];
  /** The kernel record when the source is one of --kernel's (names it in reports; options it lacks). */
  kernel?: KernelRecord;
  logger: Logger;
  /** CPU models per arch to run the scenarios on; default: the arch's first. */
  cpus?: (arch: ArchRecord) => string[];
  qemuBinary?: string;
  /** What was asked for before sharding (recorded so that `merge` can tell a missing shard). */
  selection?: RunReport['selection'];
}

export interface ArchReport {
  arch: string;
  /** The --kernel name (debian:6.12) when the run was given one. */
  kernel?: string;
  kernelVersion?: string;
  build?: { reused: boolean; durationMs: number; dir: string; log: string; makeCommand: string };
  image?: { reused: boolean; durationMs: number; path: string; bytes: number };
  modules?: { reused: boolean; dir: string };
  boots: { cpu: string; scenario: string; bootMs?: number; qemuCommand?: string; consoleLog: string; stalledConsoleLogs?: string[] }[];
  scenarios: ScenarioOutcome[];
  /** Wall time from the first boot to the end of the last scenario (boots overlap scenarios). */
  scenariosWallMs?: number;
  error?: { kind: string; message: string; report: string; exitCode: number };
}

/** A scenario's report; `interrupted` when the run was stopped before it finished (or before it began). */
export type ScenarioOutcome = ScenarioReport & { interrupted?: boolean };

export interface RunReport {
  started: string;
  /** Set when a signal (or the end of the process that started us) stopped the run. */
  interrupted?: string;
  durationMs: number;
  outDir: string;
  cacheDir: string;
  source: { kernelSrc: string; patches: string; reused?: boolean; durationMs?: number; tree?: string; treeKey?: string; series?: string; generation?: string };
  arches: ArchReport[];
  exitCode: number;
  /** The scenarios asked for (before --shard) and the shard this run is. */
  selection?: { scenarios: string[]; shard?: { index: number; count: number } };
}

/** Runs everything the options ask for; never throws for a kernel or test failure (see exitCode). */
export async function runMain(opts: RunOptions): Promise<RunReport> {
  const started = Date.now();
  const cacheDir = cacheRoot(opts.cacheDir);
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const outDir = resolve(opts.outDir ?? join(cacheDir, 'runs', stamp));
  mkdirSync(outDir, { recursive: true });
  opts.logger.tee(join(outDir, 'harness.log'));
  const kernelSrc = resolve(opts.kernelSrc ?? DEFAULT_KERNEL_SRC);
  const patchesDir = opts.patches === NO_PATCHES ? NO_PATCHES : resolve(opts.patches ?? join(PROJECT_ROOT, 'patches'));
  const report: RunReport = {
    started: new Date(started).toISOString(),
    durationMs: 0,
    outDir,
    cacheDir,
    source: { kernelSrc, patches: patchesDir },
    arches: [],
    exitCode: EXIT.ok,
    selection: opts.selection,
  };
  for (const line of guardRun(cacheDir)) opts.logger.info(line);
  // However the run ends, an interrupted one leaves its reports: from here
  // when it unwinds, from the exit hook when something kept it from that.
  const planned = new Map(opts.arches.map((a) => [a.name, plannedRuns(a, opts)]));
  const finish = () => writeReports(report, planned, started);
  const forgetHook = onCleanup(() => wasInterrupted() && finish());
  try {
    await runArches(opts, report, cacheDir, outDir);
  } catch (e) {
    if (wasInterrupted()) finish();
    throw e;
  } finally {
    forgetHook();
  }
  finish();
  return report;
}

/** The (scenario, CPU) pairs an arch is to run, in order. */
function plannedRuns(arch: ArchRecord, opts: RunOptions): { scenario: Scenario; cpu: string }[] {
  const cpuChoice = opts.cpus?.(arch) ?? [...arch.qemu.cpuModels];
  return opts.scenarios.flatMap((scenario) => (scenario.allCpus ? cpuChoice : cpuChoice.slice(0, 1)).map((cpu) => ({ scenario, cpu })));
}

/**
 * Writes summary.json, junit.xml, ktap.txt and report.html. After an interrupt every planned
 * scenario without a report gets one marked interrupted, so the reports say
 * what finished and what did not.
 */
function writeReports(report: RunReport, planned: Map<string, { scenario: Scenario; cpu: string }[]>, started: number): void {
  if (wasInterrupted()) {
    report.interrupted = interruptReason();
    for (const [archName, runs] of planned) {
      let ar = report.arches.find((a) => a.arch === archName);
      if (!ar) report.arches.push((ar = { arch: archName, boots: [], scenarios: [] }));
      for (const { scenario, cpu } of runs) {
        if (ar.scenarios.some((s) => s.name === scenario.name && (s.cpu ?? cpu) === cpu)) continue;
        ar.scenarios.push({ name: scenario.name, arch: archName, cpu, ok: false, interrupted: true, steps: [], durationMs: 0, timings: {}, error: `interrupted (${report.interrupted}) before it finished` });
      }
    }
  }
  report.durationMs = Date.now() - started;
  report.exitCode = overallExit(report);
  writeFileSync(join(report.outDir, 'summary.json'), JSON.stringify(report, null, 2) + '\n');
  writeFileSync(join(report.outDir, 'junit.xml'), toJUnit(report));
  writeFileSync(join(report.outDir, 'ktap.txt'), toKTAP(report));
  writeFileSync(join(report.outDir, 'report.html'), toHTML(report));
}

/** Source, then per arch: build, image, modules, boots and scenarios. Fills report as it goes. */
async function runArches(opts: RunOptions, report: RunReport, cacheDir: string, outDir: string): Promise<void> {
  const { kernelSrc, patches: patchesDir } = report.source;
  const rebuild = new Set(opts.rebuild ?? []);
  opts.logger.info(`run: artifacts in ${outDir}`);

  preflight(opts.arches);
  const series = readSeries(patchesDir);
  for (const a of opts.arches) opts.logger.status(a.name, 'source: unpack and patch');
  const src = await prepareSource({ kernelSrc, series, cacheDir, logger: opts.logger, rebuild: rebuild.has('source') });
  for (const a of opts.arches) opts.logger.status(a.name, 'waiting: one kernel build at a time');
  Object.assign(report.source, { reused: src.reused, durationMs: src.durationMs, tree: src.tree, treeKey: src.key, series: src.series, generation: src.generation });
  opts.logger.info(`source: linux ${src.version} with ${series.patches.length} patch(es) ${src.reused ? 'reused from cache' : 'prepared'} (${src.tree})`);

  const keys = loadKeys(cacheDir);
  const initScript = readFileSync(join(PROJECT_ROOT, 'guest/init'), 'utf8');

  // Kernel builds run one at a time; an arch's scenarios start as soon as its
  // build is ready and run alongside the next build (or the other arch's VMs).
  const archRuns: Promise<void>[] = [];
  for (const arch of opts.arches) {
    const ar: ArchReport = { arch: arch.name, kernel: opts.kernel?.name, kernelVersion: src.version, boots: [], scenarios: [] };
    report.arches.push(ar);
    const archOut = join(outDir, arch.name);
    mkdirSync(archOut, { recursive: true });
    const fail = (e: unknown) => {
      const text = e instanceof HarnessError ? e.report() : String((e as Error)?.stack ?? e);
      // After an interrupt, what failed (a killed make or QEMU) failed because of it.
      const kind = wasInterrupted() ? 'interrupted' : e instanceof HarnessError ? e.kind : 'infra';
      const message = wasInterrupted() ? `interrupted (${interruptReason()}): ${(e as Error).message}` : (e as Error).message;
      ar.error = { kind, message, report: text, exitCode: wasInterrupted() ? EXIT.interrupted : exitCodeFor(e) };
      opts.logger.info(text);
    };
    let prepared: Awaited<ReturnType<typeof prepareArch>>;
    try {
      prepared = await prepareArch({ arch, src, keys, initScript, cacheDir, rebuild, logger: opts.logger, kconfigDir: opts.kconfigDir, kconfigExtra: opts.kconfigExtra, absentOptions: opts.kernel?.absentOptions });
    } catch (e) {
      fail(e);
      continue;
    }
    const { build, image, modules } = prepared;
    ar.build = { reused: build.reused, durationMs: build.durationMs, dir: build.buildDir, log: build.logPath, makeCommand: build.makeCommand };
    writeFileSync(join(archOut, 'make-command.txt'), build.makeCommand + '\n');
    // The kernel's build log stays with its build; the run keeps a copy (a reused build's is from when it was made).
    if (existsSync(build.logPath)) copyFileSync(build.logPath, join(archOut, 'build.log'));
    ar.image = { reused: image.reused, durationMs: image.durationMs, path: image.path, bytes: image.bytes };
    ar.modules = { reused: modules.reused, dir: modules.dir };
    const runArch = async () => {
      // Every scenario gets a freshly booted guest: a forced transition leaves a module that can never go.
      const runs = plannedRuns(arch, opts);
      const boot = async ({ scenario, cpu }: (typeof runs)[number]) => {
        const label = `${scenario.name}-${cpu}`;
        const consoleLog = join(archOut, `console-${label}.log`);
        const bootRec: ArchReport['boots'][number] = { cpu, scenario: scenario.name, consoleLog };
        ar.boots.push(bootRec);
        const initrd = scenario.image && scenario.image !== 'base' ? (await buildImage({ arch, cacheDir, initScript, keys, logger: opts.logger, variant: scenario.image })).path : image.path;
        const commandFile = join(archOut, `qemu-command-${label}.txt`);
        const booted = await bootGuest({ arch, kernel: build.image, initrd, keys, consoleLog, commandFile, logger: opts.logger, cpu, qemuBinary: opts.qemuBinary });
        bootRec.bootMs = booted.bootMs;
        if (booted.stalled.length) bootRec.stalledConsoleLogs = booted.stalled;
        bootRec.qemuCommand = booted.vm.command;
        opts.logger.info(`boot ${arch.name}/${cpu} for ${scenario.name}: SSH up after ${(booted.bootMs / 1000).toFixed(1)} s (${sshCommand(keys, booted.port)})`);
        return booted;
      };
      // The next scenario's guest boots while this one runs: a scenario spends
      // most of its time waiting on the kernel's one-second retries.
      const wallStart = Date.now();
      let next: ReturnType<typeof boot> | undefined;
      if (runs[0]) {
        opts.logger.status(arch.name, `boot: ${runs[0].cpu} for ${runs[0].scenario.name}`);
        next = boot(runs[0]);
      }
      try {
        for (let i = 0; i < runs.length; i++) {
          const { scenario, cpu } = runs[i]!;
          const label = `${scenario.name}-${cpu}`;
          const booted = await next!;
          next = undefined;
          try {
            checkInterrupted();
            if (runs[i + 1]) {
              next = boot(runs[i + 1]!);
              next.catch(() => {}); // reported when its turn comes
            }
            const ops = new GuestOps(booted.ssh, timeout('guestCommand', arch), booted.vm);
            const uname = (await ops.must('uname -m')).trim();
            if (uname !== arch.unameMachine) throw new HarnessError('boot', `guest reports uname -m '${uname}', expected '${arch.unameMachine}'`, { arch: arch.name });
            opts.logger.info(`scenario ${arch.name}/${cpu}: ${scenario.name}`);
            const sr: ScenarioOutcome = await runScenario(scenario, { arch, ops, build, tree: src.tree, modules, vm: booted.vm, logger: opts.logger }, cpu);
            if (wasInterrupted()) sr.interrupted = true;
            ar.scenarios.push(sr);
            // A guest that died, hung or was stopped has no dmesg to give (its console log has the story);
            // any other gets the usual command deadline.
            const dmesg = sr.fault || sr.interrupted ? undefined : await ops.run('dmesg').catch(() => undefined);
            if (dmesg) writeFileSync(join(archOut, `dmesg-${label}.txt`), dmesg.stdout);
            if (sr.diagnosis) writeFileSync(join(archOut, `blocking-tasks-${label}.txt`), sr.diagnosis + '\n');
            opts.logger.info(`scenario ${arch.name}/${cpu}: ${scenario.name} ${sr.ok ? 'passed' : 'FAILED'} in ${(sr.durationMs / 1000).toFixed(1)} s`);
            if (!sr.ok && sr.error) opts.logger.info(sr.error);
            // A guest that died fails its scenario (with the console excerpt); the next scenario boots afresh.
          } finally {
            booted.ssh.close();
            await booted.vm.stop();
          }
        }
        ar.scenariosWallMs = Date.now() - wallStart;
      } finally {
        // Stopped early (an error, an interrupt): the guest booted ahead goes too.
        const ahead = await next?.catch(() => undefined);
        if (ahead) {
          ahead.ssh.close();
          await ahead.vm.stop();
        }
      }
    };
    const archRun = runArch()
      .catch(fail)
      .finally(() => opts.logger.status(arch.name, ar.error ? `stopped: ${ar.error.kind} error` : `done: ${ar.scenarios.filter((x) => x.ok).length}/${ar.scenarios.length} scenarios passed`));
    if (opts.sequential) await archRun;
    else archRuns.push(archRun);
  }
  await Promise.all(archRuns);
}

/** Everything an arch needs before booting: kernel build, guest image, guest modules (each cached). */
export async function prepareArch(o: {
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
}): Promise<{ build: BuildResult; image: ImageResult; modules: ModulesResult }> {
  const { arch, logger } = o;
  checkInterrupted();
  const build = await buildKernel({
    arch,
    tree: o.src.tree,
    treeKey: o.src.key,
    series: o.src.series,
    generation: o.src.generation,
    kconfigDir: o.kconfigDir ?? join(PROJECT_ROOT, 'kconfigs'),
    extraFragments: o.kconfigExtra,
    absentOptions: o.absentOptions,
    cacheDir: o.cacheDir,
    logger,
    rebuild: o.rebuild?.has('build'),
  });
  logger.info(`build ${arch.name}: ${build.reused ? 'reused' : 'built'} in ${(build.durationMs / 1000).toFixed(1)} s`);
  checkInterrupted();
  logger.status(arch.name, 'image: guest initramfs');
  const image = await buildImage({ arch, cacheDir: o.cacheDir, initScript: o.initScript, keys: o.keys, logger, rebuild: o.rebuild?.has('image') });
  logger.status(arch.name, 'modules: klp_sleeper, klp_sleeper_lp');
  checkInterrupted();
  const modules = await buildGuestModules({ arch, build, tree: o.src.tree, sourceDir: join(PROJECT_ROOT, 'guest/modules'), logger });
  return { build, image, modules };
}

function checkInterrupted() {
  if (wasInterrupted()) throw new HarnessError('interrupted', 'interrupted by a signal');
}

/** A command a person can paste into a second terminal to reach the guest. */
export function sshCommand(keys: { clientPrivatePath: string; knownHostsPath: string }, port: number): string {
  return `ssh -i ${keys.clientPrivatePath} -p ${port} -o UserKnownHostsFile=${keys.knownHostsPath} -o HostKeyAlias=klp-harness-guest root@127.0.0.1`;
}

/** The most serious outcome wins: usage > infra > kernel > tests failed > ok. */
export function overallExit(r: RunReport): number {
  if (r.interrupted) return EXIT.interrupted;
  const scenarioCode = (s: ScenarioOutcome) => (s.interrupted ? EXIT.interrupted : exitForOutcome(s.ok, s.fault));
  const codes = r.arches.flatMap((a) => [a.error?.exitCode ?? EXIT.ok, ...a.scenarios.map(scenarioCode)]);
  for (const c of [EXIT.interrupted, EXIT.usage, EXIT.infra, EXIT.kernelFailed, EXIT.testsFailed]) if (codes.includes(c)) return c;
  return EXIT.ok;
}
