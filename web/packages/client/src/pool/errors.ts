// What can go wrong for a request through the pool itself, each error saying
// whether retrying may help (the Rust pool's error.rs).
//
// Not here: configuration errors (`PoolConfigError` in config.ts) and the
// errors of one member's client (`GatewayError`, `RequestTimeoutError`,
// `ClientClosedError`, `QueueFullError`, passed through as they are).

/** The pool's wait queue was full and this request was refused, or displaced by one of higher priority. Retry later, with backoff. */
export class PoolQueueFullError extends Error {
  override readonly name = "PoolQueueFullError";
  readonly retryable = true;
  constructor(readonly capacity: number) {
    super(`the pool's wait queue is full (${String(capacity)} requests); retry later`);
  }
}

/** No connection became healthy within `connectionTimeout` while the request waited. Retry later. */
export class NoHealthyConnectionError extends Error {
  override readonly name = "NoHealthyConnectionError";
  readonly retryable = true;
  constructor(ms: number) {
    super(`no healthy connection within ${String(ms)} ms (connectionTimeout); the request was not sent`);
  }
}

/** The pool was closed before the request was sent. Stop using it. */
export class PoolClosedError extends Error {
  override readonly name = "PoolClosedError";
  readonly retryable = false;
  constructor() {
    super("the WebSocket pool is closed");
  }
}
