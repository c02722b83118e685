// A kernel the harness did not build may not be able to livepatch at all
// (Debian's ppc64el config has HAVE_LIVEPATCH=y but no LIVEPATCH). That is
// found out from the kernel itself: the first guest of the arch is asked
// for /sys/kernel/livepatch, and without it every scenario is skipped with
// that one reason instead of booting a guest each to fail the same way.
import type { ArchRecord } from '../core/arch.js';
import type { Logger } from '../core/log.js';
import { timeout } from '../core/timeouts.js';
import { kernelFacts, type BinaryKernel } from '../kernel/binary-kernel.js';
import type { ScenarioOutcome } from '../report/run-report.js';
import { GuestOps } from '../vm/guestops.js';
import type { FreshGuest } from '../vm/snapshot.js';

/** What the booted kernel says about itself: whether it can livepatch, and how it was built. */
export interface LivepatchProbe {
  livepatch: boolean;
  /** /proc/version: the compiler the kernel was built with, in the kernel's own words. */
  procVersion: string;
  /** Why every scenario is skipped, when the kernel cannot livepatch. */
  skip?: string;
}

/** Asks a fresh guest of the kernel; the guest is closed afterwards. */
export async function probeLivepatch(o: { arch: ArchRecord; kernel: BinaryKernel; guest: () => Promise<FreshGuest>; logger: Logger }): Promise<LivepatchProbe> {
  const booted = await o.guest();
  try {
    const ops = new GuestOps(booted.ssh, timeout('guestCommand', o.arch), booted.vm);
    const r = await ops.must('cat /proc/version; [ -d /sys/kernel/livepatch ] && echo livepatch=yes || echo livepatch=no');
    const procVersion = r.split('\n')[0]?.trim() ?? '';
    const livepatch = /livepatch=yes/.test(r);
    const facts = kernelFacts(o.kernel.config);
    const config = facts.livepatch ? 'its config has CONFIG_LIVEPATCH=y' : `its config has ${facts.haveLivepatch ? 'HAVE_LIVEPATCH=y but' : 'no HAVE_LIVEPATCH and'} no CONFIG_LIVEPATCH`;
    // A skip needs the kernel's own config to agree: a config with LIVEPATCH=y whose kernel has no
    // /sys/kernel/livepatch is a broken kernel, and its scenarios run (and fail) instead of skipping.
    const skip = livepatch || facts.livepatch ? undefined : `this kernel cannot livepatch: the booted ${o.kernel.release} has no /sys/kernel/livepatch (${config})`;
    const said = livepatch ? '/sys/kernel/livepatch present' : (skip ?? `no /sys/kernel/livepatch although ${config}: the scenarios run and show it`);
    o.logger.info(`kernel ${o.arch.name}: ${procVersion}; ${said}`);
    return { livepatch, procVersion, skip };
  } finally {
    await booted[Symbol.asyncDispose]();
  }
}

/** The outcome of a scenario not run because the kernel cannot livepatch. */
export function skippedOutcome(name: string, arch: string, cpu: string, why: string): ScenarioOutcome {
  return { name, arch, cpu, ok: true, skipped: why, steps: [], durationMs: 0, timings: {} };
}
