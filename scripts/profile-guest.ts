// Where a guest's emulated CPU goes: QEMU's user + system time (from /proc)
// around each kind of thing a scenario does, on one fresh guest per arch.
// Used by `npm run bench` (its "QEMU CPU per phase" table) and on its own:
//   node dist/scripts/profile-guest.js [--arch x86_64,ppc64le] [--qemu host|trixie|backports] [--kconfig-extra FILE]
// (a config fragment on top of kconfigs/, e.g. to measure a tick setting: its kernels are built apart).
// Prints figures; asserts nothing.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArchList, type ArchRecord } from '../harness/core/arch.js';
import type { Logger } from '../harness/core/log.js';
import type { Keys } from '../harness/image/keys.js';
import type { ArchArtifacts } from '../harness/pipeline/prepare.js';
import { GuestPool } from '../harness/vm/guest-pool.js';
import { GuestOps, guestSleep, NOW_MS, pollCommand, TICK_OPEN } from '../harness/vm/guestops.js';
import { GuestShell } from '../harness/vm/ssh.js';
import { processCpuMs } from '../harness/vm/qemu.js';
import type { QemuInstall } from '../harness/vm/qemu-dist.js';
import { DEFAULT_VCPUS } from '../harness/scenarios/types.js';

export interface PhaseFigure {
  phase: string;
  /** QEMU CPU over the phase, ms. */
  cpuMs: number;
  wallMs: number;
  /** How many of the thing the phase did (per-item figures divide by it). */
  count: number;
}

const REPEAT = 20;

/** One guest of the arch, each phase measured by QEMU's CPU before and after it. */
export async function profileGuest(o: { arch: ArchRecord; artifacts: ArchArtifacts; keys: Keys; cacheDir: string; logger: Logger; qemu: QemuInstall }): Promise<PhaseFigure[]> {
  const { arch, artifacts } = o;
  const dir = mkdtempSync(join(tmpdir(), `klp-profile-${arch.name}-`));
  // Each guest in a QEMU of its own: the first phase measures a restore (the bench's table compares resets).
  await using pool = new GuestPool({ cacheDir: o.cacheDir, logger: o.logger, qemu: o.qemu, reuse: false });
  // A scenario's guest as a run makes it: DEFAULT_VCPUS vCPUs.
  const req = { arch, kernel: artifacts.build.image, initrd: artifacts.image.path, keys: o.keys, consoleLog: join(dir, 'console.log'), smp: DEFAULT_VCPUS };
  // The first guest may make the snapshot: not measured.
  await (await pool.guest(req))[Symbol.asyncDispose]();
  const out: PhaseFigure[] = [];
  await using g = await pool.guest(req);
  const cpu = () => processCpuMs(g.vm.pid) ?? 0;
  out.push({ phase: g.restored ? 'restore to SSH answering' : 'boot to SSH answering', cpuMs: cpu(), wallMs: g.readyMs, count: 1 });
  const measure = async (phase: string, count: number, fn: () => Promise<unknown>) => {
    const c0 = cpu();
    const w0 = Date.now();
    await fn();
    out.push({ phase, cpuMs: cpu() - c0, wallMs: Date.now() - w0, count });
  };
  const sh = (cmd: string) => g.ssh.exec(cmd, { timeoutMs: 60_000 * arch.timeoutScale });
  await measure('idle guest, per second', 5, () => new Promise((r) => setTimeout(r, 5000)));
  // What every fresh guest pays on top of its restore: the server's side of a handshake (key exchange, host-key signature, the session).
  await measure('a new SSH connection and its first command', 5, async () => {
    for (let i = 0; i < 5; i++) {
      const c = await GuestShell.connect({ port: g.ssh.port, keys: o.keys, deadlineMs: 30_000 * arch.timeoutScale, commands: g.ssh.deadlines });
      await c.exec('true', { timeoutMs: 60_000 * arch.timeoutScale });
      c.close();
    }
  });
  await measure('one SSH command (`true`)', REPEAT, async () => {
    for (let i = 0; i < REPEAT; i++) await sh('true');
  });
  // A command given stdin gets an exec channel of its own, as every command did before the shells.
  await measure('one SSH command on a channel of its own (`true`)', REPEAT, async () => {
    for (let i = 0; i < REPEAT; i++) await g.ssh.exec('true', { timeoutMs: 60_000 * arch.timeoutScale, stdin: '' });
  });
  // What most of a scenario's commands are: GuestOps' own, run by the shell itself (no subshell).
  const ops = new GuestOps(g.ssh, 60_000 * arch.timeoutScale);
  await measure('one reading as the harness takes it (`read` of a sysfs file: builtins, no subshell)', REPEAT, async () => {
    for (let i = 0; i < REPEAT; i++) await ops.read('/sys/devices/system/cpu/online');
  });
  await measure('one SSH command that starts a program (`cat /proc/uptime`)', REPEAT, async () => {
    for (let i = 0; i < REPEAT; i++) await sh('cat /proc/uptime');
  });
  await measure('one sysfs read inside one command (a guest-side loop)', REPEAT, () => sh(`for i in $(seq ${REPEAT}); do cat /proc/uptime >/dev/null; done`));
  await measure('a 100 ms guest-side poll, per second (usleep loop)', 3, () => sh('i=0; while [ $i -lt 30 ]; do usleep 100000; i=$((i+1)); done'));
  await measure('a 100 ms guest-side poll, per second (read -t on a FIFO, as the harness polls)', 3, () => sh(`${TICK_OPEN}i=0; while [ $i -lt 30 ]; do ${guestSleep(100)} i=$((i+1)); done`));
  // A wait on a sysfs file (the transition's, in a scenario), one reading per 100 ms for 3 s: per reading.
  const file = '/sys/devices/system/cpu/online';
  await measure('a 3 s wait, a sysfs reading every 100 ms (a shell loop of builtins, as the harness waited before)', 30, () =>
    sh(`${NOW_MS}now_ms; t0=$ms; ${TICK_OPEN}while :; do read v < ${file} || v=gone; now_ms; [ $((ms - t0)) -ge 3000 ] && break; ${guestSleep(100)} done`),
  );
  await measure('a 3 s wait, a sysfs reading every 100 ms (klp-poll, as the harness waits)', 30, () => sh(pollCommand({ path: file, forMs: 3000, everyMs: 100, lastOnly: true })));
  // A dynamic program's start: the loader and libc (dropbear is the image's one dynamic program). The kernel
  // command line says norandmaps; with the addresses random again QEMU translates that code anew each time.
  const dynamic = `for i in $(seq ${REPEAT}); do /usr/sbin/dropbear -V 2>/dev/null; done`;
  await measure('a dynamic program started (`dropbear -V`: the loader and libc, norandmaps)', REPEAT, () => sh(dynamic));
  await measure('the same with user-space addresses random (randomize_va_space=2)', REPEAT, () =>
    sh(`echo 2 > /proc/sys/kernel/randomize_va_space; ${dynamic}; echo 0 > /proc/sys/kernel/randomize_va_space`),
  );
  const ko = artifacts.modules.modules['klp_sleeper.ko'];
  if (ko) {
    await g.ssh.put(readFileSync(ko), '/root/profile-sleeper.ko');
    await measure('insmod + rmmod of klp_sleeper', 5, async () => {
      for (let i = 0; i < 5; i++) await sh('insmod /root/profile-sleeper.ko && rmmod klp_sleeper');
    });
  }
  rmSync(dir, { recursive: true, force: true });
  return out;
}

/** The table for bench/RESULTS.md. */
export function phaseTable(rows: { arch: string; figures: PhaseFigure[] }[]): string[] {
  const lines = ['| arch | phase | QEMU CPU | wall | per item |', '| --- | --- | --- | --- | --- |'];
  for (const { arch, figures } of rows) {
    for (const f of figures) lines.push(`| ${arch} | ${f.phase} | ${(f.cpuMs / 1000).toFixed(2)} s | ${(f.wallMs / 1000).toFixed(2)} s | ${f.count > 1 ? `${(f.cpuMs / f.count).toFixed(0)} ms` : ''} |`);
  }
  return lines;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { prepareRun } = await import('../harness/pipeline/prepare.js');
  const { cacheRoot } = await import('../harness/core/cache.js');
  const { createLogger } = await import('../harness/core/log.js');
  const { parseQemuChoice } = await import('../harness/vm/qemu-dist.js');
  const argv = process.argv.slice(2);
  const valueOf = (name: string) => argv[argv.indexOf(name) + 1];
  const arches = parseArchList(argv.includes('--arch') ? valueOf('--arch')! : 'x86_64,ppc64le');
  const kconfigExtra = argv.includes('--kconfig-extra') ? [resolve(valueOf('--kconfig-extra')!)] : undefined;
  const p = await prepareRun({ arches, cacheDir: cacheRoot(), logger: createLogger('normal'), kconfigExtra, qemu: argv.includes('--qemu') ? parseQemuChoice(valueOf('--qemu')!) : undefined });
  const rows = [];
  for (const arch of arches) rows.push({ arch: arch.name, figures: await profileGuest({ arch, artifacts: p.artifacts.get(arch.name)!, keys: p.keys, cacheDir: p.cacheDir, logger: p.logger, qemu: p.qemu }) });
  process.stdout.write(phaseTable(rows).join('\n') + '\n');
}
