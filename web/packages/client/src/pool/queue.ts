// The bounded priority queue of requests waiting for a healthy connection (the
// Rust pool's queue.rs): higher priority first, first-in first-out within a
// priority, and its overflow policy, *shed lowest*: when the queue is full, a
// new item of higher priority than the lowest waiting one displaces the newest
// of those (the caller fails it); otherwise the new item is refused.
//
// Not here: the waiting itself (timeouts, granting a connection, errors), which
// the pool does around this queue.

/** A place in the queue, for `remove`. */
export type QueueKey = number;

interface Entry<T> {
  readonly priority: number;
  readonly key: QueueKey;
  readonly item: T;
}

/** What `push` did. */
export type PushResult<T> =
  | { readonly ok: true; readonly key: QueueKey; readonly displaced: T | null }
  | { readonly ok: false };

/** The bounded priority queue (see the file comment). */
export class WaitQueue<T> {
  private next = 0;
  /** Sorted: higher priority first, then older (smaller key) first. */
  private readonly entries: Entry<T>[] = [];

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.entries.length;
  }

  /** Queues `item`; on overflow either refuses it or queues it and hands back the displaced one. */
  push(priority: number, item: T): PushResult<T> {
    let displaced: T | null = null;
    if (this.entries.length >= this.capacity) {
      const lowest = this.entries[this.entries.length - 1];
      if (lowest === undefined || priority <= lowest.priority) return { ok: false };
      this.entries.pop();
      displaced = lowest.item;
    }
    const key = this.next++;
    // After every entry of the same or a higher priority (FIFO within a priority).
    let lo = 0;
    let hi = this.entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.entries[mid]?.priority ?? priority) >= priority) lo = mid + 1;
      else hi = mid;
    }
    this.entries.splice(lo, 0, { priority, key, item });
    return { ok: true, key, displaced };
  }

  /** Takes the first item (highest priority, oldest). */
  pop(): T | undefined {
    return this.entries.shift()?.item;
  }

  /** Takes the item at `key` out of the queue, if it is still there. */
  remove(key: QueueKey): T | undefined {
    const i = this.entries.findIndex((e) => e.key === key);
    if (i < 0) return undefined;
    return this.entries.splice(i, 1)[0]?.item;
  }

  /** Empties the queue, returning the items in order. */
  drain(): T[] {
    return this.entries.splice(0).map((e) => e.item);
  }
}
