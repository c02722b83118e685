// Error kinds: each names its fault and exit code consistently (the README's
// table), a HarnessError reports its context to a person in full, and
// anything that is not ours counts as a harness problem.
import t from 'tap';
import {
  bootError,
  buildError,
  configError,
  describeError,
  ERROR_KINDS,
  EXIT,
  exitCodeFor,
  exitForOutcome,
  faultOf,
  HarnessError,
  infraError,
  patchError,
  timeoutError,
  usageError,
  type ErrorKind,
} from '../../../harness/core/errors.js';

const KINDS = Object.keys(ERROR_KINDS) as ErrorKind[];

t.test('a HarnessError is an Error named after its kind', async (t) => {
  const e = new HarnessError('guest-command', 'cat failed');
  t.ok(e instanceof Error);
  t.equal(e.name, 'GuestCommandError', 'kebab-case becomes CamelCase');
  t.equal(new HarnessError('infra', 'x').name, 'InfraError');
  t.equal(e.kind, 'guest-command');
  t.same(e.context, {}, 'no context by default');
  t.match(String(e.stack), /^GuestCommandError: cat failed/, 'the stack starts with name and message');
});

t.test('the shorthands make the kind they are named for; infraError keeps the cause', async (t) => {
  const made: [HarnessError, ErrorKind][] = [
    [usageError('u'), 'usage'],
    [configError('c'), 'config'],
    [patchError('p'), 'patch'],
    [buildError('b'), 'build'],
    [bootError('b'), 'boot'],
    [infraError('i'), 'infra'],
    [timeoutError('t'), 'timeout'],
  ];
  for (const [e, kind] of made) t.equal(e.kind, kind, `${kind}`);
  const cause = new Error('EACCES');
  const e = infraError('could not start qemu', { command: 'qemu -x' }, cause);
  t.equal(e.cause, cause);
  t.same(e.context, { command: 'qemu -x' });
});

t.test('report(): every piece of context a person needs, in order, and nothing that is not there', async (t) => {
  const full = new HarnessError('boot', 'no SSH within 60 s', {
    arch: 'ppc64le',
    command: 'qemu-system-ppc64 -M pseries',
    exitCode: 1,
    signal: 'SIGTERM',
    durationMs: 61_234,
    details: 'first\nsecond\n\n',
    consoleTail: ['[ 1.0] Linux version', '[ 2.0] Kernel panic'],
    logPath: '/out/console.log',
    hint: 'look at the console',
  });
  t.equal(
    full.report(),
    [
      'BootError: no SSH within 60 s',
      '  arch: ppc64le',
      '  command: qemu-system-ppc64 -M pseries',
      '  exit code: 1',
      '  signal: SIGTERM',
      '  after: 61.2 s',
      '  | first',
      '  | second',
      '  last console lines:',
      '  > [ 1.0] Linux version',
      '  > [ 2.0] Kernel panic',
      '  full log: /out/console.log',
      '  what to do: look at the console',
    ].join('\n'),
  );
  t.equal(new HarnessError('infra', 'bare').report(), 'InfraError: bare', 'no context, one line');
  t.equal(new HarnessError('infra', 'x', { exitCode: 0 }).report(), 'InfraError: x\n  exit code: 0', 'exit code 0 is shown');
  t.equal(new HarnessError('infra', 'x', { exitCode: null, signal: null, consoleTail: [] }).report(), 'InfraError: x', 'null and empty are not');
  t.equal(new HarnessError('infra', 'x', { durationMs: 0 }).report(), 'InfraError: x\n  after: 0.0 s', 'a duration of 0 is shown');
});

t.test('exit codes: each kind maps as the table says; anything not ours is a harness problem', async (t) => {
  t.equal(exitCodeFor(usageError('x')), EXIT.usage);
  t.equal(exitCodeFor(buildError('x')), EXIT.kernelFailed, 'the kernel did not build');
  t.equal(exitCodeFor(timeoutError('x')), EXIT.kernelFailed, 'the guest stopped answering');
  t.equal(exitCodeFor(infraError('x')), EXIT.infra);
  t.equal(exitCodeFor(new HarnessError('assertion', 'x')), EXIT.testsFailed);
  t.equal(exitCodeFor(new HarnessError('interrupted', 'x')), EXIT.interrupted);
  t.equal(exitCodeFor(new Error('TypeError somewhere')), EXIT.infra);
  t.equal(exitCodeFor('a string'), EXIT.infra);
  t.equal(exitCodeFor(undefined), EXIT.infra);
  t.same(new Set(Object.values(EXIT)).size, Object.keys(EXIT).length, 'no two outcomes share an exit code');
});

t.test('faults: a failed check is nobody’s fault, a foreign error is the harness’s', async (t) => {
  t.equal(faultOf(new HarnessError('guest-command', 'x')), undefined);
  t.equal(faultOf(new HarnessError('assertion', 'x')), undefined);
  t.equal(faultOf(patchError('x')), 'kernel');
  t.equal(faultOf(usageError('x')), 'usage');
  t.equal(faultOf(new RangeError('x')), 'infra');
  t.equal(faultOf(null), 'infra');
});

t.test("a scenario's outcome asks for the exit code its error would (interruptions are decided apart)", async (t) => {
  t.equal(exitForOutcome(true, 'kernel'), EXIT.ok, 'a passing scenario exits 0 whatever the fault field says');
  for (const kind of KINDS) {
    const err = new HarnessError(kind, 'x');
    // An interrupted run exits 130 however its scenarios ended (report/run-report.ts asks for that itself).
    if (kind === 'interrupted') continue;
    t.equal(exitForOutcome(false, faultOf(err)), exitCodeFor(err), `${kind}: the same exit code either way`);
  }
  t.equal(exitForOutcome(false, undefined), EXIT.testsFailed);
});

t.test('describeError: a HarnessError’s report, else the stack, else the value', async (t) => {
  const h = buildError('make failed', { hint: 'read the log' });
  t.equal(describeError(h), h.report());
  const plain = new Error('boom');
  t.equal(describeError(plain), plain.stack);
  t.match(describeError(plain), /^Error: boom\n\s+at /);
  t.equal(describeError('just text'), 'just text');
  t.equal(describeError(undefined), 'undefined');
  t.equal(describeError({ stack: undefined, toString: () => 'obj' }), 'obj');
});
