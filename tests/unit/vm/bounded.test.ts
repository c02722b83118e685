// A guest cannot make the harness hold without bound: a QEMU stand-in that
// floods its console (lines, or bytes with no newline at all), and an SSH
// server that floods a command's output or never answers.
import { chmodSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { getArch } from '../../../harness/core/arch.js';
import { HarnessError } from '../../../harness/core/errors.js';
import { CONSOLE_LINE_MAX_CHARS, QemuVM } from '../../../harness/vm/qemu.js';
import { CappedOutput, GuestShell } from '../../../harness/vm/ssh.js';
import { fakeSsh } from '../../fake-ssh.js';
import { tempDir } from '../../helpers.js';

const MiB = 1024 * 1024;

/** Runs a QEMU stand-in that prints `script`'s output, sampling this process's RSS until it exits. */
async function flood(t: Test, script: string) {
  const dir = tempDir(t);
  const bin = join(dir, 'qemu-flood');
  writeFileSync(bin, `#!/bin/sh\n${script}\necho 'Kernel panic - not syncing: after the flood'\nsleep 1\n`);
  chmodSync(bin, 0o755);
  const consoleLog = join(dir, 'console.log');
  const before = process.memoryUsage().rss;
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  const vm = new QemuVM({ arch: getArch('x86_64'), kernel: '/k', initrd: '/i', sshPort: 1, consoleLog, binary: bin, consoleLogMaxBytes: 8 * MiB });
  const fatal = await vm.fatal;
  await vm.exited;
  clearInterval(sampler);
  return { vm, fatal, growth: peak - before, logBytes: statSync(consoleLog).size };
}

t.test('a console flood of 400 MiB of lines: memory and the console log stay bounded, the panic after it is still seen', async (t) => {
  const r = await flood(t, `yes 'flood flood flood flood flood flood flood flood flood flood flood flood' | head -c ${400 * MiB}`);
  t.match(r.fatal.line, /after the flood/, 'the panic line after the flood is detected');
  t.ok(r.logBytes < 8 * MiB + 4096, `console log capped (${r.logBytes} bytes)`);
  t.ok(r.growth < 200 * MiB, `RSS grew ${Math.round(r.growth / MiB)} MiB while 400 MiB went through`);
  t.ok(r.vm.console.last().length <= 120, 'only the ring buffer keeps lines');
});

t.test('a console flood with no newline is cut into bounded lines', async (t) => {
  const r = await flood(t, `head -c ${200 * MiB} /dev/zero | tr '\\0' x`);
  t.match(r.fatal.line, /after the flood/);
  t.ok(r.vm.console.last().every((l) => l.length <= CONSOLE_LINE_MAX_CHARS), 'no line longer than the cap');
  t.ok(r.growth < 200 * MiB, `RSS grew ${Math.round(r.growth / MiB)} MiB while 200 MiB went through`);
});

t.test('CappedOutput keeps the head and says how much it dropped', async (t) => {
  const c = new CappedOutput(10);
  c.push(Buffer.from('0123456'));
  c.push(Buffer.from('789abc'));
  c.push(Buffer.from('def'));
  t.equal(c.text(), '0123456789\n[truncated 6 bytes]\n');
  const whole = new CappedOutput(10);
  whole.push(Buffer.from([0xc3]));
  whole.push(Buffer.from([0xa9]));
  t.equal(whole.text(), 'é', 'a character split across chunks stays whole');
});

/** An SSH server standing in for a guest: 'flood' prints 20 MiB; anything else never answers. */
async function fakeGuest(t: Test) {
  const g = fakeSsh(t, (command, ch) => {
    if (command !== 'flood') return; // a frozen guest: no output, no exit
    for (let i = 0; i < 20; i++) ch.write(Buffer.alloc(MiB, 'y'));
    ch.exit(0);
    ch.end();
  });
  const port = await g.listen();
  return GuestShell.connect({ port, keys: g.keys, deadlineMs: 10_000, commands: { commandMs: 1500, copyMs: 1500 } });
}

t.test('a guest command that never ends fails by its deadline, naming the command', async (t) => {
  const ssh = await fakeGuest(t);
  const started = Date.now();
  const err = (await ssh.exec('cat /sys/kernel/livepatch/klp_sleeper_lp/transition').catch((e) => e)) as HarnessError;
  t.type(err, HarnessError);
  t.equal(err.kind, 'timeout');
  t.match(err.message, /guest command 'cat \/sys\/kernel\/livepatch\/klp_sleeper_lp\/transition' did not finish within 1\.5 s/);
  t.equal(err.context.command, 'cat /sys/kernel/livepatch/klp_sleeper_lp/transition');
  t.ok(Date.now() - started < 3000, `gave up after ${Date.now() - started} ms (the connection's default deadline)`);
  const put = (await ssh.put(Buffer.from('x'), '/root/x').catch((e) => e)) as HarnessError;
  t.equal(put.kind, 'timeout', 'a copy has its deadline too');
  ssh.close();
});

t.test('a command that floods its output is capped with a visible marker', async (t) => {
  const ssh = await fakeGuest(t);
  const r = await ssh.exec('flood', { timeoutMs: 30_000 });
  t.equal(r.code, 0);
  t.ok(r.stdout.length < 5 * MiB, `kept ${r.stdout.length} bytes of 20 MiB`);
  t.match(r.stdout, /\n\[truncated \d+ bytes\]\n$/);
  ssh.close();
});
