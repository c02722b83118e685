import t from 'tap';
import { ARCHES, getArch, parseArchList } from '../../../harness/core/arch.js';
import { HarnessError } from '../../../harness/core/errors.js';
import { qemuArgs } from '../../../harness/vm/qemu.js';
import { timeout } from '../../../harness/core/timeouts.js';

t.test('both arches have complete records', async (t) => {
  t.same(Object.keys(ARCHES).sort(), ['ppc64le', 'x86_64']);
  const ppc = getArch('ppc64le');
  t.equal(ppc.linuxArch, 'powerpc');
  t.equal(ppc.crossCompile, 'powerpc64le-linux-gnu-');
  t.equal(ppc.imageTarget, 'vmlinux');
  t.equal(ppc.debArch, 'ppc64el');
  t.same(ppc.qemu.cpuModels, ['power9', 'power8']);
  t.equal(ppc.moduleCflags, '-fno-optimize-sibling-calls');
  const x86 = getArch('x86_64');
  t.equal(x86.imagePath, 'arch/x86/boot/bzImage');
  t.equal(x86.crossCompile, '');
});

t.test('an unknown arch is a usage error listing the known ones', async (t) => {
  const e = (() => { try { parseArchList('x86_64,arm64'); } catch (err) { return err as HarnessError; } })();
  t.equal(e?.kind, 'usage');
  t.match(e?.message, /unknown arch 'arm64'/);
  t.match(e?.context.hint, /x86_64, ppc64le/);
  t.same(parseArchList('ppc64le, x86_64,ppc64le').map((a) => a.name), ['ppc64le', 'x86_64']);
});

t.test('QEMU arguments come from the record: console, machine, port on loopback only', async (t) => {
  const args = qemuArgs({ arch: getArch('ppc64le'), kernel: '/k', initrd: '/i', sshPort: 2222, consoleLog: '/c' });
  t.equal(args[args.indexOf('-M') + 1]!.split(',')[0], 'pseries');
  t.match(args[args.indexOf('-M') + 1], /x-vof=on/);
  t.equal(args[args.indexOf('-cpu') + 1], 'power9');
  t.match(args[args.indexOf('-append') + 1], /console=hvc0/);
  t.equal(args[args.indexOf('-netdev') + 1], 'user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22');
  const x = qemuArgs({ arch: getArch('x86_64'), kernel: '/k', initrd: '/i', sshPort: 1, consoleLog: '/c', cpu: 'max' });
  t.match(x[x.indexOf('-append') + 1], /console=ttyS0/);
  t.equal(x[x.indexOf('-cpu') + 1], 'max');
});

t.test('timeouts scale per arch', async (t) => {
  t.equal(timeout('bootToSsh', getArch('ppc64le')), timeout('bootToSsh', getArch('x86_64')) * getArch('ppc64le').timeoutScale);
});

t.test("the restart scenario's flush-off variant: ppc64le's words reach the kernel command line; x86_64 has none", async (t) => {
  const ppc = getArch('ppc64le');
  t.same(ppc.exitFlushOff?.args, ['no_rfi_flush']);
  // The machine line keeps cap-cfpc=broken: the kernel then uses the fallback flush (rfscv_flush_fallback) the variant turns off.
  t.match(ppc.qemu.machineArgs.join(' '), /cap-cfpc=broken/);
  const args = qemuArgs({ arch: ppc, kernel: '/k', initrd: '/i', sshPort: 1, consoleLog: '/c', extraAppend: [...ppc.exitFlushOff!.args] });
  t.match(args[args.indexOf('-append') + 1], / no_rfi_flush$/);
  t.equal(getArch('x86_64').exitFlushOff, undefined);
});
