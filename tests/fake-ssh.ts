// An SSH server standing in for a guest (ssh2's Server): any key is accepted,
// each `exec` is handed to the test, and the client keys trust its host key.
import { generateKeyPairSync } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import ssh2 from 'ssh2';
import type { Test } from 'tap';
import { loadKeys, type Keys } from '../harness/image/keys.js';
import { tempDir } from './helpers.js';

export interface FakeSsh {
  keys: Keys;
  /** Starts listening (port 0: any free one); resolves with the port. */
  listen(port?: number): Promise<number>;
}

/** onExec gets each command and its channel (write, exit, end it, or leave it hanging). */
export function fakeSsh(t: Test, onExec: (command: string, channel: ssh2.ServerChannel) => void): FakeSsh {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048, privateKeyEncoding: { type: 'pkcs1', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } });
  const parsed = ssh2.utils.parseKey(privateKey);
  if (parsed instanceof Error) throw parsed;
  const server = new ssh2.Server({ hostKeys: [privateKey] }, (client) => {
    client.on('error', () => {});
    client.on('authentication', (ctx) => ctx.accept());
    client.on('ready', () => client.on('session', (accept) => accept().on('exec', (acc, _rej, info) => onExec(info.command, acc()))));
  });
  t.teardown(() => server.close());
  return {
    keys: { ...loadKeys(tempDir(t)), hostPublicBlob: parsed.getPublicSSH() },
    listen: (port = 0) => new Promise((r) => server.listen(port, '127.0.0.1', () => r((server.address() as AddressInfo).port))),
  };
}
