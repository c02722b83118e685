// Snapshots against the fake QEMU: what the key depends on, and a restore
// that fails falling back to a boot, visibly.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { getArch } from '../../../harness/core/arch.js';
import { writeMarker } from '../../../harness/core/cache.js';
import { HarnessError } from '../../../harness/core/errors.js';
import { createLogger } from '../../../harness/core/log.js';
import { loadKeys } from '../../../harness/image/keys.js';
import { Accelerator } from '../../../harness/vm/accel.js';
import { freshGuest, snapshotKey, SnapshotBook, stateHasSection, type FreshGuestRequest, type WarmQemu } from '../../../harness/vm/snapshot.js';
import { fixture, tempDir } from '../../helpers.js';

const arch = getArch('x86_64');

function request(t: Test, lines: string[]): FreshGuestRequest {
  const dir = tempDir(t);
  const kernel = join(dir, 'bzImage');
  const initrd = join(dir, 'initrd');
  writeFileSync(kernel, 'kernel one');
  writeFileSync(initrd, 'image one');
  const logger = createLogger('normal', { out: (s) => lines.push(s), live: false });
  return { arch, kernel, initrd, keys: loadKeys(dir), consoleLog: join(dir, 'console.log'), logger, qemuBinary: fixture('procs/fake-qemu.sh'), accel: Accelerator.fixed('tcg'), cacheDir: join(dir, 'cache'), snapshots: true };
}

t.test('the key follows the kernel, the image, the CPU and the command line, not the SSH port', async (t) => {
  const req = request(t, []);
  const a = await snapshotKey(req);
  t.match(a.key, /^x86_64-max-[0-9a-f]{16}$/);
  t.match(a.inputs.qemu, /QEMU emulator version 0\.0\.0 \(fake\)/);
  t.notMatch(a.inputs.args, /hostfwd=tcp:127\.0\.0\.1:[1-9]/, 'the port is left out');
  t.not((await snapshotKey({ ...req, extraAppend: ['quiet'] })).key, a.key, 'another kernel command line');
  t.not((await snapshotKey({ ...req, cpu: 'Skylake-Server' })).key, a.key, 'another CPU model');
  const kernel2 = req.kernel + '2';
  writeFileSync(kernel2, 'kernel two');
  t.not((await snapshotKey({ ...req, kernel: kernel2 })).key, a.key, 'another kernel');
  // A state saved under one accelerator is never restored under the other (issue 22).
  t.not((await snapshotKey({ ...req, accel: Accelerator.fixed('kvm') })).key, a.key, 'another accelerator');
  t.not((await snapshotKey({ ...req, qemuDataArgs: ['-L', '/elsewhere'] })).key, a.key, "another QEMU's firmware");
});

for (const [how, reuse] of [
  ['a QEMU for one guest, on the RAM file, then from the image', false],
  ['a QEMU that may serve more, from a copy of the image', true],
] as const) {
t.test(`a restore that fails is said, and the guest boots instead (here into a panic): ${how}`, async (t) => {
  const lines: string[] = [];
  const req = request(t, lines);
  const { key, inputs } = await snapshotKey(req);
  const dir = join(req.cacheDir, 'snapshots', key);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'pristine.qcow2'), 'not a qcow2 image with a saved state');
  writeFileSync(join(dir, 'state'), 'not a migration stream');
  writeFileSync(join(dir, 'ram'), Buffer.alloc(4096));
  await writeMarker(dir, key, inputs, ['pristine.qcow2', 'state'], { bootMs: 1, saveMs: 1, stateBytes: 16, bootEvents: [] }, { sizeOnly: ['ram'] });
  process.env.FAKE_QEMU_LOADVM = 'fail';
  process.env.FAKE_QEMU_MODE = 'panic';
  t.teardown(() => {
    delete process.env.FAKE_QEMU_LOADVM;
    delete process.env.FAKE_QEMU_MODE;
  });
  const err = await freshGuest(req, new SnapshotBook(reuse)).then(
    () => undefined,
    (e: unknown) => e,
  );
  const log = lines.join('');
  t.match(log, /restore x86_64: software emulation \(TCG\)/, 'a restore was tried first');
  if (!reuse) t.match(log, new RegExp(`snapshot x86_64: a restore on the RAM file of \\S*${key} failed \\(QEMU exited \\(code 1[^\\n]*load of migration failed: Invalid argument\\); from the image instead`));
  t.match(log, new RegExp(`snapshot x86_64: restore from \\S*${key} failed: QEMU exited \\(code 1[^\\n]*Snapshot 'klp-pristine' does not exist in one or more devices; booting instead`));
  t.type(err, HarnessError);
  t.match((err as HarnessError).message, /kernel failed during boot: .*Kernel panic/, 'then it booted, and the boot is what failed');
});
}

t.test('a snapshot entry recorded as unusable is not restored: its guests boot, and the log and report say why', async (t) => {
  const lines: string[] = [];
  const req = request(t, lines);
  const { key, inputs } = await snapshotKey(req);
  const dir = join(req.cacheDir, 'snapshots', key);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'pristine.qcow2'), 'a state without the section');
  await writeMarker(dir, key, inputs, ['pristine.qcow2'], { bootMs: 1, saveMs: 1, stateBytes: 16, bootEvents: [], unusable: 'the saved state has no XYZ' });
  process.env.FAKE_QEMU_MODE = 'panic';
  t.teardown(() => delete process.env.FAKE_QEMU_MODE);
  const err = await freshGuest(req).then(
    () => undefined,
    (e: unknown) => e,
  );
  const log = lines.join('');
  t.notMatch(log, /restore x86_64:/, 'no restore was tried');
  t.match(log, new RegExp(`snapshot x86_64: no snapshot for max on QEMU emulator version 0\\.0\\.0 \\(fake\\): the saved state has no XYZ \\(\\S*${key}\\); these guests boot`));
  t.match((err as HarnessError).message, /kernel failed during boot/, 'it booted');
});

t.test('a saved state has a section when its header names it (length byte, then the idstr), not when guest memory holds the words', async (t) => {
  const dir = tempDir(t);
  const withIt = join(dir, 'with');
  const without = join(dir, 'without');
  // QEMU_VM_SECTION_FULL, a section id, the idstr with its length, instance and version ids.
  writeFileSync(withIt, Buffer.concat([Buffer.from('QEVM'), Buffer.from([4, 0, 0, 0, 7, 10]), Buffer.from('icp/server'), Buffer.from([0, 0, 0, 0, 0, 0, 0, 1])]));
  writeFileSync(without, Buffer.concat([Buffer.from('QEVM'), Buffer.from('guest text: icp/server and xive-tctx'), Buffer.from([9]), Buffer.from('xive-tctx')]));
  t.ok(stateHasSection(withIt, 'icp/server'));
  t.notOk(stateHasSection(without, 'icp/server'), 'the words alone are not a section');
  t.ok(stateHasSection(without, 'xive-tctx'));
  t.notOk(stateHasSection(withIt, 'xive-tctx'));
  const ppc = getArch('ppc64le').qemu.restoreLimits!;
  t.same(Object.keys(ppc.stateSections ?? {}).sort(), [...ppc.cpuModels].sort(), 'every ppc64le CPU model that restores names the section its state needs');
});

t.test('QEMU versions: snapshots on pseries need 8.1 or later', async (t) => {
  const { versionAtLeast } = await import('../../../harness/vm/snapshot.js');
  t.notOk(versionAtLeast('QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)', '8.1'));
  t.ok(versionAtLeast('QEMU emulator version 8.1.0', '8.1'));
  t.ok(versionAtLeast('QEMU emulator version 10.0.2 (Debian)', '8.1'));
  t.notOk(versionAtLeast('QEMU emulator version 8.0.5', '8.1'));
  t.notOk(versionAtLeast('no version here', '8.1'), 'an unreadable version is not assumed new');
  t.equal(getArch('ppc64le').qemu.snapshotsFrom?.version, '8.1');
});

t.test('a paused QEMU no guest still to come wants stops at once: when its arch says so, or when it pauses after that', async (t) => {
  const book = new SnapshotBook(true, 8);
  const stopped: string[] = [];
  const qemu = (arch: string, key: string) => ({ book, key, arch, dir: tempDir(t), qmp: { close() {} }, vm: { stop: async () => void stopped.push(key) } }) as unknown as WarmQemu;
  const pause = (w: WarmQemu) => {
    book.live++;
    return book.putIdle(w);
  };
  t.ok(pause(qemu('x86_64', 'x-a')), 'before its arch has said what it wants, every paused QEMU is kept');
  t.ok(pause(qemu('x86_64', 'x-b')));
  t.ok(pause(qemu('ppc64le', 'p-a')));
  await book.want('x86_64', new Set(['x-b', 'x-c']), new Set(['x-c']));
  t.same(stopped, ['x-a'], "x86_64's snapshot no run wants: its QEMU stopped; the other arch's untouched (it has said nothing)");
  t.equal(book.live, 2);
  t.equal(book.takeIdle('x-a'), undefined);
  t.not(book.takeIdle('x-b'), undefined, 'a wanted one is still handed out');
  book.live--;
  t.notOk(pause(qemu('x86_64', 'x-d')), 'a QEMU pausing for a snapshot no run wants is not kept (the caller stops it)');
  t.ok(pause(qemu('x86_64', 'x-c')), 'a wanted one is');
  await book.want('x86_64', new Set(), new Set());
  t.same(stopped, ['x-a', 'x-c'], 'the queue empty: every paused QEMU of the arch stops');
  await book.want('ppc64le', new Set(['p-a']), new Set(['p-a']));
  t.same(stopped, ['x-a', 'x-c'], 'nothing stops that is wanted');
  await book.close();
  t.same(stopped, ['x-a', 'x-c', 'p-a']);
});

t.test('a QEMU serves one guest where QEMUs are not reused or no guest of its snapshot is queued: it starts on the RAM file', async (t) => {
  t.ok(new SnapshotBook(false, 8).singleUse('x86_64', 'x-a'), 'no reuse: every QEMU serves one guest');
  const book = new SnapshotBook(true, 8);
  t.notOk(book.singleUse('x86_64', 'x-a'), 'reuse, and the arch has not said what it has left: it may serve more (a copy of the image, reset in place)');
  await book.want('x86_64', new Set(['x-a', 'x-b']), new Set(['x-b']));
  t.ok(book.singleUse('x86_64', 'x-a'), 'no queued guest restores from x-a (its run is taken)');
  t.notOk(book.singleUse('x86_64', 'x-b'), 'a queued guest restores from x-b');
  t.notOk(book.singleUse('ppc64le', 'x-a'), "another arch's word does not count");
});

t.test('paused QEMUs kept for reuse never push a run past its QEMUs: a new one stops the oldest paused first', async (t) => {
  const book = new SnapshotBook(true, 2);
  const stopped: string[] = [];
  const paused = (key: string) => {
    const w = { book, key, dir: tempDir(t), qmp: { close() {} }, vm: { stop: async () => void stopped.push(key) } } as unknown as WarmQemu;
    book.live++;
    book.putIdle(w);
    return w;
  };
  paused('a');
  paused('b');
  t.equal(book.takeIdle('c'), undefined, 'no paused QEMU of another snapshot is handed out');
  await book.makeRoom();
  t.same(stopped, ['a'], 'two QEMUs of two allowed: the oldest paused one stops before a new one starts');
  t.equal(book.live, 1);
  t.equal(book.takeIdle('a'), undefined, 'a stopped QEMU is not handed out');
  t.not(book.takeIdle('b'), undefined, 'the other is, for its own snapshot');
  t.equal(book.takeIdle('b'), undefined, 'and only once');
  await book.makeRoom();
  t.same(stopped, ['a'], 'nothing paused: nothing to stop');
  paused('d');
  await book.close();
  t.same(stopped, ['a', 'd'], 'the end of the run stops every paused QEMU');
  t.equal(book.live, 1, "b's guest, taken and still in use, is counted until its own end stops it");
});
