// Time bounds: host deadlines scale per arch and with KLP_HARNESS_TIMEOUT_SCALE,
// intervals and graces do not, guest-clock bounds never follow the host, and
// a scale that is not a positive number is refused at the door.
import t from 'tap';
import { ARCHES, type ArchRecord } from '../../../harness/core/arch.js';
import { HarnessError } from '../../../harness/core/errors.js';
import { checkTimeoutScale, guestBound, hostMs, KVM_MS, timeout, type GuestBoundName, type HostWait, type TimeoutName } from '../../../harness/core/timeouts.js';

// Tables over every name (the compiler refuses one left out): which waits are deadlines.
const TIMEOUT_NAMES: Record<TimeoutName, true> = { bootToSsh: true, restoreToSsh: true, bootSilence: true, guestCommand: true, transition: true, blockerState: true, autoSignal: true, fileCopy: true };
const HOST_WAITS: Record<HostWait, 'deadline' | 'fixed'> = {
  qmpConnect: 'deadline',
  qmpAnswer: 'deadline',
  sshHandshake: 'deadline',
  canaryLine: 'deadline',
  toolVersion: 'deadline',
  restoredTimers: 'deadline',
  qmpPoll: 'fixed',
  restorePoll: 'fixed',
  blockerPoll: 'fixed',
  deathNotice: 'fixed',
  lastConsoleLine: 'fixed',
  sshCloseSettle: 'fixed',
  vmStopGrace: 'fixed',
  interruptKill: 'fixed',
  interruptExit: 'fixed',
  lockRecord: 'fixed',
};
const GUEST_BOUNDS: Record<GuestBoundName, 'scaled' | 'floor'> = { remedyToDone: 'scaled', stuckSpan: 'scaled', noChangeSpan: 'scaled', autoSignalAtLeast: 'floor' };
const TIMEOUTS = Object.keys(TIMEOUT_NAMES) as TimeoutName[];
const HOST_DEADLINES = (Object.keys(HOST_WAITS) as HostWait[]).filter((n) => HOST_WAITS[n] === 'deadline');
const HOST_FIXED = (Object.keys(HOST_WAITS) as HostWait[]).filter((n) => HOST_WAITS[n] === 'fixed');
const GUEST_SCALED = (Object.keys(GUEST_BOUNDS) as GuestBoundName[]).filter((n) => GUEST_BOUNDS[n] === 'scaled');

const x86 = ARCHES.x86_64!;
/** An arch record with other scales (the rest as x86_64's). */
const archWith = (timeoutScale: number, guestClockScale = 1): ArchRecord => ({ ...x86, timeoutScale, guestClockScale });

/** Runs fn with KLP_HARNESS_TIMEOUT_SCALE set to value (undefined: unset). */
function withScale<T>(value: string | undefined, fn: () => T): T {
  const before = process.env.KLP_HARNESS_TIMEOUT_SCALE;
  if (value === undefined) delete process.env.KLP_HARNESS_TIMEOUT_SCALE;
  else process.env.KLP_HARNESS_TIMEOUT_SCALE = value;
  try {
    return fn();
  } finally {
    if (before === undefined) delete process.env.KLP_HARNESS_TIMEOUT_SCALE;
    else process.env.KLP_HARNESS_TIMEOUT_SCALE = before;
  }
}

t.test('host-side timeouts scale with the arch and with KLP_HARNESS_TIMEOUT_SCALE, rounded to whole ms', async (t) => {
  for (const name of TIMEOUTS) {
    const base = withScale(undefined, () => timeout(name, archWith(1)));
    t.ok(Number.isInteger(base) && base > 0, `${name}: ${base} ms`);
    t.equal(withScale(undefined, () => timeout(name, archWith(4))), base * 4, `${name}: x4 for a slow arch`);
    t.equal(withScale('2.5', () => timeout(name, archWith(4))), base * 10, `${name}: x2.5 more on a slow host`);
    t.equal(withScale(' 3 ', () => timeout(name, archWith(1))), base * 3, 'spaces around the factor are fine');
    t.equal(withScale(String(1 / 3), () => timeout(name, archWith(1))), Math.round(base / 3), 'whole milliseconds');
  }
  t.equal(timeout('bootToSsh', ARCHES.ppc64le!), timeout('bootToSsh', x86) * ARCHES.ppc64le!.timeoutScale, 'ppc64le takes its own record’s scale');
});

t.test('hostMs: the deadlines grow with the factor; polls, graces and interrupt timing never do', async (t) => {
  for (const name of HOST_DEADLINES) {
    const base = withScale(undefined, () => hostMs(name));
    t.equal(withScale('2', () => hostMs(name)), base * 2, `${name} is a deadline`);
    t.equal(withScale('0.5', () => hostMs(name)), Math.round(base / 2), `${name} shrinks too`);
  }
  for (const name of HOST_FIXED) {
    const base = withScale(undefined, () => hostMs(name));
    t.equal(withScale('7', () => hostMs(name)), base, `${name} stays ${base} ms`);
  }
  t.ok(hostMs('interruptKill') < hostMs('interruptExit'), 'after an interrupt, SIGKILL comes before the forced exit');
  t.ok(KVM_MS.firstLine <= KVM_MS.probe, 'a stalled KVM boot costs no more than the probe (issue 22)');
});

t.test('guest-clock bounds follow the guest, never the host’s factor; the automatic-signal floor is fixed', async (t) => {
  for (const name of GUEST_SCALED) {
    const base = guestBound(name, archWith(1, 1));
    t.equal(guestBound(name, archWith(1, 2)), base * 2, `${name} follows guestClockScale`);
    t.equal(guestBound(name, archWith(9, 1)), base, `${name} ignores timeoutScale`);
    t.equal(withScale('10', () => guestBound(name, archWith(1, 1))), base, `${name} ignores KLP_HARNESS_TIMEOUT_SCALE`);
    t.equal(guestBound(name, archWith(1, 1.5)), Math.round(base * 1.5), 'whole milliseconds');
  }
  const floor = guestBound('autoSignalAtLeast', archWith(1, 1));
  t.equal(guestBound('autoSignalAtLeast', archWith(4, 3)), floor, 'a lower bound is never scaled');
  t.ok(guestBound('remedyToDone', ARCHES.ppc64le!) < floor, 'on ppc64le too, a lever must work well before the kernel’s own signal');
});

t.test('checkTimeoutScale: unset, empty or a positive factor up to 1000 pass; anything else is a usage error naming it', async (t) => {
  for (const ok of [undefined, '', '  ', '1', '0.25', ' 2 ', '1000']) {
    t.doesNotThrow(() => checkTimeoutScale(ok === undefined ? {} : { KLP_HARNESS_TIMEOUT_SCALE: ok }), `${JSON.stringify(ok)} is accepted`);
  }
  for (const bad of ['abc', '0', '-1', 'NaN', 'Infinity', '1001', '2x', '1e9']) {
    const err = (() => {
      try {
        checkTimeoutScale({ KLP_HARNESS_TIMEOUT_SCALE: bad });
      } catch (e) {
        return e;
      }
    })() as HarnessError | undefined;
    t.equal(err?.kind, 'usage', `${bad} is refused`);
    t.equal(err?.message, `KLP_HARNESS_TIMEOUT_SCALE='${bad}' is not a usable factor`);
    t.match(err?.context.hint, /positive number/);
  }
});

t.test('checkTimeoutScale reads process.env by default', async (t) => {
  t.throws(() => withScale('-3', () => checkTimeoutScale()), /'-3' is not a usable factor/);
  t.doesNotThrow(() => withScale('3', () => checkTimeoutScale()));
});
