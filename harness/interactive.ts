// `klp-harness repro` and `klp-harness shell`: boot one guest for a person,
// optionally leave a scenario's transition stuck, then hand over a real
// shell in the guest. Leaving the shell stops the VM.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ArchRecord } from './arch.js';
import { bootGuest } from './boot.js';
import { cacheRoot } from './cache.js';
import { guardRun } from './children.js';
import { EXIT, usageError } from './errors.js';
import { GuestOps, LP_SYSFS } from './guestops.js';
import { loadKeys } from './keys.js';
import type { Logger } from './log.js';
import { readSeries } from './patches.js';
import { prepareArch, PROJECT_ROOT, sshCommand } from './pipeline.js';
import { preflight } from './preflight.js';
import { initialOf, pendingPatchOf, reachStuck, STUCK_NAMES, stuckSetupOf } from './scenarios/matrix.js';
import { runScenario } from './scenarios/runner.js';
import { blockingTasks, formatBlocking, Sleeper } from './scenarios/sleeper.js';
import { DEFAULT_KERNEL_SRC, prepareSource } from './source.js';
import { timeout } from './timeouts.js';

export interface InteractiveOptions {
  arch: ArchRecord;
  /** Set for repro: the scenario whose stuck state to set up. */
  scenario?: string;
  kernelSrc?: string;
  patches?: string;
  kconfigDir?: string;
  kconfigExtra?: string[];
  cacheDir?: string;
  cpu?: string;
  logger: Logger;
  print?: (s: string) => void;
}

export async function runInteractive(o: InteractiveOptions): Promise<number> {
  const print = o.print ?? ((s: string) => process.stdout.write(s + '\n'));
  const setup = o.scenario === undefined ? undefined : stuckSetupOf(o.scenario);
  if (o.scenario !== undefined && !setup) {
    throw usageError(`scenario '${o.scenario}' has no stuck state to reproduce`, { hint: `use one of: ${STUCK_NAMES().join(', ')}` });
  }
  const cacheDir = cacheRoot(o.cacheDir);
  for (const line of guardRun(cacheDir)) o.logger.info(line);
  preflight([o.arch]);
  const logger = o.logger;
  const series = readSeries(o.patches ?? join(PROJECT_ROOT, 'patches'));
  const src = await prepareSource({ kernelSrc: o.kernelSrc ?? DEFAULT_KERNEL_SRC, series, cacheDir, logger });
  const keys = loadKeys(cacheDir);
  const initScript = readFileSync(join(PROJECT_ROOT, 'guest/init'), 'utf8');
  const { build, image, modules } = await prepareArch({ arch: o.arch, src, keys, initScript, cacheDir, logger, kconfigDir: o.kconfigDir, kconfigExtra: o.kconfigExtra });
  const outDir = join(cacheDir, 'runs', `${new Date().toISOString().replace(/[:.]/g, '-')}-${o.scenario ? 'repro' : 'shell'}`);
  mkdirSync(outDir, { recursive: true });
  const consoleLog = join(outDir, `console-${o.arch.name}.log`);
  const booted = await bootGuest({ arch: o.arch, kernel: build.image, initrd: image.path, keys, consoleLog, logger, cpu: o.cpu });
  try {
    const ops = new GuestOps(booted.ssh, timeout('guestCommand', o.arch), booted.vm);
    for (const ko of [...Object.values(modules.modules), join(build.buildDir, 'samples/livepatch/livepatch-sample.ko')]) {
      await ops.put(readFileSync(ko), `/root/${ko.split('/').pop()}`);
    }
    // From here on this process prints to the terminal directly; the live list would overdraw it.
    logger.endLive();
    print(`Guest ${o.arch.name} is up (console: ${consoleLog}). Modules in /root: klp_sleeper.ko klp_sleeper_lp.ko klp_sleeper_lp_replace.ko livepatch-sample.ko`);
    if (setup && o.scenario) {
      const stuck = setup;
      const report = await runScenario(
        { name: `repro-${o.scenario}`, description: '', run: (ctx) => reachStuck(ctx, new Sleeper(ctx), stuck).then(() => {}) },
        { arch: o.arch, ops, build, tree: src.tree, modules, vm: booted.vm, logger },
        o.cpu,
      );
      if (!report.ok) print(`Setting up the stuck state did not go as expected:\n${report.error ?? ''}`);
      const tasks = await blockingTasks(ops, initialOf(setup));
      const patch = pendingPatchOf(setup);
      print(`\nThe ${setup.direction} transition of ${patch} is pending. Blocking: ${formatBlocking(tasks)}`);
      print(`Poke it from the shell below:`);
      for (const f of ['transition', 'enabled', 'signal', 'force']) print(`  ${LP_SYSFS}/${patch}/${f}`);
      print(`  e.g. echo 1 > ${LP_SYSFS}/${patch}/signal; cat ${LP_SYSFS}/${patch}/transition`);
      print(`  per task: cat /proc/<pid>/patch_state /proc/<pid>/stack; blockers: cat /sys/kernel/debug/klp_sleeper/status`);
    }
    print(`From a second terminal: ${sshCommand(keys, booted.port)}`);
    print(`Leaving this shell (exit or Ctrl-D) stops the VM.\n`);
    await booted.ssh.interactive();
    return EXIT.ok;
  } finally {
    booted.ssh.close();
    await booted.vm.stop();
    print(`VM stopped. Console log: ${consoleLog}`);
  }
}
