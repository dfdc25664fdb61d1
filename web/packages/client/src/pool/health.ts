// How healthy a connected member of the pool is (the Rust pool's health.rs):
// the `healthScore` formula, the smoothed ping RTT and the bounded window of
// recent errors (`Health`), and which failures count against a connection.
//
//     score = 1 / ((1 + rtt / 50 ms) × (1 + errors))        in (0, 1]
//
// `rtt` is the exponential moving average of the pool's health pings (the
// newest sample weighs 0.3; 50 ms until the first pong), `errors` the failures
// within the error window. The score halves at 50 ms of RTT, and each recent
// error divides it further.
//
// Not here: whether a connection is healthy at all (connected and not being
// replaced, decided by the pool), sending the pings (the pool's timer), and
// choosing by score (choose.ts).

import { ClientClosedError, GatewayError, RequestTimeoutError } from "../connection.js";

/** The RTT in ms at which the score halves; also the RTT assumed before the first pong. */
export const RTT_SCALE_MS = 50;
/** Weight of the newest ping in the smoothed RTT. */
export const RTT_WEIGHT = 0.3;
/**
 * Error timestamps kept per connection. Bound: the oldest is dropped when a
 * new one would exceed it; the score is ~0 long before, so nothing is lost.
 */
export const MAX_ERRORS_KEPT = 1024;

/** The health score of a healthy connection: `rttMs` smoothed RTT (null: not measured), `errors` in the window. */
export function healthScore(rttMs: number | null, errors: number): number {
  const rtt = (rttMs ?? RTT_SCALE_MS) / RTT_SCALE_MS;
  return 1 / ((1 + rtt) * (1 + errors));
}

/**
 * Whether a failed request says something about the connection (rather than
 * about the caller's input or an agent): timeouts, a closed client, and the
 * gateway codes `internal`, `overloaded` and `rate_limited`.
 */
export function isConnectionFault(error: unknown): boolean {
  if (error instanceof RequestTimeoutError || error instanceof ClientClosedError) return true;
  if (error instanceof GatewayError) return error.code === "internal" || error.code === "overloaded" || error.code === "rate_limited";
  return false;
}

/** One connection's smoothed RTT and recent errors. */
export class Health {
  /** Smoothed ping RTT in ms, null until the first pong. */
  rtt: number | null = null;
  private readonly errorTimes: number[] = [];

  /** Folds one ping round trip (ms) into the smoothed RTT. */
  recordRtt(sample: number): void {
    this.rtt = this.rtt === null ? sample : this.rtt * (1 - RTT_WEIGHT) + sample * RTT_WEIGHT;
  }

  /** Counts one failure at `now` (ms). */
  recordError(now: number): void {
    if (this.errorTimes.length >= MAX_ERRORS_KEPT) this.errorTimes.shift();
    this.errorTimes.push(now);
  }

  /** Failures within `window` ms before `now`; older ones are forgotten. */
  errors(now: number, window: number): number {
    while (this.errorTimes.length > 0 && now - (this.errorTimes[0] ?? now) > window) this.errorTimes.shift();
    return this.errorTimes.length;
  }
}
