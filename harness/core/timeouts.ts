// Every timeout and every time bound in one place, in x86_64-under-TCG
// milliseconds, scaled per arch (ppc64le under TCG is several times slower).
import type { ArchRecord } from './arch.js';
import { usageError } from './errors.js';

/** Host-side deadlines: how long the harness waits before calling it a hang. */
const BASE_MS = {
  bootToSsh: 60_000,
  /** From starting QEMU on a saved state to SSH answering (it answers in under a second). */
  restoreToSsh: 15_000,
  /** Console silence before the guest is ready that counts as a stalled boot. */
  bootSilence: 20_000,
  guestCommand: 30_000,
  /** A transition expected to finish (no blocker, reverse, after a lever). */
  transition: 10_000,
  /** A blocker's task to reach its sleep, a released reader to return. */
  blockerState: 10_000,
  /**
   * The kernel's own fake signal comes with its 16th try, about 1 s apart,
   * but a loaded guest stretches them (2.5 s each seen here: 40 s); the
   * verdict is the count of tries, so the wait is generous.
   */
  autoSignal: 90_000,
  /** Any copy into the guest over SSH (ssh.put) that names no deadline of its own. */
  fileCopy: 60_000,
};

/**
 * Verdict bounds on the guest's clock: a lever "worked" only if the
 * transition ended this soon after the write. Well under the kernel's own
 * signal (15 retries, ~15 s after the patch loads, ~10 s after the write).
 */
const GUEST_BOUND_MS = {
  /** From a write to signal/force/enabled to the transition seen finished. */
  remedyToDone: 3_000,
  /** Sampling that shows a transition pending over the kernel's 1 s retries. */
  stuckSpan: 3_000,
  /** Sampling that shows a write changed nothing (0 to a lever). */
  noChangeSpan: 2_000,
  /** The kernel's own signal needs at least 14 of its 1 s retries. */
  autoSignalAtLeast: 14_000,
};

/**
 * KVM, host-side and never scaled: a guest under KVM prints within a second
 * or does not run at all. `probe`: the test guest's bound (vm/accel.ts);
 * `firstLine`: a KVM boot's first console line, past which the run falls
 * back to software emulation at once: no longer than the probe, so a KVM
 * that passed the probe and then stalls a boot costs no more than it.
 */
export const KVM_MS = { probe: 2_000, firstLine: 2_000 } as const;

/**
 * Host-side waits that do not grow with the guest's speed: how often a poll
 * looks, how long a socket QEMU is still creating may take, grace periods.
 * Not scaled per arch; KLP_HARNESS_TIMEOUT_SCALE stretches the deadlines
 * among them through `hostMs`.
 */
const HOST_MS = {
  /** QEMU's QMP socket to answer after QEMU started (it creates it at once; with -loadvm it greets once the state is loaded). */
  qmpConnect: 10_000,
  /** A QMP stop or cont of a guest kept for reuse (answered in milliseconds; a QEMU that does not is not kept). */
  qmpAnswer: 3_000,
  /** Between two QMP status reads while a restore runs. */
  qmpPoll: 50,
  /** Between two reads of QEMU's run state after a restore began. */
  restorePoll: 20,
  /** Between two reads of a blocker module's state in the guest. */
  blockerPoll: 200,
  /** One SSH handshake (ssh2's readyTimeout); retried until the boot's deadline. */
  sshHandshake: 8_000,
  /** After a failed command: how long QEMU's exit may take to be noticed, so a dead guest is reported as such. */
  deathNotice: 300,
  /** After a failed boot: for the fatal console line (a panic) to arrive before QEMU is stopped. */
  lastConsoleLine: 300,
  /** After closing SSH and before saving a snapshot: for the guest's server to see the session end. */
  sshCloseSettle: 300,
  /** QEMU's grace after a QMP quit / SIGTERM before SIGKILL. */
  vmStopGrace: 3_000,
  /** After an interrupt: SIGKILL to every child group after this, exit 130 after interruptExit at the latest. */
  interruptKill: 1_500,
  interruptExit: 3_500,
  /** How long a holder may take to write its record after it got a lock. */
  lockRecord: 250,
  /** The race canary's line on the console after the race ends. */
  canaryLine: 3_000,
  /** A restored guest's first 20 ms sleep (timers run) over SSH, before the arch's scale. */
  restoredTimers: 5_000,
  /** `qemu-system-* --version` of a host binary (--qemu auto asks before choosing). */
  toolVersion: 30_000,
} as const;

export type HostWait = keyof typeof HOST_MS;

/** A host-side wait; the ones that are deadlines grow with KLP_HARNESS_TIMEOUT_SCALE, intervals and graces do not. */
export function hostMs(name: HostWait): number {
  const deadline = name === 'qmpConnect' || name === 'qmpAnswer' || name === 'sshHandshake' || name === 'canaryLine' || name === 'restoredTimers' || name === 'toolVersion';
  return deadline ? Math.round(HOST_MS[name] * extraScale()) : HOST_MS[name];
}

export type TimeoutName = keyof typeof BASE_MS;
export type GuestBoundName = keyof typeof GUEST_BOUND_MS;

/** KLP_HARNESS_TIMEOUT_SCALE as a number; empty or unset counts as 1. */
function extraScale(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.KLP_HARNESS_TIMEOUT_SCALE?.trim();
  return raw ? Number(raw) : 1;
}

/** Checked at the door (cli/main.ts): anything but a positive number is a usage error, never taken silently. */
export function checkTimeoutScale(env: NodeJS.ProcessEnv = process.env): void {
  const n = extraScale(env);
  if (!Number.isFinite(n) || n <= 0 || n > 1000) {
    throw usageError(`KLP_HARNESS_TIMEOUT_SCALE='${env.KLP_HARNESS_TIMEOUT_SCALE}' is not a usable factor`, {
      hint: 'give a positive number that stretches the host-side timeouts (e.g. 2 on a slow host), or unset it',
    });
  }
}

/** A host-side timeout for an arch, further multiplied by KLP_HARNESS_TIMEOUT_SCALE if set. */
export function timeout(name: TimeoutName, arch: ArchRecord): number {
  return Math.round(BASE_MS[name] * arch.timeoutScale * extraScale());
}

/**
 * A bound on the guest's clock for an arch. Not stretched by
 * KLP_HARNESS_TIMEOUT_SCALE: a slow host does not make the kernel's clock
 * slower, and a verdict bound that grew with the host would prove nothing.
 * `autoSignalAtLeast` is a lower bound and never scaled.
 */
export function guestBound(name: GuestBoundName, arch: ArchRecord): number {
  if (name === 'autoSignalAtLeast') return GUEST_BOUND_MS[name];
  return Math.round(GUEST_BOUND_MS[name] * arch.guestClockScale);
}
