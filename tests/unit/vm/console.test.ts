import { readFileSync } from 'node:fs';
import t from 'tap';
import { isFatal, classifyLine, cleanConsoleLine, RingBuffer, scanConsole } from '../../../harness/vm/console.js';
import { fixture } from '../../helpers.js';

t.test('a recorded sysrq panic is found as a panic', async (t) => {
  const events = scanConsole(readFileSync(fixture('console-x86_64-sysrq-panic.log'), 'utf8'));
  const panic = events.find((e) => e.kind === 'panic');
  t.ok(panic, 'panic found');
  t.match(panic?.line, /Kernel panic - not syncing: sysrq triggered crash/);
});

t.test('a recorded clean boot has no reports', async (t) => {
  t.same(scanConsole(readFileSync(fixture('console-x86_64-clean-boot.log'), 'utf8')), []);
});

t.test('reports are classified', async (t) => {
  t.equal(classifyLine('[ 1.0] WARNING: CPU: 0 PID: 1 at kernel/livepatch/transition.c:123 foo+0x1/0x2')?.kind, 'warning');
  t.equal(classifyLine('[ 1.0] BUG: kernel NULL pointer dereference, address: 0000')?.kind, 'bug');
  t.equal(classifyLine('[ 1.0] rcu: INFO: rcu_sched detected stalls on CPUs/tasks:')?.kind, 'rcu-stall');
  t.equal(classifyLine('[ 1.0] WARNING: possible circular locking dependency detected')?.kind, 'lockdep');
  // A real line from the race on ppc64le 6.1 without patches/0002 (POWER9).
  t.equal(classifyLine('[    9.543869] restart-canary: pselect6 via scv returned -22 (expected 0: a sleep restarted after a fake signal) after 0 full sleeps')?.kind, 'restart');
  t.equal(classifyLine('[    9.5] usage: restart-canary syscall|scv|sc pselect6|nanosleep'), undefined);
  t.equal(classifyLine('[ 1.0] Oops: 0000 [#1] SMP')?.kind, 'oops');
  t.equal(classifyLine('[ 1.0] livepatch: signaling remaining tasks'), undefined);
});

t.test('console lines are cleaned and the ring keeps the last ones', async (t) => {
  t.equal(cleanConsoleLine('\x1b[0;32mOK\x1b[0m\r'), 'OK');
  const r = new RingBuffer(3);
  for (const l of ['a', 'b', 'c', 'd']) r.push(l);
  t.same(r.last(), ['b', 'c', 'd']);
  t.same(r.last(1), ['d']);
});

t.test('a recorded ppc64le clean boot (hvc0 console) has no reports and reaches the ready line', async (t) => {
  const text = readFileSync(fixture('console-ppc64le-clean-boot.log'), 'utf8');
  t.same(scanConsole(text), [], "pseries' 'WARNING: nvram corruption detected' is not a kernel WARN report");
  t.match(text, /WARNING: nvram corruption detected/, 'the fixture does hold that line');
  t.match(text, /klp-init: ready/);
  t.match(text, /radix-mmu/, 'it is a ppc64le boot');
});

t.test('a panic and an oops stop the guest at once; a warning or lockdep report does not', async (t) => {
  const kind = (line: string) => isFatal(classifyLine(line)!);
  t.ok(kind('[ 2.0] Kernel panic - not syncing: sysrq triggered crash'));
  // A real line from 7.2's test-ftrace.sh on x86_64.
  t.ok(kind('[   93.873843] BUG: unable to handle page fault for address: ffffffff00000000'));
  t.notOk(kind('[ 1.0] WARNING: CPU: 0 PID: 1 at kernel/livepatch/transition.c:123 foo+0x1/0x2'));
  t.notOk(kind('[ 1.0] WARNING: possible circular locking dependency detected'));
  // 7.2 without our series, test-ftrace.sh on x86_64: a storm of these, the oops lines dropped.
  t.ok(kind('[  108.839885] kernel BUG at kernel/entry/common.c:176!'));
  t.notOk(kind('[ 1.0] BUG: sleeping function called from invalid context at kernel/locking/mutex.c:580'));
});
