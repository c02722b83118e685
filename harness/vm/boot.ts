// Boots a kernel in QEMU and connects over SSH. Retries QEMU when its port
// forward could not be set up (the port was taken), and once when the boot
// stalled (the console silent before the guest was ready, or an RCU stall
// report before SSH answered: both seen rarely under software emulation on a
// loaded host, e.g. "rcu_sched kthread timer wakeup didn't happen"; the
// stalled console is kept). A kernel
// that panics or never brings SSH up fails with the console tail.
import '../core/dispose.js';
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import pRetry, { AbortError } from 'p-retry';
import type { ArchRecord } from '../core/arch.js';
import { bootError, HarnessError, infraError } from '../core/errors.js';
import type { Keys } from '../image/keys.js';
import type { Logger } from '../core/log.js';
import { freePort } from './ports.js';
import { RCU_STALL_LINE } from './console.js';
import { QemuVM, type QemuOptions } from './qemu.js';
import { Accelerator, type Accel } from './accel.js';
import { GuestShell } from './ssh.js';
import { hostMs, KVM_MS, timeout } from '../core/timeouts.js';
import { delay } from '../core/poll.js';

export interface BootRequest {
  arch: ArchRecord;
  kernel: string;
  initrd: string;
  keys: Keys;
  consoleLog: string;
  /** Where the QEMU command line is written (default: beside the console log). */
  commandFile?: string;
  logger: Logger;
  cpu?: string;
  /** vCPUs (default 2). */
  smp?: number;
  qemuBinary?: string;
  /** Arguments that find the QEMU's firmware (-L for one run from the cache; vm/qemu-dist.ts). */
  qemuDataArgs?: string[];
  /** Added to QEMU's environment (vm/qemu-dist.ts). */
  qemuEnv?: Record<string, string>;
  extraAppend?: string[];
  /** Console silence before ready that counts as a stall (default: the bootSilence timeout). */
  silenceMs?: number;
  /** The run's accelerator for this arch (Accelerator.decide; default: software emulation). */
  accel?: Accelerator;
  /** Picks the host port for the SSH forward (tests inject a taken one). */
  pickPort?: () => Promise<number>;
  /** A QMP socket for QEMU to create (a snapshot is saved through it). */
  qmpSocket?: string;
  /** A qcow2 image attached as a drive no device uses (a snapshot's state is saved in it with `savevm`). */
  vmstateImage?: string;
  /** The guest's RAM as a named backend (QemuOptions.ram): a snapshot's boot writes it in a file. */
  ram?: QemuOptions['ram'];
}

/** A guest up and reachable over SSH; leaving its `await using` scope closes SSH and stops QEMU. */
export interface Booted extends AsyncDisposable {
  vm: QemuVM;
  ssh: GuestShell;
  /** From QEMU's start to SSH answering. */
  readyMs: number;
  port: number;
  /** Console logs of earlier attempts that stalled (kept, renamed). */
  stalled: string[];
}

/** Printed to /dev/kmsg by guest/init once the SSH server runs. */
export const READY_LINE = /klp-init: ready/;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms).unref());

export const portTaken = (stderr: string) => /could not set up host forwarding rule|Address already in use/i.test(stderr);

/** Starts QEMU (on another port if the first is taken) and returns once SSH works. */
export async function bootGuest(req: BootRequest): Promise<Booted> {
  const stalled: string[] = [];
  const withAccel = { ...req, accel: req.accel ?? Accelerator.fixed('tcg') };
  return pRetry(() => bootOnce(withAccel, stalled), { retries: 3, minTimeout: 0 });
}

/** One attempt: QEMU started, the console watched until the guest is ready, then SSH. */
async function bootOnce(req: BootRequest & { accel: Accelerator }, stalled: string[]): Promise<Booted> {
  const { arch } = req;
  const deadline = timeout('bootToSsh', arch);
  const port = await (req.pickPort ?? freePort)();
  const accel = req.accel.accel;
  // A RAM file the guest writes starts empty: an attempt that stalled leaves its memory in it.
  if (req.ram?.file && req.ram.shared) rmSync(req.ram.file, { force: true });
  const vm = startQemu(req, port, accel);
  // Under KVM the first console line comes within a second: silence past the probe's bound is KVM not running the guest.
  const firstLineMs = accel === 'kvm' ? KVM_MS.firstLine : undefined;
  const watch = watchBoot(vm, req.silenceMs ?? timeout('bootSilence', arch), arch.name, firstLineMs);
  try {
    // Connecting before the guest's network is up costs seconds of TCP SYN
    // back-off inside QEMU's user network; our init says when it is ready.
    const early = await Promise.race([vm.waitForLine(READY_LINE).then(() => undefined), watch.abort, sleep(deadline / 2).then(() => undefined)]);
    if (early) throw new HarnessError('boot', early);
    watch.stop();
    const commands = { commandMs: timeout('guestCommand', arch), copyMs: timeout('fileCopy', arch) };
    const ssh = await GuestShell.connect({ port, keys: req.keys, deadlineMs: deadline, commands, abort: watch.abort });
    watch.done();
    const readyMs = Date.now() - vm.startedAt;
    return {
      vm,
      ssh,
      readyMs,
      port,
      stalled,
      async [Symbol.asyncDispose]() {
        ssh.close();
        await vm.stop();
      },
    };
  } catch (e) {
    // Give a fatal line a moment to arrive so the report shows the panic, not only the exit.
    await delay(hostMs('lastConsoleLine'));
    await vm.stop();
    throw failedBoot(e, { req, vm, port, accel, stalledNow: watch.stalled(), stalled });
  } finally {
    watch.done();
  }
}

/** Where a guest's QEMU command line is written: the request's file, or beside its console log. */
export const commandFileOf = (req: Pick<BootRequest, 'commandFile' | 'consoleLog'>) => req.commandFile ?? req.consoleLog.replace(/(\.log)?$/, '.qemu-command.txt');

/** Starts QEMU for the request (booting, or from a saved state) and says where its command line is. */
export function startQemu(req: BootRequest, port: number, accel: Accel, saved: Pick<QemuOptions, 'paused' | 'loadvm' | 'incoming' | 'ram'> = {}): QemuVM {
  const { arch, logger } = req;
  const vm = new QemuVM({
    arch,
    accel,
    kernel: req.kernel,
    initrd: req.initrd,
    sshPort: port,
    consoleLog: req.consoleLog,
    cpu: req.cpu,
    smp: req.smp,
    binary: req.qemuBinary,
    dataArgs: req.qemuDataArgs,
    env: req.qemuEnv,
    extraAppend: req.extraAppend,
    qmpSocket: req.qmpSocket,
    vmstateImage: req.vmstateImage,
    ram: req.ram,
    ...saved,
    onConsoleLine: (line) => logger.verbose(`console ${arch.name}: ${line}`),
  });
  // The full command line is long: it goes to --verbose and next to the console log, not to every default log line.
  const commandFile = commandFileOf(req);
  writeFileSync(commandFile, vm.command + '\n');
  logger.info(`${saved.loadvm || saved.incoming ? 'restore' : 'boot'} ${arch.name}: ${accel === 'kvm' ? 'KVM' : 'software emulation (TCG)'}, qemu pid ${vm.pid} (command line in ${commandFile})`);
  logger.verbose(`boot ${arch.name}: ${vm.command}`);
  return vm;
}

/**
 * Watches a booting guest: `abort` resolves with why waiting is pointless
 * (a panic, QEMU gone, the console silent for silenceMs: a stall).
 */
function watchBoot(vm: QemuVM, silenceMs: number, archName: string, firstLineMs?: number) {
  let stalledNow = false;
  let watchdog: NodeJS.Timeout | undefined;
  const silent = new Promise<string>((resolve) => {
    watchdog = setInterval(() => {
      const quiet = Date.now() - vm.lastLineAt;
      const limit = firstLineMs !== undefined && vm.console.last(1).length === 0 ? firstLineMs : silenceMs;
      if (quiet < limit) return;
      stalledNow = true;
      clearInterval(watchdog);
      resolve(`boot stalled: no console output for ${Math.round(quiet / 1000)} s before the guest was ready`);
    }, 250);
  });
  // Until SSH answers: a guest whose timers starve under emulation reports an RCU stall and
  // then never answers; waiting out the SSH deadline would only hide that.
  let watching = true;
  const rcuStall = vm.waitForLine(RCU_STALL_LINE).then((line) => {
    if (!watching) return new Promise<string>(() => {});
    stalledNow = true;
    return `boot stalled: RCU stall reported before SSH answered (${line.replace(/^\[[^\]]*\]\s*/, '').trim()})`;
  });
  const abort = Promise.race([
    vm.fatal.then((ev) => `kernel ${ev.kind} on ${archName}: ${ev.line.trim()}`),
    vm.exited.then((x) => `QEMU exited (code ${x.code}, signal ${x.signal}) before SSH came up`),
    silent,
    rcuStall,
  ]);
  return {
    abort,
    stalled: () => stalledNow,
    /** The console's silence is no longer a stall once the guest is ready. */
    stop: () => clearInterval(watchdog),
    /** SSH answered: nothing more is a boot stall. */
    done: () => {
      watching = false;
      clearInterval(watchdog);
    },
  };
}

/**
 * What a failed attempt was, as the error to throw: a panic, a second stall,
 * a QEMU that could not start or a guest that never answered end the boot
 * (AbortError); a first stall, a taken port or a KVM that does not work are
 * retried.
 */
function failedBoot(e: unknown, a: { req: BootRequest & { accel: Accelerator }; vm: QemuVM; port: number; accel: Accel; stalledNow: boolean; stalled: string[] }): Error {
  const { req, vm, stalled } = a;
  const { arch, logger } = req;
  const exit = vm.exit;
  const ctx = {
    arch: arch.name,
    command: vm.command,
    durationMs: Date.now() - vm.startedAt,
    consoleTail: vm.console.last(40),
    logPath: req.consoleLog,
    exitCode: exit?.code,
    signal: exit?.signal ?? undefined,
  };
  const panic = vm.events.find((ev) => ev.kind === 'panic' || ev.kind === 'oops' || ev.kind === 'bug');
  if (panic) return new AbortError(bootError(`kernel failed during boot: ${panic.line.trim()}`, ctx));
  const msg = e instanceof HarnessError ? e.message : String(e);
  if (a.accel === 'kvm' && (a.stalledNow || (exit && !portTaken(exit.stderr) && vm.console.last(1).length === 0))) {
    // /dev/kvm can be there and still not run a guest (seen: silent guests; nested virtualisation failing to set MSRs).
    const why = exit && !a.stalledNow ? (exit.stderr.trim().split('\n')[0] ?? 'QEMU exited') : `a KVM boot stalled: ${msg}`;
    req.accel.kvmFailed(why, logger, arch.name);
    return infraError(`KVM unusable: ${why}`, ctx);
  }
  if (a.stalledNow && stalled.length === 0) {
    const kept = `${req.consoleLog.replace(/\.log$/, '')}-stalled-1.log`;
    renameSync(req.consoleLog, kept);
    stalled.push(kept);
    logger.info(`boot ${arch.name}: ${msg} (last line: ${vm.console.last(1)[0]?.trim() ?? 'none'}); console kept in ${kept}; booting once more`);
    return bootError(msg, ctx);
  }
  if (exit && portTaken(exit.stderr)) {
    logger.info(`boot ${arch.name}: port ${a.port} was taken, trying another`);
    return infraError(`port ${a.port} was taken`, ctx);
  }
  if (exit && exit.code !== 0 && exit.stderr.trim() && vm.console.last(1).length === 0) {
    return new AbortError(infraError(`QEMU failed to start: ${fatalLine(exit.stderr)}`, { ...ctx, details: exit.stderr }));
  }
  const earlier = stalled.length ? `; an earlier attempt stalled too (${stalled.join(', ')})` : '';
  return new AbortError(bootError(`${arch.name} guest did not reach SSH: ${msg}${earlier}`, { ...ctx, details: exit?.stderr || undefined }));
}

/**
 * The line of a QEMU's stderr that says why it quit: its last. QEMU prints
 * its fatal error as it exits; lines before it are warnings (Debian 13's
 * QEMU from the cache warns about each of the host's modules it cannot load).
 */
function fatalLine(stderr: string): string {
  const lines = stderr.trim().split('\n').filter((l) => l.trim());
  return lines.at(-1)?.trim() ?? '';
}
