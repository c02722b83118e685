// Every timeout in one place, in x86_64-under-TCG seconds, scaled per arch
// (ppc64le under TCG is several times slower).
import type { ArchRecord } from './arch.js';

const BASE_MS = {
  bootToSsh: 60_000,
  /** Console silence before the guest is ready that counts as a stalled boot. */
  bootSilence: 20_000,
  guestCommand: 30_000,
  transition: 20_000,
  moduleCopy: 30_000,
  /** Any copy into the guest over SSH (ssh.put) that names no deadline of its own. */
  fileCopy: 60_000,
};

export type TimeoutName = keyof typeof BASE_MS;

/** A timeout for an arch, further multiplied by KLP_HARNESS_TIMEOUT_SCALE if set. */
export function timeout(name: TimeoutName, arch: ArchRecord): number {
  const extra = Number(process.env.KLP_HARNESS_TIMEOUT_SCALE ?? 1) || 1;
  return Math.round(BASE_MS[name] * arch.timeoutScale * extra);
}
