// The QMP client against a small fake QEMU monitor on a unix socket: the
// greeting and capability negotiation, a migration that completes, one that fails.
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { migrateToFile, QmpClient } from '../../../harness/vm/qmp.js';
import { tempDir } from '../../helpers.js';

/** A monitor that answers each command with the next scripted reply (events in between, as QEMU sends them). */
async function fakeMonitor(t: Test, replies: Record<string, unknown[]>) {
  const path = join(tempDir(t), 'qmp.sock');
  const seen: string[] = [];
  const server = createServer((sock: Socket) => {
    sock.write(JSON.stringify({ QMP: { version: {}, capabilities: [] } }) + '\n');
    let buf = '';
    sock.on('data', (d) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const msg = JSON.parse(buf.slice(0, nl)) as { execute: string; arguments?: unknown };
        buf = buf.slice(nl + 1);
        seen.push(msg.arguments ? `${msg.execute} ${JSON.stringify(msg.arguments)}` : msg.execute);
        sock.write(JSON.stringify({ event: 'MIGRATION', data: {} }) + '\n');
        const next = replies[msg.execute]?.shift() ?? { return: {} };
        sock.write(JSON.stringify(next) + '\n');
      }
    });
  });
  await new Promise<void>((r) => server.listen(path, r));
  t.teardown(() => server.close());
  return { path, seen };
}

t.test('a migration to a file: the URI quotes the path for the shell, and the status is polled until completed', async (t) => {
  const m = await fakeMonitor(t, { 'query-migrate': [{ return: { status: 'active' } }, { return: { status: 'completed', 'total-time': 210, ram: { transferred: 40e6 } } }] });
  const qmp = await QmpClient.connect(m.path);
  const s = await migrateToFile(qmp, "/cache/snap shots/it's/state", 5000);
  qmp.close();
  t.equal(s.status, 'completed');
  t.equal(s['total-time'], 210);
  t.same(m.seen, ['qmp_capabilities', `migrate {"uri":"exec:cat > '/cache/snap shots/it'\\\\''s/state'"}`, 'query-migrate', 'query-migrate']);
});

t.test("a failed migration is an error with QEMU's reason", async (t) => {
  const m = await fakeMonitor(t, { 'query-migrate': [{ return: { status: 'failed', 'error-desc': 'Unable to write to command: Broken pipe' } }] });
  const qmp = await QmpClient.connect(m.path);
  await t.rejects(migrateToFile(qmp, '/x/state', 5000), /saving the guest's state to \/x\/state failed: Unable to write to command: Broken pipe/);
  qmp.close();
});

t.test('a command QEMU refuses is an error with its description', async (t) => {
  const m = await fakeMonitor(t, { migrate: [{ error: { class: 'GenericError', desc: 'There is a migration process in progress' } }] });
  const qmp = await QmpClient.connect(m.path);
  await t.rejects(migrateToFile(qmp, '/x/state', 5000), /QMP migrate: There is a migration process in progress/);
  qmp.close();
});

t.test('a socket nobody serves is an error naming it, after the deadline', async (t) => {
  await t.rejects(QmpClient.connect(join(tempDir(t), 'none.sock'), 300), /QMP socket .*none\.sock did not answer within 0.3 s/);
});
