// The main job: source -> patches -> config -> build -> guest image -> boot
// -> scenarios -> report, per arch. Each stage is a function with a typed
// request and result; this file only decides the order and what to keep.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ArchRecord } from './arch.js';
import { bootGuest } from './boot.js';
import { buildKernel, type BuildResult } from './build.js';
import { cacheRoot } from './cache.js';
import { exitCodeFor, EXIT, HarnessError } from './errors.js';
import { GuestOps } from './guestops.js';
import { buildImage } from './image.js';
import { buildGuestModules } from './modules.js';
import { loadKeys } from './keys.js';
import type { Logger } from './log.js';
import { readSeries } from './patches.js';
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
  logger: Logger;
  /** CPU models per arch to run the scenarios on; default: the arch's first. */
  cpus?: (arch: ArchRecord) => string[];
  qemuBinary?: string;
}

export interface ArchReport {
  arch: string;
  kernelVersion?: string;
  build?: { reused: boolean; durationMs: number; dir: string; log: string; makeCommand: string };
  image?: { reused: boolean; durationMs: number; path: string; bytes: number };
  modules?: { reused: boolean; dir: string };
  boots: { cpu: string; scenario: string; bootMs?: number; qemuCommand?: string; consoleLog: string }[];
  scenarios: ScenarioReport[];
  error?: { kind: string; message: string; report: string; exitCode: number };
}

export interface RunReport {
  started: string;
  durationMs: number;
  outDir: string;
  cacheDir: string;
  source: { kernelSrc: string; patches: string; reused?: boolean; durationMs?: number; tree?: string; treeKey?: string };
  arches: ArchReport[];
  exitCode: number;
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
  const patchesDir = resolve(opts.patches ?? join(PROJECT_ROOT, 'patches'));
  const report: RunReport = {
    started: new Date(started).toISOString(),
    durationMs: 0,
    outDir,
    cacheDir,
    source: { kernelSrc, patches: patchesDir },
    arches: [],
    exitCode: EXIT.ok,
  };
  const rebuild = new Set(opts.rebuild ?? []);
  opts.logger.info(`run: artifacts in ${outDir}`);

  const series = readSeries(patchesDir);
  const src = await prepareSource({ kernelSrc, series, cacheDir, logger: opts.logger, rebuild: rebuild.has('source') });
  Object.assign(report.source, { reused: src.reused, durationMs: src.durationMs, tree: src.tree, treeKey: src.key });
  opts.logger.info(`source: linux ${src.version} with ${series.patches.length} patch(es) ${src.reused ? 'reused from cache' : 'prepared'} (${src.tree})`);

  const keys = loadKeys(cacheDir);
  const initScript = readFileSync(join(PROJECT_ROOT, 'guest/init'), 'utf8');

  for (const arch of opts.arches) {
    const ar: ArchReport = { arch: arch.name, kernelVersion: src.version, boots: [], scenarios: [] };
    report.arches.push(ar);
    const archOut = join(outDir, arch.name);
    mkdirSync(archOut, { recursive: true });
    try {
      const build: BuildResult = await buildKernel({
        arch,
        tree: src.tree,
        treeKey: src.key,
        kconfigDir: join(PROJECT_ROOT, 'kconfigs'),
        cacheDir,
        logger: opts.logger,
        rebuild: rebuild.has('build'),
      });
      ar.build = { reused: build.reused, durationMs: build.durationMs, dir: build.buildDir, log: build.logPath, makeCommand: build.makeCommand };
      writeFileSync(join(archOut, 'make-command.txt'), build.makeCommand + '\n');
      opts.logger.info(`build ${arch.name}: ${build.reused ? 'reused' : 'built'} in ${(build.durationMs / 1000).toFixed(1)} s`);

      const image = await buildImage({ arch, cacheDir, initScript, keys, logger: opts.logger, rebuild: rebuild.has('image') });
      ar.image = { reused: image.reused, durationMs: image.durationMs, path: image.path, bytes: image.bytes };

      const modules = await buildGuestModules({ arch, build, tree: src.tree, sourceDir: join(PROJECT_ROOT, 'guest/modules'), logger: opts.logger });
      ar.modules = { reused: modules.reused, dir: modules.dir };

      const cpuChoice = opts.cpus?.(arch) ?? [...arch.qemu.cpuModels];
      for (const scenario of opts.scenarios) {
        // Every scenario gets a freshly booted guest: a forced transition leaves a module that can never go.
        for (const cpu of scenario.allCpus ? cpuChoice : cpuChoice.slice(0, 1)) {
          const label = `${scenario.name}-${cpu}`;
          const consoleLog = join(archOut, `console-${label}.log`);
          const bootRec: ArchReport['boots'][number] = { cpu, scenario: scenario.name, consoleLog };
          ar.boots.push(bootRec);
          const booted = await bootGuest({ arch, kernel: build.image, initrd: image.path, keys, consoleLog, logger: opts.logger, cpu, qemuBinary: opts.qemuBinary });
          bootRec.bootMs = booted.bootMs;
          bootRec.qemuCommand = booted.vm.command;
          writeFileSync(join(archOut, `qemu-command-${label}.txt`), booted.vm.command + '\n');
          opts.logger.info(`boot ${arch.name}/${cpu}: SSH up after ${(booted.bootMs / 1000).toFixed(1)} s (${sshCommand(keys, booted.port)})`);
          try {
            const ops = new GuestOps(booted.ssh, timeout('guestCommand', arch));
            const uname = (await ops.must('uname -m')).trim();
            if (uname !== arch.unameMachine) throw new HarnessError('boot', `guest reports uname -m '${uname}', expected '${arch.unameMachine}'`, { arch: arch.name });
            opts.logger.info(`scenario ${arch.name}/${cpu}: ${scenario.name}`);
            const sr = await runScenario(scenario, { arch, ops, build, modules, vm: booted.vm, logger: opts.logger }, cpu);
            ar.scenarios.push(sr);
            const dmesg = await booted.ssh.exec('dmesg').catch(() => undefined);
            if (dmesg) writeFileSync(join(archOut, `dmesg-${label}.txt`), dmesg.stdout);
            if (sr.diagnosis) writeFileSync(join(archOut, `blocking-tasks-${label}.txt`), sr.diagnosis + '\n');
            opts.logger.info(`scenario ${arch.name}/${cpu}: ${scenario.name} ${sr.ok ? 'passed' : 'FAILED'} in ${(sr.durationMs / 1000).toFixed(1)} s`);
            if (!sr.ok && sr.error) opts.logger.info(sr.error);
            if (!booted.vm.running) {
              throw new HarnessError('boot', `QEMU for ${arch.name} exited during scenario ${scenario.name}`, {
                arch: arch.name,
                consoleTail: booted.vm.console.last(40),
                logPath: consoleLog,
                details: booted.vm.exit?.stderr,
              });
            }
          } finally {
            booted.ssh.close();
            await booted.vm.stop();
          }
        }
      }
    } catch (e) {
      const code = exitCodeFor(e);
      const text = e instanceof HarnessError ? e.report() : String((e as Error)?.stack ?? e);
      ar.error = { kind: e instanceof HarnessError ? e.kind : 'infra', message: (e as Error).message, report: text, exitCode: code };
      opts.logger.info(text);
    }
  }
  report.durationMs = Date.now() - started;
  report.exitCode = overallExit(report);
  writeFileSync(join(outDir, 'summary.json'), JSON.stringify(report, null, 2) + '\n');
  return report;
}

/** A command a person can paste into a second terminal to reach the guest. */
export function sshCommand(keys: { clientPrivatePath: string; knownHostsPath: string }, port: number): string {
  return `ssh -i ${keys.clientPrivatePath} -p ${port} -o UserKnownHostsFile=${keys.knownHostsPath} -o HostKeyAlias=klp-harness-guest root@127.0.0.1`;
}

/** The most serious outcome wins: usage > infra > kernel > tests failed > ok. */
export function overallExit(r: RunReport): number {
  const codes = r.arches.map((a) => a.error?.exitCode ?? (a.scenarios.every((s) => s.ok) ? EXIT.ok : EXIT.testsFailed));
  for (const c of [EXIT.interrupted, EXIT.usage, EXIT.infra, EXIT.kernelFailed, EXIT.testsFailed]) if (codes.includes(c)) return c;
  return EXIT.ok;
}
