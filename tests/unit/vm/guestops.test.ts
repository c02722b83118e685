// GuestOps against a stand-in shell: the guest scripts it builds run for real
// in a local bash (sysfs, the tick FIFO and scratch files moved to a temp dir)
// and their output is read back as the guest's; and a guest that dies during
// a command is reported as the death, with its console, not as an SSH error.
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { HarnessError, infraError, timeoutError } from '../../../harness/core/errors.js';
import { RingBuffer, type ConsoleEvent } from '../../../harness/vm/console.js';
import { catScript, GuestOps, guestSleep, LP_SYSFS, parsePoll, pollCommand, wholeReadsOnly, type VmWatch } from '../../../harness/vm/guestops.js';
import { IMAGE_PROGRAM_CFLAGS } from '../../../harness/image/initramfs.js';
import { projectPath } from '../../../harness/core/paths.js';
import { q, type ExecResult, type GuestShell } from '../../../harness/vm/ssh.js';
import { tempDir } from '../../helpers.js';

const COMMAND_MS = 5000;

/** guest/klp-poll.c built for this host (x86_64), as the image builds it for the guest, in a directory put first in PATH. */
const pollBin = (() => {
  const dir = tempDir(t);
  execFileSync('gcc', [...IMAGE_PROGRAM_CFLAGS, '-o', join(dir, 'klp-poll'), projectPath('guest/klp-poll.c')]);
  return dir;
})();

/** Runs a command in bash (the guest's ash stand-in) as the guest would, klp-poll on its PATH; returns what SSH would. */
function bash(command: string): Promise<ExecResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    execFile('bash', ['-c', command], { timeout: 20_000, env: { ...process.env, PATH: `${pollBin}:${process.env.PATH}` } }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : null) : 0;
      resolve({ command, stdout, stderr, code, durationMs: Date.now() - started });
    });
  });
}

/**
 * What a command run in a shell itself changes there: bash runs it between
 * two snapshots of its state (variables and functions but `__` ones and
 * bash's own counters, the working directory, traps, options, open fds);
 * '' when nothing changed, else the two snapshots' difference (or that the
 * command ended the shell).
 */
async function shellChange(command: string): Promise<string> {
  const snap = `__snap() { set | grep -Ev '^(__|_=|BASH|PIPESTATUS|FUNCNAME|LINENO|RANDOM|SECONDS|SRANDOM|EPOCH)'; pwd; trap; set +o; ls /proc/$$/fd; }`;
  const r = await bash(`${snap}; __b=$(__snap); eval ${q(command)} </dev/null >/dev/null 2>&1; __a=$(__snap); if [ "$__b" = "$__a" ]; then echo same; else diff <(echo "$__b") <(echo "$__a"); fi`);
  return r.stdout === 'same\n' ? '' : r.stdout || `the shell ended (status ${r.code})`;
}

/**
 * A temp "guest": livepatch sysfs, the tick FIFO and /tmp scratch files
 * under dir; every command recorded; with `checkShell`, what each command
 * given without a subshell changes in a shell (it runs once more for that,
 * before its own run).
 */
function localGuest(t: Parameters<typeof tempDir>[0], checkShell = false) {
  const dir = tempDir(t);
  const sysfs = join(dir, 'livepatch');
  mkdirSync(sysfs);
  const calls: { command: string; timeoutMs?: number; noSubshell?: boolean }[] = [];
  const changes: { command: string; change: string }[] = [];
  const local = (command: string) => command.split(LP_SYSFS).join(sysfs).split('/run/klp-tick').join(join(dir, 'tick')).split('/tmp/klp-w').join(join(dir, 'w'));
  const ssh = {
    exec: async (command: string, o: { timeoutMs?: number; noSubshell?: boolean } = {}) => {
      calls.push({ command, timeoutMs: o.timeoutMs, noSubshell: o.noSubshell });
      if (checkShell && o.noSubshell) {
        const change = await shellChange(local(command));
        if (change) changes.push({ command, change });
      }
      return bash(local(command));
    },
    put: async () => {},
  } as unknown as GuestShell;
  const patch = (name: string, transition?: string) => {
    mkdirSync(join(sysfs, name), { recursive: true });
    if (transition !== undefined) writeFileSync(join(sysfs, name, 'transition'), `${transition}\n`);
    return join(sysfs, name);
  };
  return { dir, sysfs, calls, changes, ops: new GuestOps(ssh, COMMAND_MS), patch };
}

/** The host's uptime in ms: the local guest's clock. */
const uptimeMs = () => Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1000;

t.test('guestSleep: a read timeout on the tick FIFO, no program started', async (t) => {
  t.equal(guestSleep(250), 'read -t 0.25 _ <&9;');
  t.equal(guestSleep(100), 'read -t 0.1 _ <&9;');
});

t.test('pollCommand: klp-poll with each option, every word quoted for the shell', async (t) => {
  t.equal(pollCommand({ path: '/sys/x y', forMs: 1000, everyMs: 200 }), "klp-poll -e 200 -f 1000 '/sys/x y'");
  t.equal(
    pollCommand({ path: '/p', forMs: 5, everyMs: 100, also: "/q'r", stopOn: ['0', 'gone'], stopUnless: 'x', lastOnly: true, t0: '$t0' }),
    "klp-poll -e 100 -f 5 -t $t0 -a '/q'\\''r' -s '0' -s 'gone' -x 'x' -l '/p'",
  );
});

t.test('klp-poll: readings as `read v` takes them, "gone" without a whole line, the guest clock in hundredths', async (t) => {
  const dir = tempDir(t);
  const files: Record<string, string> = { plain: '1\n', blanks: ' \t 7 \t\nsecond\n', partial: '0', empty: '', long: `${'a'.repeat(300)}\n` };
  for (const [f, text] of Object.entries(files)) writeFileSync(join(dir, f), text);
  const before = uptimeMs();
  const out = (await bash(Object.keys(files).concat('missing').map((f) => pollCommand({ path: join(dir, f), forMs: 0, everyMs: 100, also: join(dir, 'plain') })).join('; '))).stdout;
  const after = uptimeMs();
  const points = out.split('\n').filter((l) => l.startsWith('p '));
  t.same(points.map((l) => l.split(' ')[1]), ['1', '7', 'gone', 'gone', 'a'.repeat(255), 'gone']);
  t.ok(points.every((l) => l.endsWith(' 1')), 'the second file read with each');
  const ms = points.map((l) => Number(l.split(' ').at(-2)));
  t.ok(ms.every((m) => m % 10 === 0 && m >= Math.floor(before / 10) * 10 - 10 && m <= after + 10), `moments on this clock (/proc/uptime), in hundredths: ${ms.join(' ')}`);
  const bad = await bash('klp-poll -e 0 /x; echo "rc $?"; klp-poll; echo "rc $?"; klp-poll -t -1 /x; echo "rc $?"');
  t.same(bad.stdout.trim().split('\n'), ['rc 2', 'rc 2', 'rc 2'], 'bad usage: exit 2');
  t.match(bad.stderr, /usage: klp-poll/);
});

t.test('parsePoll: points, then the end line; other lines left alone', async (t) => {
  const p = parsePoll('w ok\np 1 1200 0\np 0 1300 1\nend 0 100 1200 1300\nd something\n');
  t.same(p.points, [{ value: '1', atMs: 1200, other: '0' }, { value: '0', atMs: 1300, other: '1' }]);
  t.same([p.value, p.elapsedMs, p.t0Ms, p.endMs], ['0', 100, 1200, 1300]);
  t.same(parsePoll('p gone 5').points, [{ value: 'gone', atMs: 5 }], 'no second file: no other');
});

t.test('waitTransition: ends on the wanted value, on "gone" only for 0, else at the timeout', async (t) => {
  const g = localGuest(t);
  g.patch('done', '0');
  const before = uptimeMs();
  // Four guest commands at once (as scenarios on separate guests would): each only reads.
  const [done, gone, stuck, goneForOne] = await Promise.all([
    g.ops.waitTransition('done', '0', 2000),
    g.ops.waitTransition('freed', '0', 2000),
    g.ops.waitTransition('done', '1', 300),
    g.ops.waitTransition('freed', '1', 300),
  ]);
  t.equal(done.value, '0');
  t.ok(done.waitedMs >= 0 && done.waitedMs < 1000, `no wait when it already reads 0 (${done.waitedMs} ms)`);
  t.ok(done.endMs >= before - 20 && done.endMs <= uptimeMs() + 20, `endMs is the guest uptime at the end (${done.endMs})`);
  t.match(g.calls[0]!.command, `'${LP_SYSFS}/done/transition'`, 'reads the patch\'s transition file');
  t.equal(g.calls[0]!.timeoutMs, 2000 + COMMAND_MS, 'the SSH deadline covers the guest wait');

  t.same([gone.value, gone.waitedMs < 1000], ['gone', true], 'a freed patch ends a wait for 0');

  t.equal(stuck.value, '0', 'the last reading');
  t.ok(stuck.waitedMs >= 300 && stuck.waitedMs < 3000, `waited out the timeout (${stuck.waitedMs} ms)`);
  t.equal(goneForOne.value, 'gone');
  t.ok(goneForOne.waitedMs >= 300, 'gone does not end a wait for 1');
});

t.test('waitTransition sees a change made while it waits', async (t) => {
  const g = localGuest(t);
  const dir = g.patch('p', '1');
  const waiting = g.ops.waitTransition('p', '0', 4000);
  await new Promise((r) => setTimeout(r, 400));
  writeFileSync(join(dir, 'transition'), '0\n');
  const w = await waiting;
  t.equal(w.value, '0');
  t.ok(w.waitedMs >= 100 && w.waitedMs < 4000, `ended after the change, before the timeout (${w.waitedMs} ms)`);
});

t.test('sample: each reading with its moment, the second file alongside, counts and span', async (t) => {
  const g = localGuest(t);
  const dir = g.patch('p', '1');
  const s = await g.ops.sample(join(LP_SYSFS, 'p/transition'), 350, 100, join(LP_SYSFS, 'p/missing'));
  t.ok(s.points.length >= 3, `several readings (${s.points.length})`);
  t.same([...s.counts], [['1', s.points.length]], 'one distinct value, counted');
  t.ok(s.points.every((p) => p.value === '1' && p.other === 'gone'), 'the unreadable second file reads gone');
  t.ok(s.points.every((p, i) => i === 0 || p.atMs >= s.points[i - 1]!.atMs), 'moments in order');
  t.ok(s.spanMs >= 350, `the span covers the requested time (${s.spanMs} ms)`);
  t.ok(s.points.every((p) => p.atMs >= s.points[0]!.atMs && p.atMs - s.points[0]!.atMs <= s.spanMs), 'the points lie within the span');
  t.ok(s.points.length <= Math.ceil(350 / 100) + 2, `one reading per 100 ms, not more (${s.points.length})`);
  writeFileSync(join(dir, 'other'), 'x\n');
  const one = await g.ops.sample(join(LP_SYSFS, 'p/transition'), 0, 100);
  t.same(one.points.map((p) => [p.value, p.other]), [['1', undefined]], 'without a second file: no other');
});

t.test('write: accepted, or the shell\'s error text; the value reaches the file exactly', async (t) => {
  const g = localGuest(t);
  const file = join(g.dir, 'value');
  const nasty = `it's "quoted" $(touch ${g.dir}/pwned) \`x\` ; done`;
  t.same(await g.ops.write(file, nasty), { ok: true, error: '' });
  t.equal(readFileSync(file, 'utf8'), `${nasty}\n`, 'quoted: no expansion, no command run');
  t.throws(() => readFileSync(join(g.dir, 'pwned')), 'the command substitution did not run');
  // bash says "bash: line 1: echo: write error: No space left on device" for /dev/full, as ash does for a refused sysfs write.
  t.same(await g.ops.write('/dev/full', '1'), { ok: false, error: 'No space left on device' });
  const missing = await g.ops.write(join(g.dir, 'no/such/dir'), '1');
  t.equal(missing.ok, false);
  t.match(missing.error, /No such file or directory/, 'other errors: the stderr text');
});

t.test('writeThenWait: every write\'s outcome in order, then the wait, on the guest\'s clock', async (t) => {
  const g = localGuest(t);
  g.patch('p', '0');
  const lever = join(g.dir, 'lever');
  const before = uptimeMs();
  const r = await g.ops.writeThenWait(lever, '1', 'p', 2000, 3);
  t.same(r.writes, [{ ok: true, error: '' }, { ok: true, error: '' }, { ok: true, error: '' }]);
  t.equal(readFileSync(lever, 'utf8'), '1\n');
  t.equal(r.value, '0');
  t.ok(r.waitedMs >= 0 && r.waitedMs < 1000, `short wait (${r.waitedMs})`);
  t.ok(r.atMs >= before - 20 && r.atMs <= uptimeMs() + 20, `atMs is the guest's clock before the first write (${r.atMs})`);
  t.equal(g.calls[0]!.timeoutMs, 2000 + COMMAND_MS);

  const refused = await g.ops.writeThenWait('/dev/full', '1', 'gone-patch', 2000, 2);
  t.same(refused.writes, [{ ok: false, error: 'No space left on device' }, { ok: false, error: 'No space left on device' }], 'each refusal with its text');
  t.equal(refused.value, 'gone', 'a patch that is gone ends the wait');
});

t.test('waitFor and waitGone: a reading (or any reading but one) ends the wait', async (t) => {
  const g = localGuest(t);
  const dir = g.patch('p', '1');
  writeFileSync(join(dir, 'enabled'), '3\n');
  const [hit, miss, went, still] = await Promise.all([
    g.ops.waitFor(join(LP_SYSFS, 'p/enabled'), { stopOn: ['3'] }, 2000),
    g.ops.waitFor(join(LP_SYSFS, 'p/enabled'), { stopOn: ['4'] }, 300),
    g.ops.waitGone(join(LP_SYSFS, 'nope/enabled'), 2000),
    g.ops.waitGone(join(LP_SYSFS, 'p/enabled'), 300),
  ]);
  t.equal(hit.value, '3');
  t.ok(hit.waitedMs < 1000, `ends at the reading that passes the test (${hit.waitedMs} ms)`);
  t.same([miss.value, miss.waitedMs >= 300], ['3', true], 'else the last reading at the timeout');
  t.same([went.gone, went.waitedMs < 1000], [true, true], 'an unreadable path is gone at once');
  t.same([still.gone, still.waitedMs >= 300], [false, true], 'a readable one is not, after the timeout');
  const [appeared, absent] = await Promise.all([g.ops.waitFor(join(LP_SYSFS, 'p/enabled'), { stopUnless: 'gone' }, 2000), g.ops.waitFor(join(LP_SYSFS, 'p/none'), { stopUnless: 'gone' }, 300)]);
  t.same([appeared.value, appeared.waitedMs < 1000], ['3', true], 'stopUnless: the first reading other than gone');
  t.same([absent.value, absent.waitedMs >= 300], ['gone', true]);
});

t.test('runTimed keeps the command\'s status and output and adds the uptime after it', async (t) => {
  const g = localGuest(t);
  const before = uptimeMs();
  const r = await g.ops.runTimed('echo hello; echo err >&2; false');
  t.equal(r.code, 1, 'the command\'s status, not the uptime read\'s');
  t.equal(r.stdout, 'hello\n', 'the uptime line is not in stdout');
  t.equal(r.stderr, 'err\n');
  t.ok(r.atMs >= before - 20 && r.atMs <= uptimeMs() + 20, `atMs (${r.atMs}) is the uptime then`);
  t.equal((await g.ops.runTimed('true')).code, 0);
});

t.test("auxv: the pairs od prints, as the kernel's /proc/<pid>/auxv holds them", async (t) => {
  const g = localGuest(t);
  const raw = readFileSync(`/proc/${process.pid}/auxv`);
  const want = new Map<number, bigint>();
  for (let o = 0; o + 16 <= raw.length; o += 16) want.set(Number(raw.readBigUInt64LE(o)), raw.readBigUInt64LE(o + 8));
  const got = await g.ops.auxv(process.pid);
  t.same([...got], [...want]);
  t.equal(got.get(6), BigInt(want.get(6)!), 'AT_PAGESZ');
  t.ok(got.size > 5);
});

/** A shell that answers each command from a function (a canned guest). */
function cannedGuest(answer: (command: string) => Partial<ExecResult> | Promise<Partial<ExecResult>>, vm?: VmWatch) {
  const calls: string[] = [];
  const ssh = {
    exec: async (command: string) => {
      calls.push(command);
      return { command, stdout: '', stderr: '', code: 0, durationMs: 1, ...(await answer(command)) };
    },
    put: async () => {},
  } as unknown as GuestShell;
  return { calls, ops: new GuestOps(ssh, COMMAND_MS, vm) };
}

t.test('must, read, exists, patchStates and the module commands', async (t) => {
  const { ops, calls } = cannedGuest((c) =>
    c === catScript('/sys/x') ? { stdout: '  1\n' } : c.startsWith('test -e') ? { code: c.includes('yes') ? 0 : 1 } : c.includes('for __t in /proc/') ? { stdout: '0\n0\n1\n-1\n\n0\n' } : c.startsWith('bad') ? { code: 2, stdout: 'o', stderr: 'e' } : {},
  );
  t.equal(await ops.read('/sys/x'), '1', 'trimmed');
  t.equal(calls.at(-1), catScript('/sys/x'));
  t.equal(await ops.exists('/yes'), true);
  t.equal(await ops.exists('/no'), false);
  t.same([...(await ops.patchStates())], [['0', 3], ['1', 1], ['-1', 1]], 'tasks counted by patch_state, blank lines ignored');
  const e = await ops.must('bad thing').catch((x: unknown) => x);
  t.ok(e instanceof HarnessError);
  t.equal((e as HarnessError).kind, 'guest-command');
  t.equal((e as HarnessError).message, 'guest command failed with status 2');
  t.equal((e as HarnessError).context.command, 'bad thing');
  t.match((e as HarnessError).context.details, /stdout:\no\nstderr:\ne/);
  await ops.insmod("/root/a b'.ko");
  t.equal(calls.at(-1), `insmod '/root/a b'\\''.ko'`);
  await ops.rmmod('klp_sleeper');
  t.equal(calls.at(-1), "rmmod 'klp_sleeper'");
  t.equal(ops.patchFile('p', 'force'), '/sys/kernel/livepatch/p/force');
});

t.test('a command that gave no klp-poll end line is a guest-command error, not a reading', async (t) => {
  const { ops } = cannedGuest((c) => (c.includes('klp-poll') ? { stdout: 'p 1 100\n', code: 127, stderr: 'sh: klp-poll: not found' } : {}));
  for (const call of [() => ops.waitFor('/x', { stopOn: ['1'] }, 100), () => ops.writeThenWait('/x', '1', 'p', 100), () => ops.waitTransition('p', '0', 100), () => ops.sample('/x', 100, 100)]) {
    const e = await call().catch((x: unknown) => x);
    t.ok(e instanceof HarnessError && e.kind === 'guest-command', 'a guest-command error');
    t.match((e as HarnessError).message, /klp-poll gave no result \(exit status 127\)/);
    t.match((e as HarnessError).context.details, /klp-poll: not found/, 'with what the shell said');
  }
  t.ok(Number.isNaN((await ops.runTimed('x')).atMs), 'runTimed without its uptime line: NaN');
  t.throws(() => pollCommand({ path: '/x', forMs: 0, everyMs: 100, stopOn: Array.from({ length: 9 }, (_, i) => String(i)) }), /at most 8/);
});

/** A VM whose death the test triggers. */
function fakeVm() {
  let die!: (ev: ConsoleEvent) => void;
  let exit!: (x: { code: number | null; signal: NodeJS.Signals | null; stderr: string }) => void;
  const console = new RingBuffer(80);
  for (let i = 1; i <= 50; i++) console.push(`line ${i}`);
  const vm: VmWatch = {
    fatal: new Promise((r) => (die = r)),
    exited: new Promise((r) => (exit = r)),
    console,
    options: { consoleLog: '/out/console.log', arch: { name: 'ppc64le' } },
  };
  return { vm, die: (line: string) => die({ kind: 'panic', line }), exit: (x: Parameters<typeof exit>[0]) => exit(x) };
}

const never = () => new Promise<never>(() => {});

t.test('a kernel panic during a command is the error, with the console tail and log', async (t) => {
  const v = fakeVm();
  const { ops } = cannedGuest(never, v.vm);
  const pending = ops.run('sleep 100').catch((e: unknown) => e);
  v.die('Kernel panic - not syncing: Fatal exception  \n');
  const e = (await pending) as HarnessError;
  t.ok(e instanceof HarnessError);
  t.equal(e.kind, 'boot');
  t.equal(e.message, 'kernel panic: Kernel panic - not syncing: Fatal exception');
  t.equal(e.context.arch, 'ppc64le');
  t.same(e.context.consoleTail, Array.from({ length: 40 }, (_, i) => `line ${i + 11}`), 'the last 40 console lines');
  t.equal(e.context.logPath, '/out/console.log');
  const later = await ops.run('true').catch((x: unknown) => x);
  t.equal(later, e, 'every later command fails at once with the same report');
});

t.test("QEMU's exit during a command: killed from outside is the host's fault, an exit of its own the kernel's", async (t) => {
  const killed = fakeVm();
  const a = cannedGuest(never, killed.vm);
  const pa = a.ops.run('x').catch((e: unknown) => e);
  killed.exit({ code: null, signal: 'SIGKILL', stderr: '' });
  const ea = (await pa) as HarnessError;
  t.equal(ea.kind, 'infra');
  t.equal(ea.message, 'QEMU was killed (SIGKILL) while the guest was in use');
  t.equal(ea.context.details, undefined, 'no empty stderr section');

  const crashed = fakeVm();
  const b = cannedGuest(never, crashed.vm);
  const pb = b.ops.run('x').catch((e: unknown) => e);
  crashed.exit({ code: 1, signal: null, stderr: 'qemu-system-ppc64: fatal: hash table full\n' });
  const eb = (await pb) as HarnessError;
  t.equal(eb.kind, 'boot');
  t.equal(eb.message, 'QEMU exited (code 1) while the guest was in use');
  t.equal(eb.context.exitCode, 1);
  t.match(eb.context.details, /QEMU stderr:\nqemu-system-ppc64: fatal: hash table full/);
});

t.test('an SSH error or a dropped connection while QEMU goes down reports the death', async (t) => {
  const v = fakeVm();
  const { ops } = cannedGuest(async () => {
    // QEMU's exit is noticed a little after the connection drops.
    setTimeout(() => v.exit({ code: 0, signal: null, stderr: '' }), 50);
    throw infraError('ssh: connection reset');
  }, v.vm);
  const e = (await ops.run('x').catch((x: unknown) => x)) as HarnessError;
  t.equal(e.message, 'QEMU exited (code 0) while the guest was in use', 'the death, not the SSH error');

  const w = fakeVm();
  const dropped = cannedGuest(async () => {
    setTimeout(() => w.exit({ code: 0, signal: null, stderr: '' }), 50);
    return { code: null };
  }, w.vm);
  const e2 = await dropped.ops.run('x').catch((x: unknown) => x);
  t.ok(e2 instanceof HarnessError && e2.message.startsWith('QEMU exited'), 'a result without an exit status, then the death: the death');
});

t.test('with the guest alive: errors and results pass through; a timeout gets the console tail', async (t) => {
  const v = fakeVm();
  const ssh = cannedGuest(async () => {
    throw infraError('ssh: connection reset');
  }, v.vm);
  const started = Date.now();
  const e = (await ssh.ops.run('x').catch((x: unknown) => x)) as HarnessError;
  t.equal(e.message, 'ssh: connection reset', 'the SSH error itself when QEMU lives on');
  t.ok(Date.now() - started >= 250, 'after giving a death a moment to be noticed');

  const noStatus = cannedGuest(() => ({ code: null, stdout: 'partial' }), v.vm);
  t.equal((await noStatus.ops.run('x')).stdout, 'partial', 'a result without status when QEMU lives on');

  const slow = cannedGuest(async () => {
    throw timeoutError("guest command 'x' did not finish within 5.0 s", { command: 'x' });
  }, v.vm);
  const te = (await slow.ops.run('x').catch((x: unknown) => x)) as HarnessError;
  t.equal(te.kind, 'timeout');
  t.equal(te.context.command, 'x', 'its own context kept');
  t.equal(te.context.consoleTail?.length, 40, 'and the console tail added');
  t.equal(te.context.logPath, '/out/console.log');

  const noVm = cannedGuest(async () => {
    throw timeoutError('t');
  });
  const quick = Date.now();
  const ne = (await noVm.ops.run('x').catch((x: unknown) => x)) as HarnessError;
  t.same([ne.kind, ne.context.consoleTail], ['timeout', undefined], 'without a VM: as it came');
  t.ok(Date.now() - quick < 250, 'and at once');
});

t.test('put goes through the same guard', async (t) => {
  const v = fakeVm();
  const ssh = { exec: never, put: never } as unknown as GuestShell;
  const ops = new GuestOps(ssh, COMMAND_MS, v.vm);
  const p = ops.put(Buffer.from('x'), '/root/x').catch((e: unknown) => e);
  v.die('Kernel panic - not syncing: VFS');
  t.match(((await p) as HarnessError).message, /^kernel panic: /);
});

t.test('read: a file\'s bytes through the shell\'s builtins, as cat gives them; cat only where nothing could be read', async (t) => {
  const { dir, ops, calls } = localGuest(t);
  // A cat that leaves a mark, first on PATH: which reads fell back to it.
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  writeFileSync(join(bin, 'cat'), `#!/bin/sh\necho "$@" >> ${join(dir, 'cat-ran')}\nexec /bin/cat "$@"\n`, { mode: 0o755 });
  const catRan = () => (existsSync(join(dir, 'cat-ran')) ? readFileSync(join(dir, 'cat-ran'), 'utf8') : '');
  const viaScript = (path: string) => bash(`PATH=${bin}:$PATH; ${catScript(path)}`);
  const cases: [string, string][] = [
    ['lines', 'a b\n  c\\d\t e\n'],
    ['no-newline', 'x\ny z'],
    ['one', '36864\n'],
  ];
  for (const [name, content] of cases) {
    const path = join(dir, name);
    writeFileSync(path, content);
    const r = await viaScript(path);
    t.equal(r.stdout, content, `${name}: the same bytes as the file`);
    t.equal(r.code, 0);
    t.equal(await ops.read(path), content.trim(), `${name}: read() trims`);
  }
  t.equal(catRan(), '', 'no cat for a file that has bytes');
  const empty = join(dir, 'empty');
  writeFileSync(empty, '');
  const r = await viaScript(empty);
  t.same([r.stdout, r.code], ['', 0], 'an empty file reads empty');
  t.match(catRan(), empty, 'cat read it (the fallback that keeps a read error an error)');
  const missing = (await ops.read(join(dir, 'missing')).catch((e: HarnessError) => e)) as HarnessError;
  t.ok(missing instanceof HarnessError && missing.kind === 'guest-command', 'a file that cannot be opened fails the read');
  // A sysctl answers only a read from offset 0: a byte at a time, 36864 would read as 3.
  t.ok(wholeReadsOnly('/proc/sys/kernel/tainted') && !wholeReadsOnly('/sys/kernel/livepatch/p/enabled'));
  await ops.read('/proc/sys/kernel/tainted');
  t.equal(calls.at(-1)!.command, "cat '/proc/sys/kernel/tainted'", 'a sysctl is read by cat, whole');
});

t.test("the harness's own commands run in the guest's shell without a subshell, and leave it as they found it", async (t) => {
  t.match(await shellChange('x=1; cd /; exec 7</dev/null; f() { :; }; trap "echo" USR1; set -u'), /x=1/, 'the check sees a variable, and the rest, change');
  t.match(await shellChange('exit 3'), /the shell ended/, 'the check sees the shell end');
  t.equal(await shellChange('__x=1; read __y < /proc/uptime'), '', '`__` variables are the commands\' own');
  const g = localGuest(t, true);
  g.patch('p', '0');
  writeFileSync(join(g.sysfs, 'p', 'enabled'), '1\n');
  await g.ops.read(join(g.sysfs, 'p', 'enabled'));
  await g.ops.read('/proc/sys/kernel/tainted');
  await g.ops.exists(join(g.sysfs, 'p'));
  await g.ops.write(join(g.sysfs, 'p', 'enabled'), '1');
  await g.ops.waitTransition('p', '0', 300);
  await g.ops.waitFor(join(g.sysfs, 'p', 'transition'), { stopOn: ['0'] }, 300);
  await g.ops.waitGone(join(g.sysfs, 'p', 'none'), 300);
  await g.ops.sample(join(g.sysfs, 'p', 'transition'), 300, 100, join(g.sysfs, 'p', 'enabled'));
  await g.ops.writeThenWait(join(g.sysfs, 'p', 'enabled'), '1', 'p', 300, 2);
  await g.ops.writeThenWait(join(g.sysfs, 'p', 'nodir', 'x'), '1', 'p', 300, 1);
  await g.ops.patchStates();
  await g.ops.auxv(process.pid);
  await g.ops.dmesg().catch(() => '');
  t.equal(await g.ops.machine(), execFileSync('uname', ['-m'], { encoding: 'utf8' }).trim());
  await g.ops.insmod('/nonexistent.ko');
  await g.ops.rmmod('nonexistent');
  t.equal(g.calls.filter((c) => !c.noSubshell).length, 0, 'every one without a subshell');
  t.same(g.changes, [], 'none changed the shell');
  await g.ops.run('x=1');
  t.equal(g.calls.at(-1)?.noSubshell, undefined, 'a command given to run() gets its subshell');
});
