import t from 'tap';
import { ARCHES } from '../../../harness/core/arch.js';
import { MATRIX, stuckSetupOf } from '../../../harness/scenarios/matrix.js';
import { parseStatus } from '../../../harness/scenarios/sleeper.js';
import { showValue, stepApi } from '../../../harness/scenarios/runner.js';
import type { Check } from '../../../harness/scenarios/types.js';
import { guestBound, timeout } from '../../../harness/core/timeouts.js';

t.test('a bound check reports the measured time and the limit, not true/false', async (t) => {
  const checks: Check[] = [];
  const s = stepApi(checks);
  t.equal(s.atMost('signal write -> transition done (guest clock)', 11_800, 3_000, 'ms'), false);
  t.equal(s.atMost('fast', 420, 3_000, 'ms'), true);
  t.equal(s.atLeast('auto signal', 13_990, 14_000, 'ms'), false);
  t.equal(s.atLeast('wake-ups', 2, 1, 'count'), true);
  t.match(checks[0], { ok: false, expected: '<= 3.00 s', actual: '11.80 s', measured: { value: 11_800, limit: 3_000, unit: 'ms', bound: 'atMost' } });
  t.match(checks[1], { ok: true, actual: '0.42 s' });
  t.match(checks[2], { ok: false, expected: '>= 14.00 s', actual: '13.99 s' });
  t.match(checks[3], { ok: true, expected: '>= 1', actual: '2' });
});

t.test('a time that was never measured fails a bound instead of passing it', async (t) => {
  const checks: Check[] = [];
  const s = stepApi(checks);
  t.equal(s.atMost('remedy', NaN, 3_000, 'ms'), false);
  t.equal(s.atLeast('remedy', NaN, 0, 'ms'), false);
  t.equal(checks[0]!.actual, 'not measured');
  t.equal(showValue(1500, 'ms'), '1.50 s');
});

t.test('typed equality keeps numbers apart from their text and shows the kernel error of a refused write', async (t) => {
  const checks: Check[] = [];
  const s = stepApi(checks);
  t.equal(s.equal('wakeups', 0, 0), true);
  t.equal(s.equal('wakeups', '0', 0), false, 'a string reading is not the number');
  t.equal(s.accepted('write 1 to signal', { ok: false, error: 'Invalid argument' }), false);
  t.equal(checks[2]!.actual, 'Invalid argument');
  t.equal(s.refused('signal <- 1', { ok: false, error: 'Invalid argument' }, 'Invalid argument'), true);
  t.equal(s.refused('signal <- 1', { ok: true, error: '' }, 'Invalid argument'), false);
  t.equal(checks[4]!.actual, 'accepted');
});

t.test('guest-clock bounds stay well under the kernel\'s own signal on both arches and ignore the host scale', async (t) => {
  const before = process.env.KLP_HARNESS_TIMEOUT_SCALE;
  process.env.KLP_HARNESS_TIMEOUT_SCALE = '5';
  try {
    for (const arch of Object.values(ARCHES)) {
      const bound = guestBound('remedyToDone', arch);
      t.ok(bound <= 5_000, `${arch.name}: remedy bound ${bound} ms is far from the ~10 s until the automatic signal`);
      t.equal(guestBound('autoSignalAtLeast', arch), 14_000);
      t.ok(timeout('transition', arch) >= 5 * 10_000, 'host-side waits do scale');
    }
  } finally {
    if (before === undefined) delete process.env.KLP_HARNESS_TIMEOUT_SCALE;
    else process.env.KLP_HARNESS_TIMEOUT_SCALE = before;
  }
});

t.test('an empty KLP_HARNESS_TIMEOUT_SCALE counts as unset', async (t) => {
  const before = process.env.KLP_HARNESS_TIMEOUT_SCALE;
  process.env.KLP_HARNESS_TIMEOUT_SCALE = '';
  try {
    t.equal(timeout('guestCommand', ARCHES.x86_64!), 30_000);
  } finally {
    if (before === undefined) delete process.env.KLP_HARNESS_TIMEOUT_SCALE;
    else process.env.KLP_HARNESS_TIMEOUT_SCALE = before;
  }
});

t.test('the sleeper status line carries the wake-up counter', async (t) => {
  const st = parseStatus('user-idle sleeping=1 calls_old=1 calls_new=0 interrupted=0 wakeups=0 reads_done=0 released=0 pid=77\nkthread-loop sleeping=1 calls_old=1 calls_new=0 interrupted=0 wakeups=3 reads_done=0 released=0 pid=80\n');
  t.match(st['user-idle'], { sleeping: 1, wakeups: 0, pid: 77 });
  t.equal(st['kthread-loop']!.wakeups, 3);
});

t.test('repro derives its stuck state from the scenarios themselves', async (t) => {
  t.same(stuckSetupOf('unpatch-force'), { blocker: 'user-idle', direction: 'unpatching' });
  t.same(stuckSetupOf('signal-kthread-int'), { blocker: 'kthread-int', direction: 'patching' });
  t.equal(stuckSetupOf('no-blocker'), undefined);
  const names = MATRIX.map((s) => s.name);
  t.equal(new Set(names).size, names.length, 'scenario names are unique');
});
