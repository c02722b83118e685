// What a scenario is and what it reports: named steps, each with checks that
// compare a reading from the guest with what was expected.
import type { ArchRecord } from '../core/arch.js';
import { HarnessError } from '../core/errors.js';
import type { BuildResult } from '../kernel/build.js';
import type { GuestOps } from '../vm/guestops.js';
import type { Logger } from '../core/log.js';
import type { ModulesResult } from '../kernel/modules.js';
import type { QemuVM } from '../vm/qemu.js';
import type { Generation, PatchFile } from '../kernel/kernels.js';

export interface Check {
  what: string;
  /** The expected value, or for a pattern or bound check a description of it ("<= 3.0 s"). */
  expected: string;
  actual: string;
  ok: boolean;
  /** Set for a pattern check: the reading must match this regular expression. */
  pattern?: { source: string; flags: string };
  /** Set for a bound check: the measured number, its limit and their unit. */
  measured?: { value: number; limit: number; unit: Unit; bound: 'atMost' | 'atLeast' };
}

/** Units of a measured check; times are milliseconds, shown as seconds. */
export type Unit = 'ms' | 'count';

export interface StepReport {
  name: string;
  checks: Check[];
  durationMs: number;
  /** The guest's QEMU CPU (user + system, from /proc on the host) spent during the step. */
  qemuCpuMs?: number;
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
  /** What happened when, on the guest's clock (uptime ms): loads, levers, ends. */
  timeline?: TimelineEvent[];
  /** Readings sampled over time on the guest's clock (transition, a blocker's patch_state). */
  series?: { name: string; points: { atMs: number; value: string }[] }[];
  /** Set when the kernel lacks a file the scenario needs and the run's inputs do not promise it: why it was not run (ok stays true). */
  skipped?: string;
  /** What the scenario could not check, and why (an optional lever the inputs do not promise, no generation record). */
  unchecked?: string[];
  /** Set when a verdict could not be reached for a reason that is not the kernel's (the kernel's own signal came first); the scenario is run again once. */
  inconclusive?: string;
  /** Runs it took (2 after an inconclusive first run). */
  attempts?: number;
  /** Why the first run did not count (set on the second run). */
  retried?: string;
  /** Set when the scenario did not fail on a check but because the kernel ('kernel') or the host ('infra') failed. */
  fault?: 'kernel' | 'infra' | 'usage';
}

export interface TimelineEvent {
  /** Guest uptime in ms. */
  atMs: number;
  what: string;
}

/** What a scenario's host-side preparation gets: the built kernel, before any guest boots. */
export type HostContext = Pick<ScenarioContext, 'arch' | 'build' | 'tree' | 'modules' | 'logger'>;

/**
 * What the run's inputs say the kernel under test must do: the expectations
 * of its verdicts, never read from the tree under test or the guest.
 */
export interface Expectations {
  /** The record of what upstream's code of this kernel generation does; undefined when we keep none for it. */
  generation?: Generation;
  /** Why there is no generation record (e.g. "no record for linux 4.19"). */
  noGeneration?: string;
  /** Per-patch files the inputs promise, each with where the promise comes from. */
  promised: Partial<Record<PatchFeature, string>>;
  /** Files the run demands (--require): absent is a failure, never a skip. */
  required: PatchFeature[];
  /** Taint flags the inputs explain besides K and O (a kernel that checks signatures taints E for our unsigned modules), and why. */
  explainedTaint?: { mask: number; why: string };
  /** Set when the kernel under test comes without livepatch-sample.ko (a binary kernel built without samples): why. */
  noSampleModule?: string;
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
  /** Copies host files into the guest in one command and returns their guest paths, in order. */
  copyInAll(hostPaths: readonly string[]): Promise<string[]>;
  /** Records a moment on the guest's clock for the report's timeline. */
  event(what: string, atMs: number): void;
  /** Records readings over time (guest clock) for the report's timeline. */
  series(name: string, points: { atMs: number; value: string }[]): void;
  /** The CPU model the guest runs on. */
  cpu?: string;
  /** The run's expectations (generation record, promised and required files). */
  expect: Expectations;
  /**
   * Once a patch is loaded: for each file in the scenario's `needs` that
   * sysfs lacks, fails the scenario when the inputs promise it (or
   * --require names it), else ends it as skipped, saying why.
   */
  requireFeatures(patch: string): Promise<void>;
  /**
   * Whether an optional per-patch file (`uses`) is there. Absent but
   * promised or required: a failed check recorded now, the scenario goes on
   * and fails at its end. Absent and not promised: false, and noted as not
   * checked with `what`.
   */
  has(patch: string, file: PatchFeature, what: string): Promise<boolean>;
  /** Notes something the scenario could not check, and why. */
  unchecked(what: string): void;
}

/** Per-patch sysfs files a scenario may need beyond enabled/transition. */
export type PatchFeature = PatchFile;

/** What a write to a sysfs or debugfs file did: accepted, or the kernel's error text. */
export interface WriteOutcome {
  ok: boolean;
  error: string;
}

export interface StepApi {
  /** Records a check of a guest reading; returns whether it held. */
  equal(what: string, actual: string | number | boolean, expected: string | number | boolean): boolean;
  match(what: string, actual: string, re: RegExp): boolean;
  /** A measured number that must not exceed `limit` (e.g. remedy->done 11.8 s, limit 3.0 s). */
  atMost(what: string, value: number, limit: number, unit: Unit): boolean;
  atLeast(what: string, value: number, limit: number, unit: Unit): boolean;
  /** The write was accepted ("accepted"), else the check shows the kernel's error text. */
  accepted(what: string, w: WriteOutcome): boolean;
  /** The write was refused with this error text (e.g. "Invalid argument"). */
  refused(what: string, w: WriteOutcome, error: string): boolean;
}

/**
 * A scenario's guest has one vCPU unless it asks for more: under software
 * emulation a second vCPU doubles what a guest's forks, module loads and
 * transitions cost (TLB shootdowns, code patching and RCU waits between two
 * emulated CPUs). Measured here, alone: the upstream selftests on x86_64
 * 91 s and 54 s of QEMU CPU with two, 25 s and 23 s with one; the x86_64
 * matrix 45 s of QEMU CPU with two, 26 s with one, every verdict the same.
 */
export const DEFAULT_VCPUS = 1;

export interface Scenario {
  name: string;
  description: string;
  /** Run once per CPU model of the arch (e.g. power8 and power9), not only the first. */
  allCpus?: boolean;
  /** Each check is a test case of its own in JUnit (the upstream selftests). */
  casesAreChecks?: boolean;
  /** About how long it takes on x86_64 (the scheduler starts long ones first). */
  expectedSeconds?: number;
  /** The guest image it needs; default the small base image. */
  image?: 'base' | 'kselftest';
  /**
   * vCPUs of its guests: DEFAULT_VCPUS unless it needs a task running on
   * another CPU while the kernel tries to switch it (2). A restored pseries
   * guest has one whatever this says (the arch record's restoreLimits).
   */
  vcpus?: number;
  /** How the scenario makes its transition stick; `klp-harness repro` stops there. */
  stuck?: StuckSetup;
  /** Per-patch files it cannot do without; absent: a failure when the inputs promise them, else a skip. */
  needs?: PatchFeature[];
  /** Per-patch files it writes when there (checked with ctx.has); absent and not promised: noted as not checked. */
  uses?: PatchFeature[];
  /** Words its guests' kernel command line gets besides the usual ones (e.g. no_rfi_flush). */
  kernelArgs?(arch: ArchRecord): readonly string[];
  /** Why it does not apply to an arch (from the arch record), if it does not: skipped before any guest starts. */
  notFor?(arch: ArchRecord): string | undefined;
  /** Host-side artifacts it needs (cached), made before any guest of the run boots. */
  prepare?(host: HostContext): Promise<void>;
  /** A failed preparation ends the arch with its error (bad input found before any boot), instead of being left to the scenario. */
  prepareFailsRun?: boolean;
  run(ctx: ScenarioContext): Promise<void>;
}

/** A transition made to stick on purpose: which blocker, and in which direction. */
export interface StuckSetup {
  blocker: 'user-int' | 'user-idle' | 'user-killable' | 'kthread-int' | 'kthread-idle' | 'kthread-loop';
  /**
   * patching: the blocker sleeps in the original function while the patch
   * loads; unpatching: in the new one while it is disabled; replacing: in
   * the first patch's function while an atomic-replace patch loads.
   */
  direction: 'patching' | 'unpatching' | 'replacing';
  /** A user blocker whose read is made by the second thread of a process, its leader running ('busy') or asleep elsewhere ('sleep'). */
  thread?: 'busy' | 'sleep';
}

/** A check of a guest reading did not hold: the 'assertion' kind of the error table. */
export class CheckFailed extends HarnessError {
  constructor(message: string) {
    super('assertion', message);
  }
}

/** Thrown when the kernel under test lacks what a scenario needs; the message says what. */
export class Skipped extends Error {}

/** Thrown when no verdict can be reached for a reason that is not the kernel's; the scenario runs once more. */
export class Inconclusive extends Error {}
