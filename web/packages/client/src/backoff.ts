// Reconnect delays: exponential backoff with full jitter ("Exponential Backoff
// And Jitter", AWS Architecture Blog), the same rule as the Rust SDK. Full
// jitter spreads clients out after a gateway restart instead of letting them
// all come back at once. Deterministic under test: the random source is passed
// in.

/** Settings, with the browser provider's names. */
export interface BackoffConfig {
  /** Base delay (`reconnectInterval`), default 1000 ms. */
  readonly baseMs: number;
  /** Largest delay (`maxReconnectDelay`), default 30000 ms. */
  readonly maxMs: number;
  /** Give up after this many delays (`maxReconnectAttempts`); `null`: never. */
  readonly maxAttempts: number | null;
}

export const DEFAULT_BACKOFF: BackoffConfig = { baseMs: 1000, maxMs: 30_000, maxAttempts: null };

/** Checks a configuration; throws a plain-English error for a bad value. */
export function validateBackoff(c: BackoffConfig): BackoffConfig {
  if (!(c.baseMs > 0)) throw new Error("reconnectInterval must be above zero");
  if (!(c.maxMs >= c.baseMs)) throw new Error("maxReconnectDelay must be at least reconnectInterval");
  if (c.maxAttempts !== null && !(Number.isInteger(c.maxAttempts) && c.maxAttempts >= 0)) {
    throw new Error("maxReconnectAttempts must be a non-negative integer or null");
  }
  return c;
}

/** A random source returning a number in [0, 1). */
export type Random = () => number;

export class Backoff {
  private attempts = 0;

  constructor(readonly config: BackoffConfig = DEFAULT_BACKOFF) {
    validateBackoff(config);
  }

  /** Delays handed out since the last reset. */
  get attempt(): number {
    return this.attempts;
  }

  /** The ceiling of the next delay: min(max, base × 2^attempt). */
  ceiling(): number {
    let c = this.config.baseMs;
    for (let i = 0; i < this.attempts && c < this.config.maxMs; i++) c *= 2;
    return Math.min(c, this.config.maxMs);
  }

  /** The next delay in ms (uniform in [0, ceiling]), or `null` once the cap is reached. */
  nextDelay(random: Random = Math.random): number | null {
    const { maxAttempts } = this.config;
    if (maxAttempts !== null && this.attempts >= maxAttempts) return null;
    const delay = Math.floor(random() * (this.ceiling() + 1));
    this.attempts += 1;
    return delay;
  }

  /** After a successful connection. */
  reset(): void {
    this.attempts = 0;
  }
}
