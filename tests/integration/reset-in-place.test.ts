// A finished guest's QEMU reset in place (loadvm) for the next guest of the
// same snapshot, on real guests of both arches: the same QEMU process serves
// the next guest, and nothing of the earlier guest is in it (a file, a loaded
// module, a kernel log line, its console); its clock is back at the
// snapshot's and its timers run. A guest whose QEMU died is not reused, and
// the pool stops the QEMUs it kept when it ends.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { getArch, type ArchRecord } from '../../harness/core/arch.js';
import { cacheRoot } from '../../harness/core/cache.js';
import { createLogger } from '../../harness/core/log.js';
import { prepareRun } from '../../harness/pipeline/prepare.js';
import { procStat } from '../../harness/proc/stat.js';
import { GuestPool } from '../../harness/vm/guest-pool.js';
import { tempDir } from '../helpers.js';

const logger = createLogger('normal');
const uptime = async (g: { ssh: { exec(c: string): Promise<{ stdout: string }> } }) => Number((await g.ssh.exec('read a _ < /proc/uptime; echo $a')).stdout.trim());

async function resetInPlace(t: Test, arch: ArchRecord, cpu: string) {
  const p = await prepareRun({ arches: [arch], cacheDir: cacheRoot(), logger });
  const { build, images, modules } = p.artifacts.get(arch.name)!;
  const dir = tempDir(t);
  // Its own snapshot cache: the first guest makes the snapshot; the pool keeps that guest's QEMU.
  const pool = new GuestPool({ cacheDir: tempDir(t), logger, qemu: p.qemu });
  t.teardown(() => pool[Symbol.asyncDispose]());
  const req = (n: number) => ({ arch, cpu, kernel: build.image, initrd: images.get('base')!.path, keys: p.keys, consoleLog: join(dir, `console-${n}.log`) });
  const marker = `klp-test-guest-1-was-here-${process.pid}`;
  let pid1: number;
  let leftAt: number;
  {
    await using g1 = await pool.guest(req(1));
    t.ok(g1.restored && !g1.restored.inPlace, 'the first guest is a restore in a QEMU of its own');
    pid1 = g1.vm.pid!;
    await g1.ssh.putAll([{ data: readFileSync(modules.modules['klp_sleeper.ko']!), remotePath: '/root/klp_sleeper.ko' }]);
    const r = await g1.ssh.exec(`insmod /root/klp_sleeper.ko && echo dirty > /run/left-by-guest-1 && echo ${marker} > /dev/kmsg && grep -c '^klp_sleeper ' /proc/modules`);
    t.equal(r.stdout.trim(), '1', `the first guest loaded a module and left a file and a kernel log line (${r.stderr.trim()})`);
    await g1.vm.waitForLine(new RegExp(marker));
    // A second of guest clock more than the reset and its SSH connection take.
    await g1.ssh.exec('usleep 1000000');
    leftAt = await uptime(g1);
  }
  let pid2: number;
  {
    await using g2 = await pool.guest(req(2));
    pid2 = g2.vm.pid!;
    t.equal(pid2, pid1, 'the second guest runs in the first guest\'s QEMU');
    t.same(g2.restored?.inPlace, { pid: pid1, guest: 2 }, 'and says it was reset in place, as its guest 2');
    const r = await g2.ssh.exec(`cat /run/left-by-guest-1 2>/dev/null || echo no-file; grep -c '^klp_sleeper ' /proc/modules; dmesg | grep -c ${marker}`);
    t.same(r.stdout.trim().split('\n'), ['no-file', '0', '0'], 'no file, no module, no kernel log line of the first guest');
    const at = await uptime(g2);
    t.ok(at < leftAt, `its clock is back at the snapshot's (uptime ${at} s, the first guest ended at ${leftAt} s)`);
    const up = await g2.ssh.exec('read a _ < /proc/uptime; usleep 300000; read b _ < /proc/uptime; echo $a $b');
    const [a, b] = up.stdout.trim().split(' ').map(Number) as [number, number];
    t.ok(b - a >= 0.29 && b - a < 5, `its clock runs and a 300 ms sleep ends (uptime ${a} -> ${b})`);
    t.match(readFileSync(join(dir, 'console-1.log'), 'utf8'), marker, "the first guest's console has its line");
    const console2 = readFileSync(join(dir, 'console-2.log'), 'utf8');
    t.notMatch(console2, marker, "the second guest's console has nothing of the first");
    t.match(console2, /^# klp-harness: QEMU pid \d+ reset in place \(loadvm\) to \S+\/pristine\.qcow2 for its guest 2; its guest before: \S+console-1\.log/);
    t.comment(`QEMU CPU to SSH: reset ${g2.cpu.atReadyMs} ms (${g2.readyMs} ms wall)`);
    // This guest's QEMU dies: it cannot serve another.
    process.kill(pid2, 'SIGKILL');
    await g2.vm.exited;
  }
  {
    await using g3 = await pool.guest(req(3));
    t.not(g3.vm.pid, pid2, 'after its QEMU died, the next guest is restored in a new QEMU');
    t.ok(g3.restored && !g3.restored.inPlace, 'restored, not reset');
    pid2 = g3.vm.pid!;
  }
  t.ok(procStat(pid2), 'the pool keeps the last QEMU (paused) for a next guest');
  t.equal(procStat(pid2)?.state === 'Z' ? 'zombie' : 'alive', 'alive');
  await pool[Symbol.asyncDispose]();
  t.notOk(procStat(pid2), 'and stops it when the pool ends');
}

t.test('x86_64: a guest reset in place is pristine', (t) => resetInPlace(t, getArch('x86_64'), 'max'));
t.test('ppc64le POWER9: a guest reset in place is pristine', (t) => resetInPlace(t, getArch('ppc64le'), 'power9'));
