// The I/O a TetherClient is given: a WebSocket class and a clock with timers.
// Both are injectable, so tests drive the client with an in-memory socket and
// a fake clock; browsers use the globals.

/** What the shell reads from a WebSocket `message` event. */
export interface MessageEventLike {
  readonly data: unknown;
}

/** What the shell reads from a WebSocket `close` event. */
export interface CloseEventLike {
  readonly code: number;
  readonly reason: string;
}

/**
 * The part of a WebSocket the shell uses: the DOM `WebSocket` and the `ws`
 * package's class both fit. Handler parameters are `never` so that either
 * library's own event types are accepted; the shell reads only the fields of
 * `MessageEventLike` and `CloseEventLike`.
 */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: never) => void) | null;
  onmessage: ((ev: never) => void) | null;
  onclose: ((ev: never) => void) | null;
  onerror: ((ev: never) => void) | null;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** A monotonic clock in ms and the timers to go with it. */
export interface Clock {
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const SYSTEM_CLOCK: Clock = {
  now: () => performance.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => {
    clearTimeout(handle as ReturnType<typeof setTimeout>);
  },
};
