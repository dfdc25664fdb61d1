// The errors a TetherClient rejects requests with. Match on `name` when the
// class identity may differ (two copies of the package, a Service Worker).

import { type ErrorBody } from "./protocol.js";

/** The gateway answered with an `error` frame. Retry only when `retryable`. */
export class GatewayError extends Error {
  override readonly name = "GatewayError";
  readonly code: string;
  readonly retryable: boolean;
  constructor(readonly body: ErrorBody) {
    super(`${body.code}: ${body.message}`);
    this.code = body.code;
    this.retryable = body.retryable ?? false;
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
