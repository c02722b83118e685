// Connecting to a guest that is still booting: refused connections are
// retried until the server listens; a death (abort) or the deadline ends it.
import { createServer, type AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { HarnessError } from '../../../harness/core/errors.js';
import { GuestShell, isNotUpYet } from '../../../harness/vm/ssh.js';
import { fakeSsh } from '../../fake-ssh.js';

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
