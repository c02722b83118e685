// The empty qcow2 image a QEMU keeps its pristine state in (QEMU accepting it
// and saving into it is shown by tests/integration/reset-in-place.test.ts):
// here, that its header and tables say what the format asks.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { writeEmptyQcow2 } from '../../../harness/vm/qcow2.js';
import { tempDir } from '../../helpers.js';

t.test('an empty qcow2 v3 image: header, refcounts for every cluster in the file, an empty L1 table', async (t) => {
  const path = join(tempDir(t), 'vmstate.qcow2');
  writeEmptyQcow2(path);
  const f = readFileSync(path);
  t.equal(f.subarray(0, 4).toString('latin1'), 'QFI\xfb', 'magic');
  t.equal(f.readUInt32BE(4), 3, 'version 3');
  const cluster = 1 << f.readUInt32BE(20);
  t.equal(cluster, 65536, '64 KiB clusters');
  t.equal(f.length % cluster, 0, 'the file is whole clusters');
  const clusters = f.length / cluster;
  t.equal(f.readUInt32BE(36), 1, 'one L1 entry');
  const l1 = Number(f.readBigUInt64BE(40));
  t.equal(f.readBigUInt64BE(l1), 0n, 'the L1 entry is empty: no data');
  t.equal(f.readUInt32BE(60), 0, 'no snapshots yet');
  t.equal(f.readBigUInt64BE(72), 0n, 'no incompatible features');
  t.equal(f.readUInt32BE(96), 4, '16-bit refcounts');
  t.equal(f.readUInt32BE(100), 104, 'header length');
  const table = Number(f.readBigUInt64BE(48));
  const block = Number(f.readBigUInt64BE(table));
  for (const [what, at] of [['header', 0], ['refcount table', table], ['refcount block', block], ['L1 table', l1]] as const) {
    t.equal(at % cluster, 0, `${what} starts on a cluster`);
    t.equal(f.readUInt16BE(block + 2 * (at / cluster)), 1, `${what}'s cluster is counted once`);
  }
  t.equal(new Set([0, table, block, l1]).size, clusters, 'every cluster in the file is one of them');
});
