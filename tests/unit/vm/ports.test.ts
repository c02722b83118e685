// freePort hands out a TCP port of 127.0.0.1 that is free at once: the probe
// it listened with is closed, so QEMU's SSH forward (or anyone) can listen on it.
import { createServer, type Server } from 'node:net';
import t from 'tap';
import { freePort } from '../../../harness/vm/ports.js';

/** Listens on 127.0.0.1:port; rejects with the listen error (EADDRINUSE while something holds it). */
function listenOn(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(port, '127.0.0.1', () => resolve(srv));
  });
}
const close = (srv: Server) => new Promise<void>((r) => srv.close(() => r()));

t.test('a port that can be listened on at once on 127.0.0.1', async (t) => {
  const port = await freePort();
  t.ok(Number.isInteger(port) && port > 0 && port < 65536, `a real port (${port})`);
  const srv = await listenOn(port);
  t.teardown(() => close(srv));
  const addr = srv.address();
  t.same(typeof addr === 'object' && addr ? [addr.address, addr.port] : addr, ['127.0.0.1', port]);
  // Proof that listenOn notices a taken port: the same port again fails while held.
  await t.rejects(listenOn(port), { code: 'EADDRINUSE' });
});

t.test('several calls, one after the other and at once, each give a port free to listen on', async (t) => {
  const ports = [await freePort(), await freePort(), await freePort(), ...(await Promise.all([freePort(), freePort(), freePort()]))];
  t.equal(ports.length, 6);
  for (const port of ports) {
    const srv = await listenOn(port).catch((e: Error) => e);
    t.notOk(srv instanceof Error, `port ${port} could be listened on (${srv instanceof Error ? srv.message : 'ok'})`);
    if (!(srv instanceof Error)) await close(srv);
  }
});

t.test('a port handed out while others are held is none of them', async (t) => {
  const held: Server[] = [];
  t.teardown(() => Promise.all(held.map(close)));
  for (let i = 0; i < 5; i++) held.push(await listenOn(await freePort()));
  const heldPorts = held.map((s) => (s.address() as { port: number }).port);
  const port = await freePort();
  t.notOk(heldPorts.includes(port), `${port} is not one of the held ${heldPorts.join(', ')}`);
  held.push(await listenOn(port));
});
