import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { BOOT_INIT, bootModulesArchive, bootModulesOf, moduleName, planBootModules } from '../../../harness/image/boot-modules.js';
import { listCpio } from '../../../harness/image/cpio.js';
import { tempDir } from '../../helpers.js';

// As depmod writes it for Debian's 6.1 amd64 (trimmed): virtio_net needs the failover pair and the virtio core.
const DEP = `kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/net/core/failover.ko:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/char/hw_random/virtio-rng.ko.xz: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/fs/ext4/ext4.ko:
`;

t.test('module names: no .ko suffix (compressed or not), dashes as underscores', async (t) => {
  t.equal(moduleName('kernel/drivers/char/hw_random/virtio-rng.ko.xz'), 'virtio_rng');
  t.equal(moduleName('virtio_net.ko'), 'virtio_net');
  t.equal(moduleName('a/b/x-y.ko.zst'), 'x_y');
});

t.test('boot modules: every dependency before its user, each once, nothing not asked for', async (t) => {
  const plan = planBootModules(DEP, '', ['virtio_pci', 'virtio_net', 'virtio_rng']);
  const names = plan.load.map(moduleName);
  t.same(plan.missing, []);
  t.same(plan.builtin, []);
  t.equal(new Set(names).size, names.length, 'each module once');
  t.notOk(names.includes('ext4'), 'only what was asked for and its dependencies');
  const before = (a: string, b: string) => t.ok(names.indexOf(a) < names.indexOf(b), `${a} before ${b}`);
  before('virtio', 'virtio_ring');
  before('virtio_ring', 'virtio_pci');
  before('virtio_pci_modern_dev', 'virtio_pci');
  before('failover', 'net_failover');
  before('net_failover', 'virtio_net');
  before('virtio_pci', 'virtio_net');
  t.equal(names.at(-1), 'virtio_rng');
});

t.test('boot modules: built-in drivers are not loaded; a driver the kernel lacks entirely is named', async (t) => {
  const plan = planBootModules('', 'kernel/drivers/virtio/virtio_pci.ko\nkernel/drivers/net/virtio_net.ko\n', ['virtio_pci', 'virtio_net', 'virtio_rng']);
  t.same(plan.load, []);
  t.same(plan.builtin, ['virtio_pci', 'virtio_net']);
  t.same(plan.missing, ['virtio_rng']);
  const dir = tempDir(t);
  writeFileSync(join(dir, 'modules.dep'), '');
  writeFileSync(join(dir, 'modules.builtin'), 'kernel/drivers/virtio/virtio_pci.ko\n');
  t.throws(() => bootModulesOf(dir), /neither built in nor as a module: virtio_net, virtio_rng/);
});

t.test('the appended archive: decompressed modules, their order, our init kept as /init.klp, the loader as /init', async (t) => {
  const dir = tempDir(t);
  for (const rel of DEP.split('\n').map((l) => l.split(':')[0]!).filter(Boolean)) {
    mkdirSync(join(dir, rel, '..'), { recursive: true });
    const plain = rel.replace(/\.xz$/, '');
    writeFileSync(join(dir, plain), `module ${moduleName(rel)}\n`);
    if (rel.endsWith('.xz')) execFileSync('xz', ['-z', join(dir, plain)]);
  }
  writeFileSync(join(dir, 'modules.dep'), DEP);
  const plan = bootModulesOf(dir);
  const files = new Map(listCpio(await bootModulesArchive(dir, plan, '#!/bin/busybox sh\necho ours\n')).map((e) => [e.path, e]));
  t.equal(files.get('lib/klp-boot-modules/virtio_rng.ko')?.data.toString(), 'module virtio_rng\n', 'the .ko.xz is unpacked');
  t.equal(files.get('lib/klp-boot-modules/order')?.data.toString(), plan.load.map(moduleName).join('\n') + '\n');
  t.equal(files.get('init.klp')?.data.toString(), '#!/bin/busybox sh\necho ours\n');
  t.equal(files.get('init')?.data.toString(), BOOT_INIT);
  t.equal((files.get('init')!.mode & 0o777).toString(8), '755');
  t.notOk(files.has('lib/klp-boot-modules/ext4.ko'));
});
