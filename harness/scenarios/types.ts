// What a scenario is and what it reports: named steps, each with checks that
// compare a reading from the guest with what was expected.
import type { ArchRecord } from '../arch.js';
import type { BuildResult } from '../build.js';
import type { GuestOps } from '../guestops.js';
import type { Logger } from '../log.js';
import type { ModulesResult } from '../modules.js';
import type { QemuVM } from '../qemu.js';

export interface Check {
  what: string;
  /** The expected value, or for a pattern check a description of it. */
  expected: string;
  actual: string;
  ok: boolean;
  /** Set for a pattern check: the reading must match this regular expression. */
  pattern?: { source: string; flags: string };
}

export interface StepReport {
  name: string;
  checks: Check[];
  durationMs: number;
  error?: string;
}

export interface ScenarioReport {
  name: string;
  arch: string;
  cpu?: string;
  ok: boolean;
  steps: StepReport[];
  durationMs: number;
  /** Named timings (e.g. stuckSeenMs, remedyToDoneMs). */
  timings: Record<string, number>;
  error?: string;
  /** Tasks that blocked the transition when a wait failed. */
  diagnosis?: string;
  /** Copied from the scenario: each check is a JUnit test case. */
  casesAreChecks?: boolean;
  /** Set when the scenario did not fail on a check but because the kernel ('kernel') or the host ('infra') failed. */
  fault?: 'kernel' | 'infra';
}

export interface ScenarioContext {
  arch: ArchRecord;
  ops: GuestOps;
  build: BuildResult;
  /** The patched kernel source tree. */
  tree: string;
  modules: ModulesResult;
  vm: QemuVM;
  logger: Logger;
  /** Runs one step; checks recorded inside it; a failed check ends the scenario. */
  step(name: string, fn: (s: StepApi) => Promise<void>): Promise<void>;
  timing(name: string, ms: number): void;
  /** Copies a host file into the guest and returns the guest path. */
  copyIn(hostPath: string): Promise<string>;
}

export interface StepApi {
  /** Records a check of a guest reading; returns whether it held. */
  equal(what: string, actual: string, expected: string): boolean;
  match(what: string, actual: string, re: RegExp): boolean;
}

export interface Scenario {
  name: string;
  description: string;
  /** Run once per CPU model of the arch (e.g. power8 and power9), not only the first. */
  allCpus?: boolean;
  /** Each check is a test case of its own in JUnit (the upstream selftests). */
  casesAreChecks?: boolean;
  /** The guest image it needs; default the small base image. */
  image?: 'base' | 'kselftest';
  run(ctx: ScenarioContext): Promise<void>;
}

export class CheckFailed extends Error {}
