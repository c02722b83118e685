// The KVM probe's test guest under the real QEMU: with software emulation it
// must print, or a broken test firmware would call every KVM host unusable.
// And what this host decided, as a run sees it.
import t from 'tap';
import { getArch } from '../../harness/core/arch.js';
import { cacheRoot } from '../../harness/core/cache.js';
import { createLogger } from '../../harness/core/log.js';
import { Accelerator, runProbe } from '../../harness/vm/accel.js';
import { tempDir } from '../helpers.js';

const arch = getArch('x86_64');

t.test('the x86 test guest prints its line under the real QEMU (TCG)', async (t) => {
  const r = await runProbe(arch.qemu.binary, arch, 'tcg', tempDir(t), 10_000);
  t.ok(r.ok, r.why);
  t.match(r.why, /a test guest printed on its console in [\d.]+ s/);
});

t.test('a run on this host decides the accelerator in the probe bound, and later runs pay nothing', async (t) => {
  const lines: string[] = [];
  const logger = createLogger('normal', { out: (s) => lines.push(s), live: false });
  const first = await Accelerator.decide({ arch, cacheDir: cacheRoot(), logger });
  const probes = () => lines.join('').match(/probing KVM with a test guest/g)?.length ?? 0;
  const before = probes();
  const a = await Accelerator.decide({ arch, cacheDir: cacheRoot(), logger });
  // Paying nothing means no second probe (no QEMU started), whatever the host's load makes of the clock.
  t.equal(probes(), before, 'the second decision reads the recorded verdict: no probe guest started');
  t.equal(a.accel, first.accel, 'and comes to the same accelerator');
  t.comment(`this host: ${a.accel}: ${a.why}`);
  t.match(lines.join(''), /accel x86_64: (KVM|software emulation \(TCG\)): /);
});
