// One scenario on one freshly booted guest: check the guest is the arch it
// should be, run the scenario, keep its dmesg and blocking tasks.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ArchRecord } from '../core/arch.js';
import { wasInterrupted } from '../proc/supervisor.js';
import { HarnessError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { timeout } from '../core/timeouts.js';
import type { BuildResult } from '../kernel/build.js';
import type { ModulesResult } from '../kernel/modules.js';
import type { ScenarioOutcome } from '../report/run-report.js';
import { runScenario } from '../scenarios/runner.js';
import type { Expectations, Scenario } from '../scenarios/types.js';
import type { Booted } from '../vm/boot.js';
import { GuestOps } from '../vm/guestops.js';

export interface GuestRun {
  arch: ArchRecord;
  scenario: Scenario;
  cpu: string;
  booted: Booted;
  build: BuildResult;
  tree: string;
  modules: ModulesResult;
  logger: Logger;
  expect: Expectations;
  /** Where dmesg-<label>.txt and blocking-tasks-<label>.txt go. */
  archOut: string;
  /** Called with the outcome as soon as the scenario ends (before dmesg is fetched), so an interrupt's reports have it. */
  record: (sr: ScenarioOutcome) => void;
}

/** Runs the scenario on the guest and records its outcome; throws only when the guest is not the arch asked for. */
export async function runOnGuest(g: GuestRun): Promise<void> {
  const { arch, scenario, cpu, booted, logger } = g;
  const label = `${scenario.name}-${cpu}`;
  const ops = new GuestOps(booted.ssh, timeout('guestCommand', arch), booted.vm);
  const uname = await ops.machine();
  if (uname !== arch.unameMachine) throw new HarnessError('boot', `guest reports uname -m '${uname}', expected '${arch.unameMachine}'`, { arch: arch.name });
  logger.info(`scenario ${arch.name}/${cpu}: ${scenario.name}`);
  const sr: ScenarioOutcome = await runScenario(scenario, { arch, ops, build: g.build, tree: g.tree, modules: g.modules, vm: booted.vm, logger, expect: g.expect }, cpu);
  if (wasInterrupted()) sr.interrupted = true;
  g.record(sr);
  // A guest that died, hung or was stopped has no dmesg to give (its console log has the story);
  // any other gets the usual command deadline.
  const dmesg = sr.fault || sr.interrupted ? undefined : await ops.dmesg().catch(() => undefined);
  if (dmesg !== undefined) writeFileSync(join(g.archOut, `dmesg-${label}.txt`), dmesg);
  if (sr.diagnosis) writeFileSync(join(g.archOut, `blocking-tasks-${label}.txt`), sr.diagnosis + '\n');
  logger.info(`scenario ${arch.name}/${cpu}: ${scenario.name} ${sr.ok ? 'passed' : 'FAILED'} in ${(sr.durationMs / 1000).toFixed(1)} s`);
  if (!sr.ok && sr.error) logger.info(sr.error);
}
