// QEMU's argv comes from the arch record and the options alone (SSH only on
// 127.0.0.1, a saved state read through a quoted shell command); a QemuVM run
// against stand-in scripts sees, cleans, logs and bounds the console and stops its group.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { getArch } from '../../../harness/core/arch.js';
import { groupMembers } from '../../../harness/proc/stat.js';
import { CONSOLE_LINE_MAX_CHARS, processCpuMs, QemuVM, qemuArgs, qemuCommandText, type QemuOptions } from '../../../harness/vm/qemu.js';
import { fixture, goneSoon, killAtEnd, soon, tempDir } from '../../helpers.js';

const x86 = getArch('x86_64');
const ppc = getArch('ppc64le');
const base = (extra: Partial<QemuOptions> = {}): QemuOptions => ({ arch: x86, kernel: '/k/bzImage', initrd: '/k/initrd', sshPort: 2222, consoleLog: '/c', ...extra });

/** The value after the first `flag` in argv. */
const after = (args: string[], flag: string) => {
  const i = args.indexOf(flag);
  return i < 0 ? undefined : args[i + 1];
};

/** How sh splits a command line into words (the way QEMU's exec: and a person pasting it do). */
const shWords = (command: string) => execFileSync('sh', ['-c', `printf '%s\\0' ${command}`], { encoding: 'utf8' }).split('\0').slice(0, -1);

/** Whether a promise is still pending after ms. */
const pendingAfter = (p: Promise<unknown>, ms: number) => Promise.race([p.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), ms))]);

/** The file's text once it satisfies ok (the console log is written through a stream). */
async function readWhen(path: string, ok: (s: string) => boolean): Promise<string> {
  let text = '';
  for (let i = 0; i < 250; i++) {
    text = readFileSync(path, 'utf8');
    if (ok(text)) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  return text;
}

/** A QEMU stand-in running this shell script. */
function script(t: Test, body: string): { dir: string; bin: string } {
  const dir = tempDir(t);
  const bin = join(dir, 'qemu-stand-in');
  writeFileSync(bin, `#!/bin/sh\n${body}\n`);
  chmodSync(bin, 0o755);
  return { dir, bin };
}

t.test('machine arguments, console, memory and the kernel and initrd come from the arch record', async (t) => {
  for (const arch of [x86, ppc]) {
    const args = qemuArgs(base({ arch }));
    t.same(args.slice(0, arch.qemu.machineArgs.length), arch.qemu.machineArgs, `${arch.name}: the machine arguments lead without dataArgs`);
    t.equal(after(args, '-m'), String(arch.qemu.memoryMiB), `${arch.name}: memory`);
    t.match(after(args, '-append'), new RegExp(`^console=${arch.qemu.console} `), `${arch.name}: the console first on the command line`);
    t.equal(after(args, '-kernel'), '/k/bzImage');
    t.equal(after(args, '-initrd'), '/k/initrd');
    t.equal(after(args, '-serial'), 'stdio', 'the console is QEMU\'s stdout');
    t.ok(args.includes('-no-reboot'), 'with panic=-1 a panicking guest ends QEMU instead of rebooting');
  }
});

t.test('dataArgs come first, before the machine', async (t) => {
  const args = qemuArgs(base({ dataArgs: ['-L', '/cache/qemu/share'] }));
  t.same(args.slice(0, 2), ['-L', '/cache/qemu/share']);
  t.same(args.slice(2, 2 + x86.qemu.machineArgs.length), x86.qemu.machineArgs);
  t.equal(args.filter((a) => a === '-L').length, 1, 'given once');
});

t.test('-smp is 2 unless given; -cpu is the first model under TCG, the given one, or the host under KVM', async (t) => {
  t.equal(after(qemuArgs(base()), '-smp'), '2');
  t.equal(after(qemuArgs(base({ smp: 1 })), '-smp'), '1');
  t.equal(after(qemuArgs(base({ smp: 4 })), '-smp'), '4');
  t.equal(after(qemuArgs(base({ arch: ppc })), '-cpu'), ppc.qemu.cpuModels[0]);
  t.equal(after(qemuArgs(base({ arch: ppc, cpu: 'power8' })), '-cpu'), 'power8');
  t.equal(after(qemuArgs(base()), '-accel'), 'tcg', 'TCG unless KVM was asked for');
  const kvm = qemuArgs(base({ accel: 'kvm', cpu: 'max' }));
  t.equal(after(kvm, '-accel'), 'kvm');
  t.equal(after(kvm, '-cpu'), 'host', 'KVM runs the host CPU, whatever model was asked for');
  t.equal(after(qemuArgs(base({ accel: 'tcg', cpu: 'Skylake-Server' })), '-cpu'), 'Skylake-Server');
});

t.test('the kernel command line: one argument, the harness\'s words, then extraAppend in order', async (t) => {
  const plain = after(qemuArgs(base()), '-append')!.split(' ');
  t.same(plain.slice(1), ['panic=-1', 'printk.time=1', 'random.trust_cpu=on', 'norandmaps']);
  const args = qemuArgs(base({ arch: ppc, extraAppend: ['no_rfi_flush', 'livepatch.debug=1'] }));
  t.equal(args.filter((a) => a === '-append').length, 1);
  t.equal(after(args, '-append'), 'console=hvc0 panic=-1 printk.time=1 random.trust_cpu=on norandmaps no_rfi_flush livepatch.debug=1');
});

t.test('the SSH forward listens on 127.0.0.1 only, and the guest reaches nothing outside', async (t) => {
  const args = qemuArgs(base({ sshPort: 40123 }));
  const netdevs = args.filter((_, i) => args[i - 1] === '-netdev');
  t.same(netdevs, ['user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:40123-:22']);
  t.equal(args.filter((a) => a.includes('hostfwd')).length, 1, 'no other forward');
  t.ok(args.includes('virtio-net-pci,netdev=n0'), 'the NIC uses that netdev');
});

t.test('a QMP socket and a saved state are asked for only when given', async (t) => {
  const plain = qemuArgs(base());
  t.notOk(plain.includes('-qmp'));
  t.notOk(plain.includes('-loadvm'));
  t.notOk(plain.includes('-drive'));
  t.equal(after(qemuArgs(base({ qmpSocket: '/run/x/qmp.sock' })), '-qmp'), 'unix:/run/x/qmp.sock,server=on,wait=off', 'a server socket QEMU does not wait on');
  const image = "/tmp/klp-warm-x/it's.qcow2";
  const args = qemuArgs(base({ vmstateImage: image, loadvm: 'klp-pristine', paused: true }));
  t.equal(after(args, '-drive'), `if=none,id=klp-vmstate,format=qcow2,cache=unsafe,file=${image}`, 'the image as a drive no device uses');
  t.equal(after(args, '-loadvm'), 'klp-pristine', 'the state saved under that name, loaded at start-up');
  t.ok(args.includes('-S'), 'paused until cont');
  for (const flag of ['-kernel', '-initrd', '-append']) t.notOk(args.includes(flag), `no ${flag}: the saved state replaces the guest's memory`);
  t.equal(after(qemuArgs(base({ vmstateImage: image })), '-kernel'), '/k/bzImage', 'a boot with an image to save into still boots its kernel');
  const text = qemuCommandText('qemu-system-x86_64', base({ vmstateImage: image, loadvm: 'klp-pristine' }));
  t.same(shWords(text).slice(-4), ['-drive', `if=none,id=klp-vmstate,format=qcow2,cache=unsafe,file=${image}`, '-loadvm', 'klp-pristine'], 'the logged command is the whole restore, quoted for a shell');
});

t.test('the console log is on disk as soon as the VM exists; a log that cannot be made starts no QEMU', async (t) => {
  const { dir, bin } = script(t, `touch ${'"$0".ran'}; exit 0`);
  const consoleLog = join(dir, 'console.log');
  const vm = new QemuVM(base({ consoleLog, binary: bin }));
  killAtEnd(t, () => vm.pid);
  t.ok(existsSync(consoleLog), 'the file exists before any event-loop turn');
  await vm.exited;
  t.ok(existsSync(`${bin}.ran`), 'the stand-in ran');
  const other = script(t, `touch ${'"$0".ran'}; exit 0`);
  t.throws(() => new QemuVM(base({ consoleLog: join(other.dir, 'no-such-dir', 'console.log'), binary: other.bin })), /ENOENT/);
  await new Promise((r) => setTimeout(r, 300));
  t.notOk(existsSync(`${other.bin}.ran`), 'no QEMU was started');
});

t.test('processCpuMs: this process\'s CPU time in ms; nothing for no pid or a pid that is gone', async (t) => {
  const before = processCpuMs(process.pid);
  t.type(before, 'number');
  // Burn 200 ms of CPU as node counts it: /proc must count about as much.
  const start = process.cpuUsage();
  const wallStart = Date.now();
  let x = 0;
  while (Date.now() - wallStart < 10_000) {
    for (let i = 0; i < 1e5; i++) x += Math.sqrt(i);
    const used = process.cpuUsage(start);
    if ((used.user + used.system) / 1000 >= 200) break;
  }
  t.ok(x > 0);
  const delta = processCpuMs(process.pid)! - before!;
  t.ok(delta >= 150 && delta <= 1000, `/proc counted ${delta} ms for 200 ms burnt`);
  t.equal(processCpuMs(undefined), undefined);
  t.equal(processCpuMs(0), undefined);
  const reaped = spawnSync('true').pid;
  t.equal(processCpuMs(reaped), undefined, 'a process that has exited and been reaped');
});

t.test('a QemuVM on the fake QEMU: its command quoted, the panic reported, lines kept, stopped with its whole group', async (t) => {
  const dir = tempDir(t);
  const consoleLog = join(dir, 'console.log');
  const seen: string[] = [];
  const binary = fixture('procs/fake-qemu.sh');
  const options = base({ kernel: join(dir, "my kernel's bzImage"), consoleLog, binary, env: { FAKE_QEMU_MODE: 'panic' }, onConsoleLine: (l) => seen.push(l), extraAppend: ['a=b c'] });
  const vm = new QemuVM(options);
  killAtEnd(t, () => vm.pid);
  t.same(shWords(vm.command), [binary, ...qemuArgs(options)], 'the command a person can paste is the argv QEMU got');
  const fatal = await vm.fatal;
  t.equal(fatal.kind, 'panic');
  t.match(fatal.line, /Kernel panic - not syncing: VFS/);
  t.same(vm.events.map((e) => e.kind), ['panic']);
  t.ok(vm.running, 'a panic does not stop QEMU by itself');
  t.match(await vm.waitForLine(/Linux version/), /6\.1\.0 \(fake\)/, 'a line from before the wait is found in the ring buffer');
  t.same(vm.console.last(), seen, 'every line went to onConsoleLine and the ring buffer');
  t.ok(vm.lastLineAt >= vm.startedAt);
  const pid = vm.pid!;
  t.ok(await soon(() => groupMembers(pid).length >= 2, 5000), 'the script and its sleep run in the group');
  const exit = await vm.stop(1000);
  t.equal(exit.signal, 'SIGTERM');
  t.equal(exit.code, null);
  t.notOk(vm.running);
  t.same(vm.exit, exit);
  t.type(vm.cpuMs, 'number', 'its CPU time was read before it stopped');
  t.ok(await goneSoon(pid));
  // The script's sleep got the same SIGTERM; on a loaded host it may still be exiting (state R, reparented) when the script is gone.
  await soon(() => groupMembers(pid).length === 0);
  t.same(groupMembers(pid), [], 'nothing of its group is left');
  const log = await readWhen(consoleLog, (s) => s.includes('Kernel panic'));
  t.equal(log.split('\n')[0], `# ${vm.command}`, 'the log starts with the command');
  t.match(log, /Linux version 6\.1\.0 \(fake\)\n.*Kernel panic/);
});

t.test('console lines are cleaned and cut, reports bounded, stderr kept, and a waited-for line remembered', async (t) => {
  const { dir, bin } = script(
    t,
    [
      "printf '\\033[1;32mOK\\033[0m firmware done\\r\\n'",
      "echo 'klp-init: ready'",
      'i=0; while [ $i -lt 600 ]; do echo "WARNING: CPU: 0 PID: $i at kernel/fake.c:1 fake+0x0"; i=$((i+1)); done',
      "head -c 20000 /dev/zero | tr '\\0' a; echo",
      "echo 'qemu-system-x86_64: warning: a fake complaint' >&2",
      'exit 3',
    ].join('\n'),
  );
  const consoleLog = join(dir, 'console.log');
  const seen: string[] = [];
  const vm = new QemuVM(base({ consoleLog, binary: bin, onConsoleLine: (l) => seen.push(l) }));
  killAtEnd(t, () => vm.pid);
  const ready = /klp-init: ready/;
  const waited = vm.waitForLine(ready);
  const exit = await vm.exited;
  t.same(exit, { code: 3, signal: null, stderr: 'qemu-system-x86_64: warning: a fake complaint\n' });
  t.equal(await waited, 'klp-init: ready');
  t.equal(seen[0], 'OK firmware done', 'escapes and the carriage return are gone');
  t.same(seen.slice(-2).map((l) => l.length), [CONSOLE_LINE_MAX_CHARS, 20000 - CONSOLE_LINE_MAX_CHARS], 'a 20000-character line comes in pieces');
  t.equal(vm.console.last().length, 120, 'the ring buffer keeps the last 120 lines');
  t.notOk(vm.console.last().some((l) => ready.test(l)), 'the ready line has left the ring buffer');
  t.equal(await vm.waitForLine(ready), 'klp-init: ready', 'a pattern waited for before is remembered');
  t.ok(await pendingAfter(vm.waitForLine(/klp-init: ready/), 100), 'another pattern looks in the ring buffer only');
  t.equal(vm.events.length, 500, 'reports are kept up to a bound');
  t.match(vm.events[0]!.line, /PID: 0 at/, 'the first ones');
  t.match(vm.events[499]!.line, /PID: 499 at/);
  t.ok(await pendingAfter(vm.fatal, 50), 'WARNINGs are not fatal');
  t.same(await vm.stop(100), exit, 'stopping an exited VM gives its exit');
  t.equal(vm.cpuMs, undefined, 'no CPU time read from a process that was gone');
  const log = await readWhen(consoleLog, (s) => s.includes('# qemu stderr:'));
  t.match(log, /# qemu stderr: qemu-system-x86_64: warning: a fake complaint/);
});

t.test('the console log stops at its bound; the panic after it is still seen', async (t) => {
  const line = 'x'.repeat(49);
  const { dir, bin } = script(t, `i=0; while [ $i -lt 100 ]; do echo ${line}; i=$((i+1)); done\necho 'Kernel panic - not syncing: after the flood'\nexit 0`);
  const consoleLog = join(dir, 'console.log');
  const vm = new QemuVM(base({ consoleLog, binary: bin, consoleLogMaxBytes: 1000 }));
  killAtEnd(t, () => vm.pid);
  t.match((await vm.fatal).line, /after the flood/);
  await vm.exited;
  const log = await readWhen(consoleLog, (s) => s.includes('console log stopped'));
  const output = `${line}\n`.repeat(100);
  t.equal(log, `# ${vm.command}\n${output.slice(0, 1000)}\n# klp-harness: console log stopped at 1000 bytes; the rest was only watched for panics\n`);
});
