// An empty qcow2 image, written here so that no qemu-img is needed. A guest
// that is reset in place (`loadvm`) keeps its pristine state in such an image:
// QEMU stores a VM state only in a qcow2 image attached to the machine (as a
// drive no device uses: the guest never sees it).
import { writeFileSync } from 'node:fs';

/** 64 KiB clusters, QEMU's default. */
const CLUSTER = 65536;
/** The virtual disk; the VM state is stored past its end and does not count against it. */
const DISK_BYTES = 1 << 20;

/**
 * Writes a qcow2 (version 3) image with no data and no snapshots: the
 * header, the refcount table (one entry), one refcount block (16-bit counts
 * for the four clusters in use) and an L1 table of one empty entry.
 */
export function writeEmptyQcow2(path: string): void {
  const f = Buffer.alloc(4 * CLUSTER);
  const refcountTable = CLUSTER;
  const refcountBlock = 2 * CLUSTER;
  const l1Table = 3 * CLUSTER;
  f.write('QFI\xfb', 0, 'latin1');
  f.writeUInt32BE(3, 4); // version
  f.writeUInt32BE(16, 20); // cluster_bits
  f.writeBigUInt64BE(BigInt(DISK_BYTES), 24); // virtual size
  f.writeUInt32BE(1, 36); // l1_size: one L2 table covers 512 MiB
  f.writeBigUInt64BE(BigInt(l1Table), 40);
  f.writeBigUInt64BE(BigInt(refcountTable), 48);
  f.writeUInt32BE(1, 56); // refcount_table_clusters
  // nb_snapshots, snapshots_offset, the three feature masks: 0
  f.writeUInt32BE(4, 96); // refcount_order: 16-bit counts
  f.writeUInt32BE(104, 100); // header_length; the header extension area after it is all zero (its end marker)
  f.writeBigUInt64BE(BigInt(refcountBlock), refcountTable);
  for (let cluster = 0; cluster < 4; cluster++) f.writeUInt16BE(1, refcountBlock + 2 * cluster);
  writeFileSync(path, f);
}
