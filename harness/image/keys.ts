// SSH keys made by the harness: the client key (OpenSSH format, usable by
// ssh2 and by a person's ssh) and the guest's host key (dropbear's format),
// whose public half is the only one the client accepts.
import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { writeFileAtomic } from '../core/cache.js';

/**
 * ssh2, loaded when first needed: a CLI call that ends in bad usage or
 * --help makes no key and opens no connection, and loading it costs a
 * fifth of a second. It is CommonJS, so a synchronous require serves both
 * the key maker here and the client in vm/ssh.ts.
 */
let ssh2Module: typeof import('ssh2') | undefined;
export const loadSsh2 = (): typeof import('ssh2') => (ssh2Module ??= createRequire(import.meta.url)('ssh2') as typeof import('ssh2'));

export interface Keys {
  dir: string;
  clientPrivatePath: string;
  clientPrivate: string;
  clientPublic: string;
  /** dropbear's private key file content for the guest. */
  hostKeyDropbear: Buffer;
  /** The SSH wire blob of the host public key, compared byte for byte on connect. */
  hostPublicBlob: Buffer;
  /** "ssh-ed25519 AAAA..." for known_hosts. */
  hostPublicLine: string;
  knownHostsPath: string;
}

const sshString = (b: Buffer | string) => {
  const buf = Buffer.isBuffer(b) ? b : Buffer.from(b);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(buf.length);
  return Buffer.concat([len, buf]);
};

/** The dropbear private key file and public blob for an ed25519 seed and public key. */
export function dropbearEd25519(seed: Buffer, pub: Buffer): { priv: Buffer; blob: Buffer } {
  const both = Buffer.alloc(4);
  both.writeUInt32BE(64);
  const priv = Buffer.concat([sshString('ssh-ed25519'), both, seed, pub]);
  const blob = Buffer.concat([sshString('ssh-ed25519'), sshString(pub)]);
  return { priv, blob };
}

/** Loads the harness's keys from the cache, making them the first time. */
export function loadKeys(cacheDir: string): Keys {
  const dir = join(cacheDir, 'keys');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const clientPrivatePath = join(dir, 'id_ed25519');
  const hostPath = join(dir, 'dropbear_ed25519_host_key');
  if (!existsSync(clientPrivatePath) || !existsSync(`${clientPrivatePath}.pub`)) {
    // About one key in 256 that ssh2 makes, ssh2 cannot parse back (mscdex/ssh2#1513): every connection would fail; make another.
    const { utils } = loadSsh2();
    let kp = utils.generateKeyPairSync('ed25519', { comment: 'klp-harness' });
    while (utils.parseKey(kp.private) instanceof Error) kp = utils.generateKeyPairSync('ed25519', { comment: 'klp-harness' });
    writeFileAtomic(clientPrivatePath, kp.private, 0o600);
    writeFileAtomic(`${clientPrivatePath}.pub`, kp.public + '\n', 0o644);
  }
  if (!existsSync(hostPath)) {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const d = Buffer.from(privateKey.export({ format: 'jwk' }).d!, 'base64url');
    const x = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
    writeFileAtomic(hostPath, dropbearEd25519(d, x).priv, 0o600);
  }
  chmodSync(clientPrivatePath, 0o600);
  chmodSync(hostPath, 0o600);
  const hostKeyDropbear = readFileSync(hostPath);
  // Layout: string "ssh-ed25519", uint32 64, 32-byte seed, 32-byte public key.
  const pub = hostKeyDropbear.subarray(hostKeyDropbear.length - 32);
  const hostPublicBlob = dropbearEd25519(Buffer.alloc(32), pub).blob;
  const hostPublicLine = `ssh-ed25519 ${hostPublicBlob.toString('base64')}`;
  const knownHostsPath = join(dir, 'known_hosts');
  writeFileAtomic(knownHostsPath, `klp-harness-guest ${hostPublicLine}\n`);
  return {
    dir,
    clientPrivatePath,
    clientPrivate: readFileSync(clientPrivatePath, 'utf8'),
    clientPublic: readFileSync(`${clientPrivatePath}.pub`, 'utf8').trim(),
    hostKeyDropbear,
    hostPublicBlob,
    hostPublicLine,
    knownHostsPath,
  };
}
