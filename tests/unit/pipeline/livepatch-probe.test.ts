// Whether a kernel the harness did not build can livepatch: the booted kernel
// (/sys/kernel/livepatch) and its own config must agree before every scenario
// is skipped; a config with LIVEPATCH=y whose kernel has no livepatch
// directory is a broken kernel, not a reason to skip.
import t, { type Test } from 'tap';
import { getArch } from '../../../harness/core/arch.js';
import { silentLogger } from '../../../harness/core/log.js';
import type { BinaryKernel } from '../../../harness/kernel/binary-kernel.js';
import { probeLivepatch } from '../../../harness/pipeline/livepatch-probe.js';
import { GuestShell } from '../../../harness/vm/ssh.js';
import type { FreshGuest } from '../../../harness/vm/snapshot.js';
import { fakeSsh } from '../../fake-ssh.js';

/** A guest whose kernel has (or lacks) /sys/kernel/livepatch, as the probe's command sees it. */
async function guestWith(t: Test, hasDir: boolean): Promise<() => Promise<FreshGuest>> {
  const g = fakeSsh(t, (_command, ch) => {
    ch.write(`Linux version 6.1.0-57-powerpc64le (gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0)\nlivepatch=${hasDir ? 'yes' : 'no'}\n`);
    ch.exit(0);
    ch.end();
  });
  const port = await g.listen();
  return async () => {
    const ssh = await GuestShell.connect({ port, keys: g.keys, deadlineMs: 10_000, commands: { commandMs: 5000, copyMs: 5000 } });
    return { ssh, readyMs: 1, port, stalled: [], [Symbol.asyncDispose]: async () => ssh.close() } as unknown as FreshGuest;
  };
}

const kernelWith = (config: string) => ({ release: '6.1.0-57-powerpc64le', config }) as unknown as BinaryKernel;
const arch = getArch('ppc64le');

t.test('no livepatch directory and a config without LIVEPATCH: every scenario skips, saying why', async (t) => {
  const p = await probeLivepatch({ arch, kernel: kernelWith('CONFIG_HAVE_LIVEPATCH=y\n# CONFIG_LIVEPATCH is not set\n'), guest: await guestWith(t, false), logger: silentLogger });
  t.equal(p.livepatch, false);
  t.match(p.skip, /cannot livepatch: the booted 6\.1\.0-57-powerpc64le has no \/sys\/kernel\/livepatch \(its config has HAVE_LIVEPATCH=y but no CONFIG_LIVEPATCH\)/);
  t.match(p.procVersion, /gcc-12/);
});

t.test('no livepatch directory although the config has LIVEPATCH=y: no skip, the scenarios run and fail', async (t) => {
  const p = await probeLivepatch({ arch, kernel: kernelWith('CONFIG_HAVE_LIVEPATCH=y\nCONFIG_LIVEPATCH=y\n'), guest: await guestWith(t, false), logger: silentLogger });
  t.equal(p.livepatch, false);
  t.equal(p.skip, undefined);
});

t.test('a kernel that can livepatch: no skip', async (t) => {
  const p = await probeLivepatch({ arch, kernel: kernelWith('CONFIG_LIVEPATCH=y\n'), guest: await guestWith(t, true), logger: silentLogger });
  t.equal(p.livepatch, true);
  t.equal(p.skip, undefined);
});
