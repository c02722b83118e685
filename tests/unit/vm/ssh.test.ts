// Connecting to a guest that is still booting: refused connections are
// retried until the server listens; a death (abort) or the deadline ends it.
// Commands in the connection's long-lived shells, against the host's sh:
// each keeps `sh -c`'s contract (status, streams, isolation, deadline).
import { createServer, type AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { HarnessError } from '../../../harness/core/errors.js';
import { SHELL_COMMAND_MAX_BYTES } from '../../../harness/vm/shell-session.js';
import { GuestShell, isNotUpYet } from '../../../harness/vm/ssh.js';
import { fakeSsh, shellSsh } from '../../fake-ssh.js';
import { tempDir } from '../../helpers.js';

const COMMANDS = { commandMs: 5000, copyMs: 5000 };

/** A port nothing listens on (yet). */
async function idlePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

/** An SSH server that answers every command with "up"; started when asked. */
function guestServer(t: Test) {
  return fakeSsh(t, (_command, ch) => {
    ch.write('up\n');
    ch.exit(0);
    ch.end();
  });
}

t.test('refused connections are retried until the guest listens', async (t) => {
  const port = await idlePort();
  const g = guestServer(t);
  setTimeout(() => void g.listen(port), 1200);
  const started = Date.now();
  const ssh = await GuestShell.connect({ port, keys: g.keys, deadlineMs: 15_000, commands: COMMANDS });
  t.ok(Date.now() - started >= 1100, `connected after ${Date.now() - started} ms, once the server was up`);
  t.equal((await ssh.exec('echo up')).stdout, 'up\n');
  ssh.close();
});

t.test('nobody listening until the deadline is a timeout error', async (t) => {
  const port = await idlePort();
  const g = guestServer(t);
  const err = (await GuestShell.connect({ port, keys: g.keys, deadlineMs: 1000, commands: COMMANDS }).catch((e) => e)) as HarnessError;
  t.type(err, HarnessError);
  t.equal(err.kind, 'timeout');
  t.match(err.message, /no SSH from the guest within 1 s/);
});

t.test('an abort (the guest died) ends the retries with its reason, as a boot error', async (t) => {
  const port = await idlePort();
  const g = guestServer(t);
  const abort = new Promise<string>((r) => setTimeout(() => r('kernel panic on x86_64: Kernel panic - not syncing'), 500));
  const started = Date.now();
  const err = (await GuestShell.connect({ port, keys: g.keys, deadlineMs: 30_000, commands: COMMANDS, abort }).catch((e) => e)) as HarnessError;
  t.equal(err.kind, 'boot');
  t.match(err.message, /kernel panic on x86_64/);
  t.ok(Date.now() - started < 5000, 'without waiting for the deadline');
});

t.test('only "not up yet" errors are retried', async (t) => {
  t.ok(isNotUpYet({ code: 'ECONNREFUSED' }));
  t.ok(isNotUpYet({ message: 'Connection lost before handshake' }));
  t.notOk(isNotUpYet({ message: 'All configured authentication methods failed' }));
});

t.test('a server that closes the connection mid-handshake without an error is retried until the deadline, never waited on for ever', async (t) => {
  // Sends a banner, then goes away: ssh2 emits 'close' with no 'error' (this attempt once stayed pending for ever).
  const srv = createServer((sock) => {
    sock.on('error', () => {});
    sock.write('SSH-2.0-fake_1.0\r\n');
    setTimeout(() => sock.destroy(), 50);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => srv.close());
  const g = guestServer(t);
  const started = Date.now();
  const err = (await GuestShell.connect({ port: (srv.address() as AddressInfo).port, keys: g.keys, deadlineMs: 1500, commands: COMMANDS }).catch((e) => e)) as HarnessError;
  t.type(err, HarnessError);
  t.equal(err.kind, 'timeout');
  t.ok(Date.now() - started < 10_000, `ended ${Date.now() - started} ms after the start, at its deadline`);
});

/** A connection to a server running the host's sh; `shells` counts the shell sessions it opened. */
async function withSh(t: Test, commandMs = 5000) {
  const home = tempDir(t);
  const server = shellSsh(t, home);
  const ssh = await GuestShell.connect({ port: await server.listen(), keys: server.keys, deadlineMs: 10_000, commands: { commandMs, copyMs: 5000 } });
  t.teardown(() => ssh.close());
  const count = (kind: 'shell' | 'exec') => server.requests.filter((r) => r.kind === kind).length;
  return { ssh, server, home, shells: () => count('shell'), execs: () => count('exec') };
}

t.test('in a shell: the exit status, stdout and stderr apart, output without a final newline; the shell serves the next command', async (t) => {
  const { ssh, shells, execs } = await withSh(t);
  const r = await ssh.exec('printf out; printf err >&2; exit 3');
  t.match(r, { command: 'printf out; printf err >&2; exit 3', stdout: 'out', stderr: 'err', code: 3 });
  t.type(r.durationMs, 'number');
  t.same((await ssh.exec('echo alive')).stdout, 'alive\n');
  t.equal(shells(), 1, 'one shell for both');
  t.equal(execs(), 0, 'no exec channel');
  t.equal(ssh.commands, 2);
});

t.test('exit N and a syntax error end that command only: a status and stderr, then the shell goes on', async (t) => {
  const { ssh, shells } = await withSh(t);
  t.equal((await ssh.exec('exit 7')).code, 7);
  const bad = await ssh.exec(`echo 'unbalanced`);
  t.not(bad.code, 0, `a syntax error is a failure (${bad.code})`);
  t.equal(bad.stdout, '');
  t.match(bad.stderr, /unterminated|Syntax error/i);
  t.equal((await ssh.exec('if then fi')).code, 2, 'a parse error');
  t.same(await ssh.exec('echo ok').then((r) => [r.stdout, r.stderr, r.code]), ['ok\n', '', 0]);
  t.equal(shells(), 1, 'the same shell all along');
});

t.test('what a command does to its shell stays with it: variables, cd, fds, functions, options, traps', async (t) => {
  const { ssh, home } = await withSh(t);
  const first = await ssh.exec(`x=1; export Y=2; cd /; exec 9>/dev/null; f() { :; }; set -e; trap 'echo trapped' EXIT; echo "$x $Y $(pwd)"`);
  t.equal(first.stdout, '1 2 /\ntrapped\n');
  const next = await ssh.exec('echo "${x:-unset} ${Y:-unset} $(pwd)"; { true >&9; } 2>/dev/null && echo fd9 || echo no-fd9; command -v f || echo no-f; false; echo "after false"');
  t.equal(next.stdout, `unset unset ${home}\nno-fd9\nno-f\nafter false\n`);
  t.equal(next.code, 0);
});

t.test('multi-line text: here-documents, case, functions, continued lines, leading blanks and backslashes kept', async (t) => {
  const { ssh } = await withSh(t);
  const command = ['f() {', '  echo "f $1"', '}', "f 'a  b'", 'cat <<EOF', '  indented $((1 + 1)) \\\\ tab\there', 'EOF', "cat <<'EOF'", '$HOME\\', 'EOF', 'case x in', '  x) echo cased ;;', 'esac', 'echo one \\', '  two', 'printf "%s" "last"'].join('\n');
  const r = await ssh.exec(command);
  t.equal(r.stdout, 'f a  b\n  indented 2 \\ tab\there\n$HOME\\\ncased\none two\nlast');
  t.equal(r.stderr, '');
  t.equal(r.code, 0);
});

t.test('stdin is /dev/null; a command given stdin gets it on an exec channel of its own', async (t) => {
  const { ssh, execs } = await withSh(t);
  t.equal((await ssh.exec('cat; read x; echo "after $?"')).stdout, 'after 1\n', 'nothing to read, at once');
  t.equal((await ssh.exec('echo still here')).stdout, 'still here\n', 'the shell read no command as input');
  const r = await ssh.exec('cat; echo', { stdin: 'data' });
  t.equal(r.stdout, 'data\n');
  t.equal(execs(), 1);
  t.equal(ssh.commands, 3, 'every call counts');
});

t.test('a command that does not end: the timeout error as before; its shell goes, the next command gets a new one', async (t) => {
  const { ssh, shells, server } = await withSh(t);
  await ssh.exec('true');
  const started = Date.now();
  const err = (await ssh.exec('echo partial; sleep 30', { timeoutMs: 800 }).catch((e) => e)) as HarnessError;
  t.type(err, HarnessError);
  t.equal(err.kind, 'timeout');
  t.match(err.message, /^guest command 'echo partial; sleep 30' did not finish within 0\.8 s$/);
  t.equal(err.context.command, 'echo partial; sleep 30');
  t.match(err.context.details, /stdout so far:\npartial\n/);
  t.ok(Date.now() - started < 2500, `gave up after ${Date.now() - started} ms`);
  const next = await ssh.exec('echo next', { timeoutMs: 3000 });
  t.equal(next.stdout, 'next\n');
  t.equal(shells(), 2, 'a new shell');
  for (let i = 0; i < 50 && server.live() > 1; i++) await new Promise((r) => setTimeout(r, 100));
  t.equal(server.live(), 1, 'the timed-out shell is gone from the server (only the new one is left)');
});

t.test('two commands at once run in two shells; neither waits for the other; both shells are kept', async (t) => {
  const { ssh, shells, execs } = await withSh(t);
  const [slow, quick] = await Promise.all([ssh.exec('sleep 1; echo slow; echo slow-err >&2; exit 4'), ssh.exec('echo quick; exit 5')]);
  t.match(slow, { stdout: 'slow\n', stderr: 'slow-err\n', code: 4 });
  t.match(quick, { stdout: 'quick\n', stderr: '', code: 5 });
  t.ok(quick.durationMs < 800, `the quick one took ${quick.durationMs} ms`);
  t.equal(shells(), 2);
  await Promise.all([ssh.exec('true'), ssh.exec('true')]);
  t.equal(shells(), 2, 'both reused');
  const many = await Promise.all(Array.from({ length: 6 }, (_, i) => ssh.exec(`sleep 0.2; echo ${i}`)));
  t.same(
    many.map((r) => r.stdout),
    ['0\n', '1\n', '2\n', '3\n', '4\n', '5\n'],
  );
  t.ok(shells() <= 3 && execs() >= 3, `past the shells kept (${shells()}), exec channels (${execs()})`);
});

t.test('a backgrounded process does not hold the call', async (t) => {
  const { ssh } = await withSh(t);
  const started = Date.now();
  const r = await ssh.exec('sleep 5 < /dev/null > /dev/null 2>&1 & setsid sleep 5 < /dev/null > /dev/null 2>&1 & echo started');
  t.equal(r.stdout, 'started\n');
  t.ok(Date.now() - started < 2000, `returned after ${Date.now() - started} ms`);
  t.equal((await ssh.exec('echo next')).stdout, 'next\n');
});

t.test('a shell killed under a command: that command ends with no status, the next opens a new shell', async (t) => {
  const { ssh, shells } = await withSh(t);
  const r = await ssh.exec('echo before; kill -9 $$');
  t.equal(r.code, null, 'as an exec channel closed without an exit status');
  t.equal((await ssh.exec('echo after')).stdout, 'after\n');
  t.equal(shells(), 2);
});

t.test("output holding what the shell has (its command line, variables, functions, fds) does not end a command early", async (t) => {
  const { ssh } = await withSh(t);
  await ssh.exec('true');
  const r = await ssh.exec(`tr '\\0' ' ' < /proc/$$/cmdline; echo; set; ls -l /proc/$$/fd; echo end`);
  t.match(r.stdout, /__st=/, "the shell's variables are in the output");
  t.match(r.stdout, /\nend\n$/);
  t.equal(r.code, 0);
});

t.test('noSubshell: the shell runs the command itself (what it sets stays), with the same status, streams and stdin', async (t) => {
  const { ssh, shells } = await withSh(t);
  const own = (command: string) => ssh.exec(command, { noSubshell: true });
  t.match(await own('__k=kept; printf out; printf err >&2; false'), { stdout: 'out', stderr: 'err', code: 1 });
  t.equal((await own('echo "${__k:-unset}"')).stdout, 'kept\n', 'the variable is still there: no subshell ran it');
  t.equal((await ssh.exec('__j=gone')).code, 0);
  t.equal((await own('echo "${__j:-unset}"')).stdout, 'unset\n', 'a command without noSubshell still gets its subshell');
  t.equal((await own('read x; echo "read $?"')).stdout, 'read 1\n', 'stdin is /dev/null');
  t.equal((await own(['for i in 1 2; do', '  echo "$i"', 'done', "echo 'it''s'"].join('\n'))).stdout, '1\n2\nits\n', 'several lines, quotes');
  t.equal(shells(), 1, 'one shell all along');
});

t.test('in a shell, both streams are complete when the call resolves; a flood is capped and still ends', async (t) => {
  const { ssh } = await withSh(t);
  const r = await ssh.exec(`head -c 300000 /dev/zero | tr '\\0' e >&2; echo done`);
  t.equal(r.stdout, 'done\n');
  t.equal(r.stderr.length, 300000);
  const flood = await ssh.exec(`head -c ${6 * 1024 * 1024} /dev/zero | tr '\\0' y; echo; exit 6`, { timeoutMs: 30_000 });
  t.equal(flood.code, 6);
  t.match(flood.stdout, /^y+\n\[truncated \d+ bytes\]\n$/);
  t.equal((await ssh.exec('echo next')).stdout, 'next\n');
});

t.test('a command too long for a shell gets an exec channel of its own', async (t) => {
  const { ssh, execs } = await withSh(t);
  const long = `: ${'x'.repeat(SHELL_COMMAND_MAX_BYTES)}; echo long`;
  t.equal((await ssh.exec(long)).stdout, 'long\n');
  t.equal(execs(), 1);
});

t.test('a server that refuses shell sessions: each command on an exec channel, as before', async (t) => {
  const g = guestServer(t);
  const ssh = await GuestShell.connect({ port: await g.listen(), keys: g.keys, deadlineMs: 10_000, commands: COMMANDS });
  t.teardown(() => ssh.close());
  const rs = await Promise.all([ssh.exec('a'), ssh.exec('b')]);
  rs.push(await ssh.exec('c'));
  t.same(
    rs.map((r) => [r.stdout, r.code]),
    [
      ['up\n', 0],
      ['up\n', 0],
      ['up\n', 0],
    ],
  );
  t.equal(ssh.commands, 3);
});

t.test('close() ends the shells', async (t) => {
  const { ssh, server } = await withSh(t);
  await Promise.all([ssh.exec('true'), ssh.exec('true')]);
  t.equal(server.live(), 2);
  ssh.close();
  for (let i = 0; i < 50 && server.live() > 0; i++) await new Promise((r) => setTimeout(r, 100));
  t.equal(server.live(), 0);
});
