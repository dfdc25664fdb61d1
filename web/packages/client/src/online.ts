// Network reachability as the browser reports it, behind a two-method interface
// (`OnlineSource`) so that the offline queue's controller can be driven by the
// real `navigator.onLine` + `online`/`offline` events in a page or a worker, and
// by a hand-set switch (`ManualOnlineSource`) in tests.
//
// Not here: probing the gateway (a WebSocket's own state says whether *it* is
// up; `navigator.onLine` only says whether the device has a network at all, so
// "online" can still mean "gateway unreachable"), queueing, replay.

/** Whether the device has a network, and a way to hear about changes. */
export interface OnlineSource {
  /** True when the device believes it is online. */
  isOnline(): boolean;
  /** Calls `listener` with the new value after every change; returns the unsubscribe function. */
  subscribe(listener: (online: boolean) => void): () => void;
}

/** The part of `window` / `self` used: `online` and `offline` events. */
export interface OnlineEventTarget {
  addEventListener(type: "online" | "offline", listener: () => void): void;
  removeEventListener(type: "online" | "offline", listener: () => void): void;
}

function hasEvents(v: unknown): v is OnlineEventTarget {
  return (
    typeof v === "object" &&
    v !== null &&
    typeof (v as { addEventListener?: unknown }).addEventListener === "function" &&
    typeof (v as { removeEventListener?: unknown }).removeEventListener === "function"
  );
}

function navigatorOnLine(): boolean {
  const nav = (globalThis as { navigator?: { onLine?: unknown } }).navigator;
  // Node has no `navigator` (20) or one without `onLine` (21+): always online there.
  return typeof nav?.onLine === "boolean" ? nav.onLine : true;
}

/**
 * The browser's view: `navigator.onLine` and the `online`/`offline` events of
 * `target` (default: the global object, i.e. `window` in a page and `self` in a
 * worker). Where there is no `navigator.onLine` (Node), it is always online and
 * never changes. The value is read from `navigator` each time, so it is right
 * even between an event and its delivery.
 */
export function browserOnlineSource(target?: OnlineEventTarget): OnlineSource {
  const events: OnlineEventTarget | null = target ?? (hasEvents(globalThis) ? globalThis : null);
  return {
    isOnline: navigatorOnLine,
    subscribe(listener) {
      if (events === null) return () => undefined;
      const onOnline = (): void => {
        listener(true);
      };
      const onOffline = (): void => {
        listener(false);
      };
      events.addEventListener("online", onOnline);
      events.addEventListener("offline", onOffline);
      return () => {
        events.removeEventListener("online", onOnline);
        events.removeEventListener("offline", onOffline);
      };
    },
  };
}

/** An `OnlineSource` switched by hand (`set`), for tests and for apps with their own probe. */
export class ManualOnlineSource implements OnlineSource {
  private online: boolean;
  private readonly listeners = new Set<(online: boolean) => void>();

  /** Starts online unless told otherwise. */
  constructor(online = true) {
    this.online = online;
  }

  isOnline(): boolean {
    return this.online;
  }

  /** Changes the value; listeners hear about it only when it actually changed. */
  set(online: boolean): void {
    if (online === this.online) return;
    this.online = online;
    for (const l of [...this.listeners]) l(online);
  }

  subscribe(listener: (online: boolean) => void): () => void {
    // A wrapper so that the same function may be added twice and removed once each.
    const entry = (online: boolean): void => {
      listener(online);
    };
    this.listeners.add(entry);
    return () => {
      this.listeners.delete(entry);
    };
  }
}
