// The guests of one run. A pool owns what the run's guests share: the QEMU
// that runs them, the accelerator verdict per arch, what is known of
// snapshots, whether guests are restored at all, and the paused QEMUs kept
// to be reset in place for the next guest. It hands out fresh guests
// (`await using`) and is itself disposed at the end of a run (the kept
// QEMUs stop); nothing about guests lives at module level.
import type { ArchRecord } from '../core/arch.js';
import type { Logger } from '../core/log.js';
import { Accelerator } from './accel.js';
import type { BootRequest } from './boot.js';
import { HOST_QEMU, type QemuInstall } from './qemu-dist.js';
import { expectGuests, freshGuest, resetWaiting, SnapshotBook, type FreshGuest, type FreshGuestRequest } from './snapshot.js';

export interface PoolOptions {
  cacheDir: string;
  logger: Logger;
  /** Default: the host's QEMU. */
  qemu?: QemuInstall;
  /** false: every guest boots (--no-snapshot). */
  snapshots?: boolean;
  /**
   * Whether a restored guest's QEMU, once its guest ends, is kept paused and
   * reset in place (loadvm) for the next guest of the same snapshot (default:
   * yes, with snapshots). At most `maxQemus` QEMUs at once, paused ones
   * included (default 4; a run gives its --jobs): a new one stops paused ones first.
   */
  reuse?: boolean;
  maxQemus?: number;
}

/** What a guest is for: the request minus what the pool supplies. */
export type GuestRequest = Omit<BootRequest, 'accel' | 'qemuBinary' | 'qemuDataArgs' | 'qemuEnv' | 'logger'>;

export class GuestPool implements AsyncDisposable {
  readonly qemu: QemuInstall;
  private readonly accels = new Map<string, Promise<Accelerator>>();
  private readonly book: SnapshotBook;

  constructor(private readonly o: PoolOptions) {
    this.qemu = o.qemu ?? HOST_QEMU;
    this.book = new SnapshotBook(o.snapshots !== false && o.reuse !== false, o.maxQemus);
  }

  /** Stops the QEMUs kept for reuse. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.book.close();
  }

  /** The arch's accelerator, decided once per pool (the first call says which and why). */
  accelFor(arch: ArchRecord): Promise<Accelerator> {
    let a = this.accels.get(arch.name);
    if (!a) this.accels.set(arch.name, (a = Accelerator.decide({ arch, cacheDir: this.o.cacheDir, logger: this.o.logger, qemuBinary: this.qemu.binaryFor(arch) })));
    return a;
  }

  /** A pristine guest: restored from the snapshot of its kind (made first if there is none; an idle QEMU of it is reset in place), or booted. */
  async guest(req: GuestRequest): Promise<FreshGuest> {
    return freshGuest(await this.full(req), this.book);
  }

  /** Whether a guest for this request would now be a paused QEMU reset in place (no new QEMU, no first restore). */
  async resetWaiting(req: GuestRequest): Promise<boolean> {
    return resetWaiting(await this.full(req), this.book);
  }

  /**
   * The guests an arch has still to start (all of them, each time it
   * changes): QEMUs kept paused for its other snapshots stop now, and the
   * next QEMU started gets their memory. `queued`: those of them not yet
   * taken (a QEMU started for a snapshot none of them has serves one guest).
   */
  async expect(arch: string, reqs: readonly GuestRequest[], queued: readonly GuestRequest[]): Promise<void> {
    const full = (rs: readonly GuestRequest[]) => Promise.all(rs.map((r) => this.full(r)));
    await expectGuests(arch, await full(reqs), await full(queued), this.book);
  }

  private async full(req: GuestRequest): Promise<FreshGuestRequest> {
    return {
      ...req,
      logger: this.o.logger,
      accel: await this.accelFor(req.arch),
      qemuBinary: this.qemu.binaryFor(req.arch),
      qemuDataArgs: this.qemu.dataArgsFor(req.arch),
      qemuEnv: this.qemu.envFor(req.arch),
      cacheDir: this.o.cacheDir,
      snapshots: this.o.snapshots !== false,
    };
  }
}
