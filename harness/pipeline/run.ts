// The main job, in the README's order: source -> patches -> config -> build
// -> guest image -> boot -> scenarios -> report. Every host-side artifact of
// an arch (kernel, modules, initramfs images, selftest staging) is made
// before its first guest boots; an arch's guests run alongside the next
// arch's build. This file only decides the order and what to keep.
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { ArchRecord } from '../core/arch.js';
import { cacheRoot } from '../core/cache.js';
import { checkInterrupted, guardRun, interruptReason, onCleanup, wasInterrupted } from '../proc/supervisor.js';
import { describeError, EXIT, exitCodeFor, HarnessError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { projectPath } from '../core/paths.js';
import { preflight } from '../core/preflight.js';
import { loadKeys, type Keys } from '../image/keys.js';
import type { KernelRecord } from '../kernel/kernels.js';
import { NO_PATCHES, readSeries } from '../kernel/patches.js';
import { DEFAULT_KERNEL_SRC, prepareSource } from '../kernel/source.js';
import { applyKnownFailures, type KnownFailures } from '../report/known-failures.js';
import { overallExit, type ArchReport, type BootReport, type RunReport, type ScenarioOutcome } from '../report/run-report.js';
import { writeReportFiles } from '../report/write.js';
import { DEFAULT_VCPUS, type Expectations, type PatchFeature, type Scenario } from '../scenarios/types.js';
import { binaryExpectations, expectationsOf } from './expectations.js';
import { probeLivepatch, skippedOutcome } from './livepatch-probe.js';
import { prepareBinaryArch, type BinaryArtifacts, type BinarySource } from './prepare-binary.js';
import { GuestPool, type GuestRequest } from '../vm/guest-pool.js';
import { DEFAULT_QEMU, qemuInstall, type QemuChoice } from '../vm/qemu-dist.js';
import type { FreshGuest } from '../vm/snapshot.js';
import { sshCommand } from '../vm/ssh.js';
import { runOnGuest } from './on-guest.js';
import { prepareArch, type ArchArtifacts, type Stage } from './prepare.js';
import { RunTimes } from './run-times.js';
import { defaultJobs, guestsInMemory, hostCapacity, Slots } from './slots.js';
import { ARTIFACTS } from '../report/result.js';

export type { Stage } from './prepare.js';

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
  /** Guests at once, over all arches (default: what the host's cores and memory hold; see slots.ts). */
  jobs?: number;
  /** false: every guest boots; default: guests after the first are restored from a snapshot of a booted one. */
  snapshots?: boolean;
  /** false: every restored guest gets a QEMU of its own; default: a finished guest's QEMU is reset in place (loadvm) for the next guest of its snapshot. */
  reuse?: boolean;
  /** Which QEMU runs the guests (vm/qemu-dist.ts; default DEFAULT_QEMU). */
  qemu?: QemuChoice;
  /** Config fragments (common.config + one per arch); default kconfigs/. */
  kconfigDir?: string;
  /** Fragments appended after those (a debug variant); the build gets its own directory. */
  kconfigExtra?: string[];
  /** The kernel record when the source is one of --kernel's (names it in reports; options it lacks). */
  kernel?: KernelRecord;
  /** A kernel not built here (--kernel debian-image:X.Y, --kernel-image): no source, no series, no build. */
  binary?: BinarySource & { line: string };
  logger: Logger;
  /** CPU models per arch to run the scenarios on; default: the arch's first. */
  cpus?: (arch: ArchRecord) => string[];
  /** Per-patch files the run demands (--require): a scenario that would skip for lack of one fails. */
  require?: PatchFeature[];
  /** Failures with a known cause (known-failures.json): reported as expected, they do not fail the run. */
  knownFailures?: KnownFailures;
  /** What was asked for before sharding (recorded so that `merge` can tell a missing shard). */
  selection?: RunReport['selection'];
}

/** One scenario on one CPU model: what one guest boots for. */
interface PlannedRun {
  scenario: Scenario;
  cpu: string;
}

/** A timestamp usable in a folder name. */
export const runStamp = () => new Date().toISOString().replace(/[:.]/g, '-');

/** Runs everything the options ask for; never throws for a kernel or test failure (see exitCode). */
export async function runMain(opts: RunOptions): Promise<RunReport> {
  const started = Date.now();
  const cacheDir = cacheRoot(opts.cacheDir);
  const outDir = resolve(opts.outDir ?? join(cacheDir, 'runs', runStamp()));
  mkdirSync(outDir, { recursive: true });
  opts.logger.tee(join(outDir, ARTIFACTS.log));
  const report: RunReport = {
    started: new Date(started).toISOString(),
    durationMs: 0,
    outDir,
    cacheDir,
    source: opts.binary
      ? { kernelSrc: opts.binary.name, patches: NO_PATCHES }
      : {
          kernelSrc: resolve(opts.kernelSrc ?? DEFAULT_KERNEL_SRC),
          patches: opts.patches === NO_PATCHES ? NO_PATCHES : resolve(opts.patches ?? projectPath('patches')),
        },
    arches: [],
    exitCode: EXIT.ok,
    selection: opts.selection,
    knownFailures: opts.knownFailures && { path: opts.knownFailures.path, entries: opts.knownFailures.entries.length },
  };
  for (const line of guardRun(cacheDir)) opts.logger.info(line);
  // However the run ends, an interrupted one leaves its reports: from here
  // when it unwinds, from the exit hook when something kept it from that.
  const planned = new Map(opts.arches.map((a) => [a.name, plannedRuns(a, opts)]));
  const finish = () => writeReports(report, planned, started, opts.knownFailures);
  const forgetHook = onCleanup(() => wasInterrupted() && finish());
  try {
    await runStages(opts, report);
  } catch (e) {
    if (wasInterrupted()) finish();
    throw e;
  } finally {
    forgetHook();
  }
  finish();
  return report;
}

/** The stages: source and patches once, then per arch its artifacts, then its guests. Fills report as it goes. */
async function runStages(opts: RunOptions, report: RunReport): Promise<void> {
  const { logger } = opts;
  logger.info(`run: artifacts in ${report.outDir}`);
  preflight(opts.arches);
  const { src, series } = opts.binary ? { src: { version: opts.binary.line, tree: '' }, series: readSeries(NO_PATCHES) } : await sourceStage(opts, report);
  const expect = expectationsOf(opts, src.version, series);
  logger.info(`expectations: ${expect.generation ? `generation record ${expect.generation.line} (force pins ${expect.generation.forcePins}, own signal after ${expect.generation.signalsTimeout} failed tries)` : expect.noGeneration}; per-patch files promised: ${Object.entries(expect.promised).map(([f, why]) => `${f} (${why})`).join(', ') || 'none'}${expect.required.length ? `; required: ${expect.required.join(', ')}` : ''}`);
  const keys = loadKeys(report.cacheDir);
  const initScript = readFileSync(projectPath('guest/init'), 'utf8');
  const rebuild = new Set(opts.rebuild ?? []);
  // Slots and kept QEMUs are both counted in guests of the largest arch's memory.
  const guestMiB = Math.max(...opts.arches.map((a) => a.qemu.memoryMiB));
  const slots = guestSlots(opts, report, guestMiB);
  const qemu = await qemuInstall(opts.qemu ?? DEFAULT_QEMU, report.cacheDir, logger, opts.arches);
  logger.info(`qemu: ${qemu.describe}`);
  // Paused QEMUs take memory, not CPU: as many as memory holds are kept (at least --jobs).
  const maxQemus = Math.max(slots.size, guestsInMemory(hostCapacity(), guestMiB));
  await using pool = new GuestPool({ cacheDir: report.cacheDir, logger, qemu, snapshots: opts.snapshots, reuse: opts.reuse, maxQemus });
  if (opts.snapshots !== false && opts.reuse !== false) logger.info(`guests: a finished guest's QEMU is paused and reset in place for the next guest of its snapshot; up to ${maxQemus} QEMUs at once, paused ones included (memory)`);

  // Kernel builds run one at a time; an arch's scenarios start as soon as its
  // artifacts are ready and run alongside the next build (or the other arch's VMs).
  const archRuns: Promise<void>[] = [];
  // Arches run side by side: each is owed slots in proportion to its work from the start (slots.ts),
  // also while it is still being built (on a cold cache the first arch's scenarios then run beside
  // the next build on their share: they are done long before it).
  // How long each scenario took here before: the order and the shares follow it (run-times.ts).
  const times = RunTimes.load(report.cacheDir);
  if (!opts.sequential && opts.arches.length > 1) for (const arch of opts.arches) slots.reserve(arch.name, workOf(times, arch, plannedRuns(arch, opts)));
  for (const arch of opts.arches) {
    const ar: ArchReport = { arch: arch.name, kernel: opts.kernel?.name, kernelVersion: src.version, boots: [], scenarios: [] };
    report.arches.push(ar);
    const archOut = join(report.outDir, arch.name);
    mkdirSync(archOut, { recursive: true });
    let artifacts: ArchArtifacts | BinaryArtifacts;
    try {
      artifacts = opts.binary
        ? await prepareBinaryArch({ arch, source: opts.binary, keys, initScript, cacheDir: report.cacheDir, rebuild, logger, scenarios: opts.scenarios })
        : await prepareArch({ arch, src: src as Parameters<typeof prepareArch>[0]['src'], keys, initScript, cacheDir: report.cacheDir, rebuild, logger, kconfigDir: opts.kconfigDir, kconfigExtra: opts.kconfigExtra, absentOptions: opts.kernel?.absentOptions, scenarios: opts.scenarios });
    } catch (e) {
      slots.release(arch.name);
      recordArchError(ar, e, logger);
      continue;
    }
    keepArtifacts(ar, artifacts, archOut);
    const binary = (artifacts as Partial<BinaryArtifacts>).kernel;
    if (binary) Object.assign(ar, { kernel: binary.label, kernelVersion: binary.version });
    const archExpect = binary ? binaryExpectations(expect, binary) : expect;
    const archRun = runGuests({ opts, arch, ar, archOut, artifacts, keys, tree: binary ? binary.buildDir : src.tree, cacheDir: report.cacheDir, slots, pool, expect: archExpect, times })
      .catch((e) => recordArchError(ar, e, logger))
      .finally(() => slots.release(arch.name))
      .finally(() => logger.status(arch.name, ar.error ? `stopped: ${ar.error.kind} error` : `done: ${ar.scenarios.filter((x) => x.ok).length}/${ar.scenarios.length} scenarios passed`));
    if (opts.sequential) await archRun;
    else archRuns.push(archRun);
  }
  await Promise.all(archRuns);
  times.save();
  if (report.jobs) report.jobs.peak = slots.peak;
}

/** The guest slots of a run: --jobs, or what the host holds. */
function guestSlots(opts: RunOptions, report: RunReport, guestMiB: number): Slots {
  const auto = opts.jobs ? undefined : defaultJobs(hostCapacity(), guestMiB);
  const size = opts.jobs ?? auto!.jobs;
  report.jobs = { size, peak: 0, chosen: auto?.why ?? '--jobs' };
  opts.logger.info(`guests: up to ${size} at once (${auto?.why ?? '--jobs'}); ${opts.snapshots === false ? 'each boots (--no-snapshot)' : 'restored from a snapshot of a booted guest'}`);
  return new Slots(size);
}

/** Unpacks the kernel source and applies the series (cached). */
async function sourceStage(opts: RunOptions, report: RunReport) {
  const { logger } = opts;
  const series = readSeries(report.source.patches);
  for (const a of opts.arches) logger.status(a.name, 'source: unpack and patch');
  const src = await prepareSource({ kernelSrc: report.source.kernelSrc, series, cacheDir: report.cacheDir, logger, rebuild: opts.rebuild?.includes('source') });
  for (const a of opts.arches) logger.status(a.name, 'waiting: one kernel build at a time');
  Object.assign(report.source, { reused: src.reused, durationMs: src.durationMs, tree: src.tree, treeKey: src.key, series: src.series, generation: src.generation });
  logger.info(`source: linux ${src.version} with ${series.patches.length} patch(es) ${src.reused ? 'reused from cache' : 'prepared'} (${src.tree})`);
  return { src, series };
}

/** Puts what was built into the arch's report and its folder. */
function keepArtifacts(ar: ArchReport, { build, image, modules }: ArchArtifacts, archOut: string): void {
  ar.build = { reused: build.reused, durationMs: build.durationMs, dir: build.buildDir, log: build.logPath, makeCommand: build.makeCommand };
  writeFileSync(join(archOut, 'make-command.txt'), build.makeCommand + '\n');
  // The kernel's build log stays with its build; the run keeps a copy (a reused build's is from when it was made).
  if (existsSync(build.logPath)) copyFileSync(build.logPath, join(archOut, 'build.log'));
  ar.image = { reused: image.reused, durationMs: image.durationMs, path: image.path, bytes: image.bytes };
  ar.modules = { reused: modules.reused, dir: modules.dir };
}

/** The arch failed as a whole (a build, a boot, an interrupt): its report says how. */
function recordArchError(ar: ArchReport, e: unknown, logger: Logger): void {
  const text = describeError(e);
  // After an interrupt, what failed (a killed make or QEMU) failed because of it.
  const kind = wasInterrupted() ? 'interrupted' : e instanceof HarnessError ? e.kind : 'infra';
  const message = wasInterrupted() ? `interrupted (${interruptReason()}): ${(e as Error).message}` : (e as Error).message;
  ar.error = { kind, message, report: text, exitCode: wasInterrupted() ? EXIT.interrupted : exitCodeFor(e) };
  logger.info(text);
}

interface ArchGuests {
  opts: RunOptions;
  arch: ArchRecord;
  ar: ArchReport;
  archOut: string;
  artifacts: ArchArtifacts | BinaryArtifacts;
  keys: Keys;
  tree: string;
  cacheDir: string;
  slots: Slots;
  pool: GuestPool;
  expect: Expectations;
  times: RunTimes;
}

/**
 * Every planned scenario on a pristine guest of its own (a forced transition
 * leaves a module that can never go), as many at once as the run's slots
 * allow, the longest first. A guest that died fails its scenario (with the
 * console excerpt); a guest that cannot be had (a failed boot) or is not the
 * arch asked for ends the arch: nothing more of it starts.
 */
async function runGuests(g: ArchGuests): Promise<void> {
  const { opts, arch, ar, artifacts } = g;
  const planned = plannedRuns(arch, opts);
  const accel = await g.pool.accelFor(arch);
  const wallStart = Date.now();
  const cannot = await cannotLivepatch(g, planned);
  if (cannot) {
    ar.scenarios.push(...planned.map((p) => skippedOutcome(p.scenario.name, arch.name, p.cpu, cannot)));
    ar.scenariosWallMs = Date.now() - wallStart;
    ar.accel = `${accel.accel}: ${accel.why}`;
    return;
  }
  let failure: { error: unknown } | undefined;
  const one = async (run: PlannedRun) => {
    if (failure) return;
    checkInterrupted();
    const { scenario, cpu } = run;
    // A scenario that does not apply to the arch is skipped from its record, without a guest.
    const notFor = scenario.notFor?.(arch);
    if (notFor) {
      opts.logger.info(`  ${arch.name}/${cpu} ${scenario.name}: skipped: ${notFor}`);
      ar.scenarios.push(skippedOutcome(scenario.name, arch.name, cpu, notFor));
      return;
    }
    // An inconclusive run (the kernel's own signal came before the lever) is run once more on a fresh guest.
    let last: ScenarioOutcome | undefined;
    const since = Date.now();
    for (let attempt = 1; attempt <= 2; attempt++) {
      opts.logger.status(arch.name, `guest: ${cpu} for ${scenario.name}`);
      const { booted, bootRec } = await guestFor(g, run);
      const first = last;
      try {
        await runOnGuest({
          arch, scenario, cpu, booted, build: artifacts.build, tree: g.tree, modules: artifacts.modules, logger: opts.logger, archOut: g.archOut, expect: g.expect,
          record: (sr) => {
            if (first) ar.scenarios.splice(ar.scenarios.indexOf(first), 1);
            sr.attempts = attempt;
            if (first?.inconclusive) sr.retried = `first run inconclusive: ${first.inconclusive}`;
            ar.scenarios.push((last = sr));
          },
        });
      } finally {
        bootRec.guestCommands = booted.ssh.commands;
        await booted[Symbol.asyncDispose]();
        bootRec.cpuMs = booted.cpu.usedMs;
      }
      if (!last?.inconclusive || attempt === 2) break;
      opts.logger.info(`scenario ${arch.name}/${cpu}: ${scenario.name} inconclusive (${last.inconclusive}); running it once more`);
    }
    // A run that passed at its first try is what the next run's order goes by (a failure may end early, a retry runs twice).
    if (last?.ok && last.attempts === 1) g.times.record(arch, run, Date.now() - since);
  };
  // A freed slot takes, of the runs left nearly as long as the longest (by the times measured
  // before), one whose snapshot has a paused QEMU waiting (reset in place: no new QEMU and no
  // first restore, the dearest way to a guest), else the longest. Takes are one at a time: each
  // sees the queue the one before left.
  const queue = longestFirst(g, planned);
  // Runs taken and not yet over (a retry included): their snapshots' paused QEMUs are still wanted.
  const inFlight = new Set<PlannedRun>();
  let taking = Promise.resolve<PlannedRun | undefined>(undefined);
  const take = () => (taking = taking.then(() => nextRun(g, queue, inFlight)));
  const taken = async () => {
    const run = (await take())!;
    try {
      await one(run);
    } finally {
      inFlight.delete(run);
    }
  };
  await Promise.all(planned.map(() => g.slots.use(taken, arch.name).catch((e: unknown) => void (failure ??= { error: e }))));
  // Reports list scenarios in the order they were asked for, not the order they ended.
  const order = (s: { name: string; cpu?: string }) => planned.findIndex((p) => p.scenario.name === s.name && p.cpu === s.cpu);
  ar.scenarios.sort((a, b) => order(a) - order(b));
  ar.scenariosWallMs = Date.now() - wallStart;
  ar.accel = `${accel.accel}: ${accel.why}`;
  if (failure) throw failure.error;
}

/** A kernel not built here may not livepatch at all: its first guest says so (why not), and then no scenario boots. */
async function cannotLivepatch(g: ArchGuests, planned: PlannedRun[]): Promise<string | undefined> {
  const binary = (g.artifacts as Partial<BinaryArtifacts>).kernel;
  if (!binary || !planned.length) return undefined;
  const guest = async () => (await guestFor(g, { scenario: PROBE, cpu: planned[0]!.cpu })).booted;
  return (await g.slots.use(() => probeLivepatch({ arch: g.arch, kernel: binary, logger: g.opts.logger, guest }), g.arch.name)).skip;
}

/** What the first guest of a kernel not built here boots for: to ask whether it can livepatch. */
const PROBE: Scenario = { name: 'livepatch-probe', description: 'is there /sys/kernel/livepatch?', run: async () => {} };

/** Longest expected first (a long scenario started last would end the run alone); otherwise as planned. */
const longestFirst = (g: Pick<ArchGuests, 'arch' | 'times'>, runs: PlannedRun[]) => [...runs].sort((a, b) => g.times.expectedMs(g.arch, b) - g.times.expectedMs(g.arch, a));

/**
 * How much shorter than the longest run left a run may be and still go
 * first because its guest would be a reset in place: about what a new
 * QEMU's first restore costs a loaded host in wall time (1-2 s), and no
 * more than a fifth of the longest (the order matters most at the end,
 * where the runs left are short).
 */
export const resetSlackMs = (longestMs: number) => Math.min(2000, longestMs / 5);

/**
 * Takes the next run off the queue (longest first): of the runs nearly as
 * long as the first (resetSlackMs), the first whose guest would be a reset
 * in place, else the first. A longer run never waits for much shorter ones
 * that would reset in place (the selftests, on a snapshot of their own, ran
 * last and alone).
 */
async function nextRun(g: ArchGuests, queue: PlannedRun[], inFlight: Set<PlannedRun>): Promise<PlannedRun | undefined> {
  let pick = 0;
  const expected = (r: PlannedRun) => g.times.expectedMs(g.arch, r);
  const longest = queue.length ? expected(queue[0]!) : 0;
  const atLeast = longest - resetSlackMs(longest);
  for (let i = 0; i < queue.length && expected(queue[i]!) >= atLeast; i++) {
    if (await g.pool.resetWaiting(guestRequest(g, queue[i]!, '', ''))) {
      pick = i;
      break;
    }
  }
  const next = queue.splice(pick, 1)[0];
  // The arch's share of the slots follows the work it has still to start; none left, the others have it.
  if (queue.length) g.slots.reserve(g.arch.name, workOf(g.times, g.arch, queue));
  else g.slots.release(g.arch.name);
  if (next) inFlight.add(next);
  // Paused QEMUs of snapshots no run taken or left wants stop before this run's guest starts (it may start a QEMU: their memory is the cheapest it can get).
  const runs = (rs: PlannedRun[]) => rs.filter((r) => !r.scenario.notFor?.(g.arch)).map((r) => guestRequest(g, r, '', ''));
  await g.pool.expect(g.arch.name, runs([...inFlight, ...queue]), runs(queue));
  return next;
}

/** What a planned run's guest is asked for. */
function guestRequest(g: ArchGuests, { scenario, cpu }: PlannedRun, consoleLog: string, commandFile: string): GuestRequest {
  const initrd = g.artifacts.images.get(scenario.image ?? 'base')!.path;
  return { arch: g.arch, kernel: g.artifacts.build.image, initrd, keys: g.keys, consoleLog, commandFile, cpu, smp: scenario.vcpus ?? DEFAULT_VCPUS, extraAppend: scenario.kernelArgs ? [...scenario.kernelArgs(g.arch)] : undefined };
}

/** A pristine guest for one planned run (restored, or booted), recorded in the arch's report. */
async function guestFor(g: ArchGuests, { scenario, cpu }: PlannedRun): Promise<{ booted: FreshGuest; bootRec: BootReport }> {
  const { arch, keys, opts } = g;
  const label = `${scenario.name}-${cpu}`;
  const consoleLog = join(g.archOut, `console-${label}.log`);
  const bootRec: BootReport = { cpu, scenario: scenario.name, consoleLog };
  g.ar.boots.push(bootRec);
  const commandFile = join(g.archOut, `qemu-command-${label}.txt`);
  const booted = await g.pool.guest(guestRequest(g, { scenario, cpu }, consoleLog, commandFile));
  bootRec.readyMs = booted.readyMs;
  bootRec.readyCpuMs = booted.cpu.atReadyMs;
  if (booted.restored) bootRec.restoredFrom = booted.restored.snapshot;
  if (booted.restored?.inPlace) bootRec.resetInPlace = booted.restored.inPlace;
  if (booted.restored) bootRec.restoreCpuMs = { running: booted.restored.cpuAtRunning, connected: booted.restored.cpuAtConnected };
  if (booted.snapshotProblem) bootRec.snapshotProblem = booted.snapshotProblem;
  if (booted.stalled.length) bootRec.stalledConsoleLogs = booted.stalled;
  bootRec.qemuCommand = booted.vm.command;
  const how = booted.restored?.inPlace ? `reset in place (QEMU pid ${booted.restored.inPlace.pid}, its guest ${booted.restored.inPlace.guest})` : booted.restored ? 'restored' : 'booted';
  opts.logger.info(`guest ${arch.name}/${cpu} for ${scenario.name}: ${how}, SSH up after ${(booted.readyMs / 1000).toFixed(2)} s (${sshCommand(keys, booted.port)})`);
  return { booted, bootRec };
}

/** Runs' work in expected milliseconds on the arch, for its share of the slots: ppc64le's scenarios take longer. */
const workOf = (times: RunTimes, arch: ArchRecord, runs: PlannedRun[]) => runs.reduce((n, r) => n + times.expectedMs(arch, r), 0);

/** The (scenario, CPU) pairs an arch is to run, in order. */
function plannedRuns(arch: ArchRecord, opts: RunOptions): PlannedRun[] {
  const cpuChoice = opts.cpus?.(arch) ?? [...arch.qemu.cpuModels];
  return opts.scenarios.flatMap((scenario) => (scenario.allCpus ? cpuChoice : cpuChoice.slice(0, 1)).map((cpu) => ({ scenario, cpu })));
}

/**
 * Writes summary.json, junit.xml, ktap.txt and report.html. After an interrupt every planned
 * scenario without a report gets one marked interrupted, so the reports say
 * what finished and what did not.
 */
function writeReports(report: RunReport, planned: Map<string, PlannedRun[]>, started: number, known?: KnownFailures): void {
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
  applyKnownFailures(report, known);
  report.exitCode = overallExit(report);
  writeReportFiles(report);
}
