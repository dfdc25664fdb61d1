// A circuit breaker, sans-IO (time passed in), the same rule as the Rust SDK:
// after `failureThreshold` consecutive failed connects it opens for `cooldownMs`,
// then lets exactly one probe through (half-open); the probe's success closes
// it, its failure re-opens it with a fresh cooldown.

export interface CircuitConfig {
  readonly failureThreshold: number;
  readonly cooldownMs: number;
}

export const DEFAULT_CIRCUIT: CircuitConfig = { failureThreshold: 5, cooldownMs: 60_000 };

export type CircuitState =
  | { readonly kind: "closed"; readonly consecutiveFailures: number }
  | { readonly kind: "open"; readonly until: number }
  | { readonly kind: "half-open" };

export interface CircuitStats {
  opened: number;
  failures: number;
  successes: number;
}

export class CircuitBreaker {
  private current: CircuitState = { kind: "closed", consecutiveFailures: 0 };
  private counters: CircuitStats = { opened: 0, failures: 0, successes: 0 };

  constructor(readonly config: CircuitConfig = DEFAULT_CIRCUIT) {
    if (!(Number.isInteger(config.failureThreshold) && config.failureThreshold >= 1)) {
      throw new Error("failureThreshold must be an integer of at least 1");
    }
    if (!(config.cooldownMs > 0)) throw new Error("cooldownMs must be above zero");
  }

  get state(): CircuitState {
    return this.current;
  }

  get stats(): Readonly<CircuitStats> {
    return this.counters;
  }

  /** May a connect be attempted at `now`? At the end of the cooldown this is the single probe. */
  allow(now: number): boolean {
    switch (this.current.kind) {
      case "closed":
        return true;
      case "open":
        if (now < this.current.until) return false;
        this.current = { kind: "half-open" };
        return true;
      case "half-open":
        return false;
    }
  }

  onSuccess(): void {
    this.counters.successes += 1;
    this.current = { kind: "closed", consecutiveFailures: 0 };
  }

  onFailure(now: number): void {
    this.counters.failures += 1;
    const s = this.current;
    if (s.kind === "half-open") {
      this.open(now);
    } else if (s.kind === "closed") {
      const n = s.consecutiveFailures + 1;
      if (n >= this.config.failureThreshold) this.open(now);
      else this.current = { kind: "closed", consecutiveFailures: n };
    }
  }

  /** When the cooldown ends, while open. */
  pollTimeout(): number | null {
    return this.current.kind === "open" ? this.current.until : null;
  }

  private open(now: number): void {
    this.counters.opened += 1;
    this.current = { kind: "open", until: now + this.config.cooldownMs };
  }
}
