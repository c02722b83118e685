// What a run reports: per arch its build, image, boots and scenario outcomes.
// Every report format (summary, JUnit, KTAP, HTML, trend, merge) reads these.
import { EXIT, exitForOutcome } from '../core/errors.js';
import type { ScenarioReport } from '../scenarios/types.js';
import type { KnownOutcome } from './known-failures.js';

export interface ArchReport {
  arch: string;
  /** The --kernel name (debian:6.12) when the run was given one. */
  kernel?: string;
  kernelVersion?: string;
  build?: { reused: boolean; durationMs: number; dir: string; log: string; makeCommand: string };
  image?: { reused: boolean; durationMs: number; path: string; bytes: number };
  modules?: { reused: boolean; dir: string };
  /** The accelerator the arch's guests used, and why (vm/accel.ts). */
  accel?: string;
  boots: BootReport[];
  scenarios: ScenarioOutcome[];
  /** Wall time from the first boot to the end of the last scenario (boots overlap scenarios). */
  scenariosWallMs?: number;
  error?: { kind: string; message: string; report: string; exitCode: number };
}

export interface BootReport {
  cpu: string;
  scenario: string;
  /** From QEMU's start to SSH answering: a boot, or a restore when restoredFrom is set (summaries before 0.2 called it bootMs). */
  readyMs?: number;
  qemuCommand?: string;
  consoleLog: string;
  stalledConsoleLogs?: string[];
  /** The snapshot the guest was restored from (readyMs is then the restore's). */
  restoredFrom?: string;
  /** The guest is an earlier guest's QEMU (pid), reset in place to the snapshot (loadvm): its nth guest. */
  resetInPlace?: { pid: number; guest: number };
  /** Why this guest booted although snapshots were on (a failed save or restore). */
  snapshotProblem?: string;
  /** CPU time its QEMU used, boot or restore and scenario together (from /proc at its stop). */
  cpuMs?: number;
  /** QEMU's CPU time when the guest answered SSH (the restore's or boot's share of cpuMs). */
  readyCpuMs?: number;
  /**
   * For a restore or a reset, QEMU CPU counted as readyCpuMs is, by two
   * moments on the way: the loaded state running (QEMU reading it, or
   * loadvm) and SSH
   * connected (the difference: the guest's side of the handshake). The rest
   * of readyCpuMs is the proof that timers run.
   */
  restoreCpuMs?: { running?: number; connected?: number };
  /** Commands the scenario ran in the guest over SSH. */
  guestCommands?: number;
}

/**
 * A scenario's report; `interrupted` when the run was stopped before it
 * finished (or before it began); `known` when known-failures.json decided it
 * (an expected failure, or a pass of one listed as failing).
 */
export type ScenarioOutcome = ScenarioReport & { interrupted?: boolean; known?: KnownOutcome };

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
  /** The known-failures file the run read, and how many entries it had. */
  knownFailures?: { path: string; entries: number };
  /** Guests at once: the limit, how it was chosen, and the most seen running together. */
  jobs?: { size: number; chosen: string; peak: number };
}

/** The most serious outcome wins: usage > infra > kernel > tests failed > ok. */
export function overallExit(r: RunReport): number {
  if (r.interrupted) return EXIT.interrupted;
  // An expected failure (known-failures.json) does not fail the run.
  const scenarioCode = (s: ScenarioOutcome) => (s.interrupted ? EXIT.interrupted : s.known?.status === 'xfail' ? EXIT.ok : exitForOutcome(s.ok, s.fault));
  const codes = r.arches.flatMap((a) => [a.error?.exitCode ?? EXIT.ok, ...a.scenarios.map(scenarioCode)]);
  for (const c of [EXIT.interrupted, EXIT.usage, EXIT.infra, EXIT.kernelFailed, EXIT.testsFailed]) if (codes.includes(c)) return c;
  return EXIT.ok;
}
