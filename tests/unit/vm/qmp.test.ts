// The QMP client against a small fake QEMU monitor on a unix socket: the
// greeting and capability negotiation, answers after events, refusals.
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { QmpClient } from '../../../harness/vm/qmp.js';
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

t.test('a command QEMU refuses is an error with its description', async (t) => {
  const m = await fakeMonitor(t, { 'human-monitor-command': [{ error: { class: 'GenericError', desc: 'Device has no medium' } }], 'query-status': [{ return: { status: 'paused' } }] });
  const qmp = await QmpClient.connect(m.path);
  await t.rejects(qmp.execute('human-monitor-command', { 'command-line': 'savevm x' }), /QMP human-monitor-command: Device has no medium/);
  t.same(await qmp.execute('query-status'), { status: 'paused' }, 'an answer after an event is the command\'s own');
  qmp.close();
  t.same(m.seen, ['qmp_capabilities', 'human-monitor-command {"command-line":"savevm x"}', 'query-status']);
});

t.test('a socket nobody serves is an error naming it, after the deadline', async (t) => {
  await t.rejects(QmpClient.connect(join(tempDir(t), 'none.sock'), 300), /QMP socket .*none\.sock did not answer within 0.3 s/);
});
