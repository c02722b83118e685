// Boot outcome classification against a fake QEMU (tests/fixtures/procs/fake-qemu.sh):
// a panic, a stall, a taken port, KVM refused, QEMU exiting early.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { getArch } from '../../../harness/core/arch.js';
import { HarnessError } from '../../../harness/core/errors.js';
import { createLogger } from '../../../harness/core/log.js';
import { loadKeys } from '../../../harness/image/keys.js';
import { Accelerator } from '../../../harness/vm/accel.js';
import { bootGuest, type BootRequest } from '../../../harness/vm/boot.js';
import { fixture, tempDir } from '../../helpers.js';
import { KVM_MS } from '../../../harness/core/timeouts.js';

const arch = getArch('x86_64');

/** Boots the fake in the given mode; resolves with the error it failed with and the log lines. */
async function bootFake(t: Test, mode: string, extra: Partial<BootRequest> = {}) {
  process.env.FAKE_QEMU_MODE = mode;
  const dir = tempDir(t);
  const lines: string[] = [];
  const logger = createLogger('normal', { out: (s) => lines.push(s), live: false });
  const consoleLog = join(dir, 'console.log');
  const err = await bootGuest({ arch, kernel: '/fake/bzImage', initrd: '/fake/initrd', keys: loadKeys(dir), consoleLog, logger, qemuBinary: fixture('procs/fake-qemu.sh'), accel: Accelerator.fixed('tcg'), ...extra }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, HarnessError, 'the boot failed with a harness error');
  return { err: err as HarnessError, log: lines.join(''), consoleLog };
}

t.test('a panic during boot is the kernel failing, with the panic line', async (t) => {
  const { err } = await bootFake(t, 'panic');
  t.equal(err.kind, 'boot');
  t.match(err.message, /kernel failed during boot: .*Kernel panic - not syncing: VFS/);
  t.match(err.context.consoleTail?.join('\n'), /Kernel panic/);
});

t.test('a silent console is a stall: booted once more, the stalled console kept, then a boot error', async (t) => {
  const { err, log, consoleLog } = await bootFake(t, 'stall', { silenceMs: 1000 });
  t.equal(err.kind, 'boot');
  t.match(err.message, /did not reach SSH: boot stalled: no console output for \d+ s before the guest was ready; an earlier attempt stalled too/);
  t.match(log, /booting once more/);
  t.ok(existsSync(consoleLog.replace(/\.log$/, '-stalled-1.log')), 'the first attempt\'s console is kept');
});

t.test('an RCU stall before SSH answers is a stall too: booted once more, not waited out', async (t) => {
  const started = Date.now();
  const { err, log, consoleLog } = await bootFake(t, 'rcu-stall');
  t.equal(err.kind, 'boot');
  t.match(err.message, /did not reach SSH: boot stalled: RCU stall reported before SSH answered \(rcu: INFO: rcu_sched detected stalls/);
  t.match(log, /booting once more/);
  t.ok(existsSync(consoleLog.replace(/\.log$/, '-stalled-1.log')), 'the first attempt\'s console is kept');
  t.ok(Date.now() - started < 30_000, 'ended on the stall reports, not on the 60 s SSH deadline');
});

t.test('a taken port is retried on another port', async (t) => {
  const ports = [41001, 41002];
  process.env.FAKE_QEMU_TAKEN_PORT = '41001';
  t.teardown(() => delete process.env.FAKE_QEMU_TAKEN_PORT);
  const { err, log } = await bootFake(t, 'panic', { pickPort: async () => ports.shift() ?? 41003 });
  t.match(log, /port 41001 was taken, trying another/);
  t.match(err.message, /Kernel panic/, 'the second attempt got as far as the kernel');
  t.equal(ports.length, 0, 'a second port was picked');
});

t.test('QEMU exiting at once with an error is a host problem, not retried', async (t) => {
  const { err } = await bootFake(t, 'start-fail');
  t.equal(err.kind, 'infra');
  t.match(err.message, /QEMU failed to start: .*could not open kernel file/, 'the fatal line, not the warnings printed before it');
  t.notMatch(err.message.split('\n')[0], /module/);
});

t.test('QEMU exiting after the kernel printed is a boot error naming the exit', async (t) => {
  const { err } = await bootFake(t, 'exit0');
  t.equal(err.kind, 'boot');
  t.match(err.message, /did not reach SSH: QEMU exited \(code 0, signal null\) before SSH came up/);
});

t.test('KVM refused falls back to software emulation', async (t) => {
  const accel = Accelerator.fixed('kvm');
  const { err, log } = await bootFake(t, 'panic', { accel });
  t.match(log, /KVM is not usable here \(qemu-system-x86_64: error: failed to set MSR/);
  t.match(err.message, /Kernel panic/, 'the TCG attempt booted the kernel');
  t.equal(accel.accel, 'tcg', 'the run uses TCG from then on');
});

t.test('a KVM boot whose console stays silent falls back at once, not after a stall and a retry', async (t) => {
  process.env.FAKE_QEMU_KVM = 'silent';
  t.teardown(() => delete process.env.FAKE_QEMU_KVM);
  const accel = Accelerator.fixed('kvm');
  const started = Date.now();
  const { err, log } = await bootFake(t, 'panic', { accel });
  const ms = Date.now() - started;
  t.match(log, new RegExp(`KVM is not usable here \\(a KVM boot stalled: boot stalled: no console output for ${KVM_MS.firstLine / 1000} s`));
  t.notMatch(log, /booting once more/, 'not counted as a boot stall');
  t.match(err.message, /Kernel panic/, 'the TCG attempt booted the kernel');
  t.ok(ms < KVM_MS.firstLine + 3000, `fell back after ${ms} ms (the KVM first-line bound is ${KVM_MS.firstLine} ms)`);
  t.equal(accel.accel, 'tcg');
  t.match(accel.why, /KVM failed a boot in this run/);
});
