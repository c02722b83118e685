// An SSH server standing in for a guest (ssh2's Server): any key is accepted,
// each `exec` is handed to the test, and the client keys trust its host key;
// or one that runs the host's sh for exec and shell requests.
import { spawn } from 'node:child_process';
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

/** A server's host key, and its public blob for the client keys. */
function makeHostKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048, privateKeyEncoding: { type: 'pkcs1', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } });
  const parsed = ssh2.utils.parseKey(privateKey);
  if (parsed instanceof Error) throw parsed;
  return { private: privateKey, publicBlob: parsed.getPublicSSH() };
}

/**
 * Client keys in a fresh directory. ssh2 makes an ed25519 key it cannot
 * parse back about once in 256 (mscdex/ssh2#1513): such a key is made again.
 */
function clientKeys(t: Test): Keys {
  for (;;) {
    const keys = loadKeys(tempDir(t));
    if (!(ssh2.utils.parseKey(keys.clientPrivate) instanceof Error)) return keys;
  }
}

/** onExec gets each command and its channel (write, exit, end it, or leave it hanging). */
export function fakeSsh(t: Test, onExec: (command: string, channel: ssh2.ServerChannel) => void): FakeSsh {
  const hostKey = makeHostKey();
  const server = new ssh2.Server({ hostKeys: [hostKey.private] }, (client) => {
    client.on('error', () => {});
    client.on('authentication', (ctx) => ctx.accept());
    client.on('ready', () => client.on('session', (accept) => accept().on('exec', (acc, _rej, info) => onExec(info.command, acc()))));
  });
  t.teardown(() => server.close());
  return {
    keys: { ...clientKeys(t), hostPublicBlob: hostKey.publicBlob },
    listen: (port = 0) => new Promise((r) => server.listen(port, '127.0.0.1', () => r((server.address() as AddressInfo).port))),
  };
}

/**
 * Writes to a server channel's stderr once the client's window has room:
 * when the window reopens, ssh2's Server resumes only a stdout write, so
 * stderr written while it is shut (after a stdout flood) would never go.
 */
async function stderrWhenRoom(ch: ssh2.ServerChannel, d: Buffer): Promise<void> {
  const outgoing = (ch as unknown as { outgoing: { window: number; state: string } }).outgoing;
  while (outgoing.window < d.length && outgoing.state === 'open') await new Promise((r) => setTimeout(r, 5));
  ch.stderr.write(d);
}

export interface ShellSsh extends FakeSsh {
  /** Each session request so far: a shell, or an exec with its command. */
  requests: { kind: 'shell' | 'exec'; command?: string }[];
  /** Processes the server started that have not ended. */
  live(): number;
}

/**
 * An SSH server that runs the host's /bin/sh as a guest's dropbear would:
 * `sh -c COMMAND` for an exec, `sh` reading the channel for a shell (after
 * a banner on both streams, standing in for a login shell's noise). A
 * channel the client closes kills its process group; so does the teardown.
 */
export function shellSsh(t: Test, cwd: string): ShellSsh {
  const hostKey = makeHostKey();
  const requests: ShellSsh['requests'] = [];
  const live = new Set<number>();
  const groups: number[] = [];
  const killGroup = (pid: number) => {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  const start = (ch: ssh2.ServerChannel, args: string[], banner: boolean) => {
    const p = spawn('/bin/sh', args, { cwd, detached: true, stdio: 'pipe' });
    const pid = p.pid!;
    let toStderr = Promise.resolve();
    live.add(pid);
    groups.push(pid);
    p.stdin.on('error', () => {});
    if (banner) {
      ch.write('Welcome to the stand-in guest\n');
      ch.stderr.write('-sh: no job control here\n');
    }
    ch.on('data', (d: Buffer) => p.stdin.write(d));
    ch.on('end', () => p.stdin.end());
    ch.on('close', () => killGroup(pid));
    p.stdout.on('data', (d: Buffer) => ch.write(d));
    p.stderr.on('data', (d: Buffer) => void (toStderr = toStderr.then(() => stderrWhenRoom(ch, d))));
    p.on('exit', () => live.delete(pid));
    p.on('close', (code, signal) =>
      toStderr.then(() => {
        if (signal) ch.exit(signal.replace(/^SIG/, ''), false, '');
        else ch.exit(code ?? 0);
        ch.end();
      }),
    );
  };
  const server = new ssh2.Server({ hostKeys: [hostKey.private] }, (client) => {
    client.on('error', () => {});
    client.on('authentication', (ctx) => ctx.accept());
    client.on('ready', () =>
      client.on('session', (accept) => {
        const session = accept();
        session.on('shell', (acc) => {
          requests.push({ kind: 'shell' });
          start(acc(), [], true);
        });
        session.on('exec', (acc, _rej, info) => {
          requests.push({ kind: 'exec', command: info.command });
          start(acc(), ['-c', info.command], false);
        });
      }),
    );
  });
  t.teardown(() => {
    for (const pid of groups) killGroup(pid);
    server.close();
  });
  return {
    keys: { ...clientKeys(t), hostPublicBlob: hostKey.publicBlob },
    listen: (port = 0) => new Promise((r) => server.listen(port, '127.0.0.1', () => r((server.address() as AddressInfo).port))),
    requests,
    live: () => live.size,
  };
}
