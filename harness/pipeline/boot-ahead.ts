// Runs work items in order, each on a resource of its own (a booted guest),
// acquiring the next item's resource while the current item runs: a scenario
// spends most of its time waiting on the kernel's one-second retries, which
// is time enough to boot the next guest.
import '../core/dispose.js';

export interface AheadOptions<I, R extends AsyncDisposable> {
  /** Starts acquiring an item's resource. */
  acquire: (item: I) => Promise<R>;
  /** Uses it; the resource is disposed of when this settles. */
  use: (item: I, resource: R) => Promise<void>;
  /** Called before each acquisition after the first; may throw to stop (an interrupt). */
  beforeNext?: () => void;
}

/**
 * Uses every item in order. A failed acquisition ends the run with its
 * error when that item's turn comes; whatever ends it, the resource acquired
 * ahead is disposed of too.
 */
export async function runAhead<I, R extends AsyncDisposable>(items: readonly I[], o: AheadOptions<I, R>): Promise<void> {
  let next: Promise<R> | undefined = items.length ? o.acquire(items[0]!) : undefined;
  next?.catch(() => {}); // reported when its turn comes
  try {
    for (let i = 0; i < items.length; i++) {
      await using resource = await next!;
      next = undefined;
      o.beforeNext?.();
      if (i + 1 < items.length) {
        next = o.acquire(items[i + 1]!);
        next.catch(() => {});
      }
      await o.use(items[i]!, resource);
    }
  } finally {
    const ahead = await next?.catch(() => undefined);
    await ahead?.[Symbol.asyncDispose]();
  }
}
