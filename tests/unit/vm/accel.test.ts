// The KVM probe and its host verdict, against a fake QEMU (tests/fixtures/procs/fake-kvm-probe.sh):
// a test guest that prints, one that stays silent, a QEMU that refuses; the
// verdict reused, probed again after a new host boot, a corrupt verdict file,
// runs probing at once, a KVM boot failure recorded for the next run.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { getArch } from '../../../harness/core/arch.js';
import { createLogger } from '../../../harness/core/log.js';
import { Accelerator, PROBE_LINE, x86ProbeFirmware, type AccelInputs } from '../../../harness/vm/accel.js';
import { fixture, tempDir } from '../../helpers.js';

const arch = getArch('x86_64');

/** A host with a fake /dev/kvm, boot id and QEMU; `starts()` counts the QEMU starts other than --version. */
function host(t: Test, mode: 'prints' | 'silent' | 'exits') {
  const dir = tempDir(t);
  const count = join(dir, 'starts');
  const bootIdFile = join(dir, 'boot_id');
  const kvmDevice = join(dir, 'kvm');
  writeFileSync(bootIdFile, 'boot-one\n');
  writeFileSync(kvmDevice, '');
  process.env.FAKE_KVM_MODE = mode;
  process.env.FAKE_KVM_COUNT = count;
  const lines: string[] = [];
  const inputs: AccelInputs = {
    arch,
    cacheDir: join(dir, 'cache'),
    logger: createLogger('normal', { out: (s) => lines.push(s), live: false }),
    qemuBinary: fixture('procs/fake-kvm-probe.sh'),
    hostArch: 'x64',
    kvmDevice,
    bootIdFile,
    env: {},
    probeMs: 1500,
  };
  const starts = () => (existsSync(count) ? readFileSync(count, 'utf8').trim().split('\n').length : 0);
  return { dir, inputs, lines, starts, log: () => lines.join(''), verdictFile: join(dir, 'cache/accel/kvm-x86_64.json') };
}

t.test('a test guest that prints makes KVM the accelerator, and says so once', async (t) => {
  const h = host(t, 'prints');
  const a = await Accelerator.decide(h.inputs);
  t.equal(a.accel, 'kvm');
  t.match(a.why, /KVM usable \(a test guest printed on its console in [\d.]+ s; decided \d\d:\d\d by pid \d+, the probe took/);
  t.equal(h.starts(), 1);
  t.match(h.log(), /accel x86_64: KVM: KVM usable/);
});

t.test('a test guest that stays silent is KVM not usable, decided within the probe bound', async (t) => {
  const h = host(t, 'silent');
  const started = Date.now();
  const a = await Accelerator.decide(h.inputs);
  const ms = Date.now() - started;
  t.equal(a.accel, 'tcg');
  t.match(a.why, /KVM not usable on this host \(no console output from a test guest in 1\.5 s; decided \d\d:\d\d by pid \d+/);
  t.ok(ms < 1500 + 2000, `decided in ${ms} ms`);
  t.match(h.log(), /accel x86_64: software emulation \(TCG\): KVM not usable on this host/);
});

t.test('a QEMU that refuses KVM is KVM not usable, with its error line', async (t) => {
  const h = host(t, 'exits');
  const a = await Accelerator.decide(h.inputs);
  t.equal(a.accel, 'tcg');
  t.match(a.why, /QEMU failed: qemu-system-x86_64: Could not access KVM kernel module: Permission denied/);
});

t.test('the verdict is reused within a host boot and probed again after a new one', async (t) => {
  const h = host(t, 'silent');
  await Accelerator.decide(h.inputs);
  const started = Date.now();
  const again = await Accelerator.decide(h.inputs);
  t.equal(again.accel, 'tcg');
  t.equal(h.starts(), 1, 'the second run did not start the test guest');
  t.ok(Date.now() - started < 1000, 'and paid nothing for it');
  writeFileSync(h.inputs.bootIdFile!, 'boot-two\n');
  process.env.FAKE_KVM_MODE = 'prints';
  const afterReboot = await Accelerator.decide(h.inputs);
  t.equal(h.starts(), 2, 'a new host boot is probed again');
  t.equal(afterReboot.accel, 'kvm');
});

t.test('another QEMU version is probed again', async (t) => {
  const h = host(t, 'prints');
  await Accelerator.decide(h.inputs);
  process.env.FAKE_KVM_VERSION = '9.9.9';
  t.teardown(() => delete process.env.FAKE_KVM_VERSION);
  await Accelerator.decide(h.inputs);
  t.equal(h.starts(), 2);
});

t.test('a corrupt verdict file counts as none and is replaced', async (t) => {
  for (const junk of ['', '{"usable": tr', '{"usable": "yes"}', 'null']) {
    const h = host(t, 'prints');
    await Accelerator.decide(h.inputs);
    writeFileSync(h.verdictFile, junk);
    const a = await Accelerator.decide(h.inputs);
    t.equal(a.accel, 'kvm', `after ${JSON.stringify(junk)}`);
    t.equal(h.starts(), 2, 'probed again');
    t.equal(JSON.parse(readFileSync(h.verdictFile, 'utf8')).usable, true, 'the file is whole again');
  }
});

t.test('runs deciding at once share one probe', async (t) => {
  const h = host(t, 'silent');
  const all = await Promise.all([1, 2, 3].map(() => Accelerator.decide(h.inputs)));
  t.same(
    all.map((a) => a.accel),
    ['tcg', 'tcg', 'tcg'],
  );
  t.equal(h.starts(), 1, 'one test guest for three runs');
});

t.test('a KVM boot that fails later is recorded: the next run does not try KVM', async (t) => {
  const h = host(t, 'prints');
  const first = await Accelerator.decide(h.inputs);
  t.equal(first.accel, 'kvm');
  first.kvmFailed('a KVM boot stalled: no console output for 4 s', h.inputs.logger, 'x86_64');
  t.equal(first.accel, 'tcg');
  const next = await Accelerator.decide(h.inputs);
  t.equal(next.accel, 'tcg');
  t.match(next.why, /KVM not usable on this host \(a KVM boot stalled: no console output for 4 s; decided/);
  t.equal(h.starts(), 1, 'no second probe');
});

t.test('no device, another arch, or KLP_HARNESS_ACCEL=tcg: software emulation without a probe', async (t) => {
  const h = host(t, 'prints');
  const none = await Accelerator.decide({ ...h.inputs, kvmDevice: join(h.dir, 'no-kvm') });
  t.match(none.why, /^no .*no-kvm$/);
  const ppc = await Accelerator.decide({ ...h.inputs, arch: getArch('ppc64le') });
  t.equal(ppc.why, 'the host is not ppc64le');
  const env = await Accelerator.decide({ ...h.inputs, env: { KLP_HARNESS_ACCEL: 'tcg' } });
  t.equal(env.why, 'KLP_HARNESS_ACCEL=tcg');
  t.same([none.accel, ppc.accel, env.accel], ['tcg', 'tcg', 'tcg']);
  t.equal(h.starts(), 0);
});

t.test('the x86 test firmware jumps from the reset vector to code that writes the probe line to COM1', async (t) => {
  const rom = x86ProbeFirmware();
  t.equal(rom.length, 0x10000, 'one 64 KiB BIOS image');
  t.same([...rom.subarray(0xfff0, 0xfff3)], [0xe9, 0x0d, 0xff], 'jmp near at the reset vector');
  t.equal((0xfff3 + 0xff0d) & 0xffff, 0xff00, 'to the code');
  t.same([...rom.subarray(0xff00, 0xff04)], [0xfa, 0xba, 0xf8, 0x03], 'cli; mov dx, 0x3f8');
  const written = [];
  for (let i = 0xff04; rom[i] === 0xb0 && rom[i + 2] === 0xee; i += 3) written.push(rom[i + 1]!);
  t.equal(Buffer.from(written).toString(), `${PROBE_LINE}\n`);
  // Running it under real QEMU is an integration test (tests/integration/accel.test.ts).
});
