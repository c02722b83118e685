// The guests of one run. A pool owns what the run's guests share: the QEMU
// that runs them, the accelerator verdict per arch, what is known of
// snapshots, and whether guests are restored at all. It hands out fresh
// guests (`await using`); nothing about guests lives at module level.
import type { ArchRecord } from '../core/arch.js';
import type { Logger } from '../core/log.js';
import { Accelerator } from './accel.js';
import type { BootRequest } from './boot.js';
import { HOST_QEMU, type QemuInstall } from './qemu-dist.js';
import { freshGuest, SnapshotBook, type FreshGuest } from './snapshot.js';

export interface PoolOptions {
  cacheDir: string;
  logger: Logger;
  /** Default: the host's QEMU. */
  qemu?: QemuInstall;
  /** false: every guest boots (--no-snapshot). */
  snapshots?: boolean;
}

/** What a guest is for: the request minus what the pool supplies. */
export type GuestRequest = Omit<BootRequest, 'accel' | 'qemuBinary' | 'qemuDataArgs' | 'qemuEnv' | 'logger'>;

export class GuestPool {
  readonly qemu: QemuInstall;
  private readonly accels = new Map<string, Promise<Accelerator>>();
  private readonly book = new SnapshotBook();

  constructor(private readonly o: PoolOptions) {
    this.qemu = o.qemu ?? HOST_QEMU;
  }

  /** The arch's accelerator, decided once per pool (the first call says which and why). */
  accelFor(arch: ArchRecord): Promise<Accelerator> {
    let a = this.accels.get(arch.name);
    if (!a) this.accels.set(arch.name, (a = Accelerator.decide({ arch, cacheDir: this.o.cacheDir, logger: this.o.logger, qemuBinary: this.qemu.binaryFor(arch) })));
    return a;
  }

  /** A pristine guest: restored from the snapshot of its kind (made first if there is none), or booted. */
  async guest(req: GuestRequest): Promise<FreshGuest> {
    const accel = await this.accelFor(req.arch);
    return freshGuest(
      {
        ...req,
        logger: this.o.logger,
        accel,
        qemuBinary: this.qemu.binaryFor(req.arch),
        qemuDataArgs: this.qemu.dataArgsFor(req.arch),
        qemuEnv: this.qemu.envFor(req.arch),
        cacheDir: this.o.cacheDir,
        snapshots: this.o.snapshots !== false,
      },
      this.book,
    );
  }
}
