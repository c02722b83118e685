import t from 'tap';
import { ARCHES } from '../../../harness/core/arch.js';
import { entryPaths, parseRounds, roundChecks, type CanaryRound } from '../../../harness/scenarios/canary-rounds.js';
import { classifyLine } from '../../../harness/vm/console.js';

/** A round line as restart-canary prints it (guest/modules/restart-canary.c, round()). */
const line = (n: number, call: string, mode: string, wake: string, ret: number, ms: number, sleeps: number, uring?: [number, number]) =>
  `restart-canary: round ${n}: ${call} via ${mode} (wake ${wake}): returned ${ret} after ${ms} ms of 1000 ms, ${sleeps} sleeps` +
  (uring ? `, ${uring[0]} timer completions (res ${uring[1]})` : '');

const failed = (r: CanaryRound) => roundChecks(r).filter((c) => c.actual !== c.expected);

t.test('a right restart passes every check of its round', async (t) => {
  const [r] = parseRounds(line(1, 'pselect6', 'sc', 'uring:200', 0, 1003, 2, [1, -62]));
  t.ok(r);
  t.same(failed(r!), []);
  t.equal(roundChecks(r!).length, 2, 'the result and the io_uring completion');
  const [x] = parseRounds(line(2, 'nanosleep', 'syscall', 'external', 0, 3001, 5));
  t.same(failed(x!), [], 'several fake signals in one sleep');
  t.equal(roundChecks(x!).length, 1, 'no io_uring completion to check without io_uring');
});

t.test('each wrong restart fails its round, saying how', async (t) => {
  // sc: the fast exit zeroes r0, so the restarted call is restart_syscall(): -EINTR on a fresh task.
  const eintr = failed(parseRounds(line(1, 'pselect6', 'sc', 'uring:200', -4, 201, 1, [1, -62]))[0]!);
  t.equal(eintr.length, 1);
  t.match(eintr[0]!.actual, /returned -4 \(EINTR\) after 201 ms/);
  // scv: r7/r8 clobbered by the flush fallback: pselect6 refuses its arguments.
  t.match(failed(parseRounds(line(1, 'pselect6', 'scv', 'uring:200', -22, 202, 1, [1, -62]))[0]!)[0]!.actual, /-22 \(EINVAL\)/);
  // After a restarted nanosleep, restart_syscall() runs its stale block: 0, but far too early.
  const early = failed(parseRounds(line(3, 'pselect6', 'sc', 'uring:200', 0, 200, 2, [1, -62]))[0]!);
  t.equal(early.length, 1);
  t.match(early[0]!.actual, /returned 0 after 200 ms of 1000 ms, 2 sleeps \(800 ms early\)/);
});

t.test('a round that was never woken proves nothing and fails', async (t) => {
  const f = failed(parseRounds(line(1, 'pselect6', 'sc', 'uring:200', 0, 1000, 1, [1, -62]))[0]!);
  t.match(f[0]!.actual, /never woken/);
  // The task work never ran, or the timeout was refused.
  t.match(failed(parseRounds(line(1, 'pselect6', 'sc', 'uring:200', 0, 1000, 2, [0, 0]))[0]!)[0]!.what, /io_uring timeout completions/);
  const refused = parseRounds('restart-canary: round 1: pselect6 via sc (wake uring:200): returned 0 after 1000 ms of 1000 ms, 1 sleeps, -22 (io_uring_enter failed, res 0)');
  t.equal(refused[0]?.completions, -22);
  t.equal(failed(refused[0]!).length, 2);
});

t.test('round lines are read from console lines too, and are not restart reports themselves', async (t) => {
  const text = ['[   12.000000] klp-init: ready', `[   13.500000] ${line(1, 'nanosleep', 'scv', 'external', 0, 1000, 3)}`, 'noise'].join('\n');
  const rounds = parseRounds(text);
  t.equal(rounds.length, 1);
  t.equal(rounds[0]!.mode, 'scv');
  t.equal(rounds[0]!.line.startsWith('restart-canary:'), true, 'the timestamp is cut');
  // The console check flags the race's failure lines; a round line is judged by the scenario instead.
  t.equal(classifyLine(rounds[0]!.line), undefined);
});

t.test('entry paths per CPU model', async (t) => {
  const ppc = ARCHES.ppc64le!.syscallByCpu;
  t.same(entryPaths(ppc, 'power9'), ['sc', 'scv']);
  t.same(entryPaths(ppc, 'power8'), ['sc']);
  t.same(entryPaths(ARCHES.x86_64!.syscallByCpu, 'max'), ['syscall']);
});
