// The errors a TetherClient rejects requests with. Match on `name` when the
// class identity may differ (two copies of the package, a Service Worker).

import { type ErrorBody } from "./protocol.js";

/**
 * The gateway answered with an `error` frame. Retry only when `retryable`,
 * and never when `duplicate`: that is the stored outcome of an id the gateway
 * has already seen, and resending the same id gets it again.
 */
export class GatewayError extends Error {
  override readonly name = "GatewayError";
  readonly code: string;
  readonly retryable: boolean;
  /** The reply carried `"duplicate": true`: the id was already settled with this error. */
  readonly duplicate: boolean;
  constructor(
    readonly body: ErrorBody,
    duplicate = false,
  ) {
    super(`${body.code}: ${body.message}${duplicate ? " (the stored outcome of this id)" : ""}`);
    this.code = body.code;
    this.retryable = body.retryable ?? false;
    this.duplicate = duplicate;
  }
}

/** No reply within `requestTimeout`. The request may still take effect; resend with the same id to be sure. */
export class RequestTimeoutError extends Error {
  override readonly name = "RequestTimeoutError";
  constructor(readonly id: string, ms: number) {
    super(`no reply to request ${id} within ${ms} ms`);
  }
}

/** The client was closed (by `close()` or for good by the gateway) before the reply. */
export class ClientClosedError extends Error {
  override readonly name = "ClientClosedError";
}

/** A bound was reached (`maxPending` or `maxQueued`); the request was neither sent nor kept. */
export class QueueFullError extends Error {
  override readonly name = "QueueFullError";
}

/**
 * The request is larger than the gateway's `max_message_bytes` (from the last
 * `welcome`, 64 KiB before the first): it was not sent, since the gateway
 * would close the connection with 1009 (and a resend after the reconnect would
 * do it again).
 */
export class MessageTooLargeError extends Error {
  override readonly name = "MessageTooLargeError";
  constructor(
    readonly id: string,
    readonly bytes: number,
    readonly limit: number,
  ) {
    super(`request ${id} is ${bytes} bytes; the gateway accepts at most ${limit} (max_message_bytes): not sent`);
  }
}
