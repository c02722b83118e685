import { statSync } from 'node:fs';
import t from 'tap';
import { dropbearEd25519, loadKeys } from '../../../harness/image/keys.js';
import { tempDir } from '../../helpers.js';

t.test('dropbear ed25519 key layout: name, 64, seed, public', async (t) => {
  const seed = Buffer.alloc(32, 1);
  const pub = Buffer.alloc(32, 2);
  const { priv, blob } = dropbearEd25519(seed, pub);
  t.equal(priv.readUInt32BE(0), 11);
  t.equal(priv.toString('ascii', 4, 15), 'ssh-ed25519');
  t.equal(priv.readUInt32BE(15), 64);
  t.same(priv.subarray(19, 51), seed);
  t.same(priv.subarray(51), pub);
  t.equal(blob.readUInt32BE(15), 32);
  t.same(blob.subarray(19), pub);
});

t.test('keys are made once, private files are 0600, and reloading gives the same host key', async (t) => {
  const dir = tempDir(t);
  const a = loadKeys(dir);
  const b = loadKeys(dir);
  t.same(a.hostPublicBlob, b.hostPublicBlob);
  t.equal(a.clientPublic, b.clientPublic);
  t.equal(statSync(a.clientPrivatePath).mode & 0o777, 0o600);
  t.equal(statSync(`${a.dir}/dropbear_ed25519_host_key`).mode & 0o777, 0o600);
  t.match(a.clientPublic, /^ssh-ed25519 /);
  t.match(a.hostPublicLine, /^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5/);
});
