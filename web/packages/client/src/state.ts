// The connection state machine, sans-IO: `handle(event, now)` returns actions
// and `pollTimeout()` says when to call back. The same rules as the Rust SDK's
// `state::Machine`, which is the reference: no reconnect after 1008, 4003, or
// 4001 without a token provider; backoff (never below the base delay) after
// 1013 and 4029; an immediate reconnect to the next URL after 1001.

import { Backoff, type BackoffConfig, DEFAULT_BACKOFF, type Random } from "./backoff.js";
import { CircuitBreaker, type CircuitConfig, DEFAULT_CIRCUIT } from "./circuit.js";

export type State =
  | { readonly kind: "idle" }
  | { readonly kind: "connecting"; readonly attempt: number; readonly url: number }
  | { readonly kind: "connected"; readonly url: number; readonly session: string }
  | { readonly kind: "reconnecting"; readonly attempt: number; readonly at: number }
  | { readonly kind: "circuit-open"; readonly until: number }
  | { readonly kind: "closed"; readonly code: number | null; readonly reason: string };

export type MachineEvent =
  | { readonly type: "start" }
  | { readonly type: "opened"; readonly session: string }
  | { readonly type: "connect-failed"; readonly reason: string; readonly code?: number | null }
  | { readonly type: "lost"; readonly code: number | null; readonly reason: string }
  | { readonly type: "timeout" }
  | { readonly type: "stop" };

export interface Transition {
  readonly old: State;
  readonly new: State;
  readonly code: number | null;
  readonly reason: string;
}

export type Action =
  | { readonly type: "connect"; readonly url: number }
  | { readonly type: "disconnect" }
  | { readonly type: "transition"; readonly transition: Transition };

export interface MachineConfig {
  readonly urls: number;
  readonly autoReconnect: boolean;
  readonly canRenewToken: boolean;
  readonly backoff: BackoffConfig;
  readonly circuit: CircuitConfig;
}

export const DEFAULT_MACHINE: MachineConfig = {
  urls: 1,
  autoReconnect: true,
  canRenewToken: false,
  backoff: DEFAULT_BACKOFF,
  circuit: DEFAULT_CIRCUIT,
};

export class Machine {
  private current: State = { kind: "idle" };
  private url = 0;
  private readonly backoff: Backoff;
  readonly circuit: CircuitBreaker;

  constructor(
    private readonly config: MachineConfig = DEFAULT_MACHINE,
    private readonly random: Random = Math.random,
  ) {
    this.backoff = new Backoff(config.backoff);
    this.circuit = new CircuitBreaker(config.circuit);
  }

  get state(): State {
    return this.current;
  }

  /** When to feed `{type: "timeout"}`. */
  pollTimeout(): number | null {
    const s = this.current;
    if (s.kind === "reconnecting") return s.at;
    if (s.kind === "circuit-open") return s.until;
    return null;
  }

  handle(event: MachineEvent, now: number): Action[] {
    const actions: Action[] = [];
    const s = this.current;
    if (s.kind === "closed") return actions;
    if (event.type === "stop") {
      if (s.kind === "connected") actions.push({ type: "disconnect" });
      this.go({ kind: "closed", code: null, reason: "closed by the application" }, null, "stop", actions);
      return actions;
    }
    switch (s.kind) {
      case "idle":
        if (event.type === "start") this.connect(0, now, null, "start", actions);
        break;
      case "connecting":
        if (event.type === "opened") {
          this.backoff.reset();
          this.circuit.onSuccess();
          this.go({ kind: "connected", url: s.url, session: event.session }, null, "connected", actions);
        } else if (event.type === "connect-failed" && this.isRefusal(event.code ?? null)) {
          // The gateway refuses before any welcome (bad token 4001, role 4003,
          // policy 1008): the same rules as after a welcome, not a retry.
          this.go({ kind: "closed", code: event.code ?? null, reason: event.reason }, event.code ?? null, event.reason, actions);
        } else if (event.type === "connect-failed") {
          this.circuit.onFailure(now);
          this.url = (this.url + 1) % this.config.urls;
          this.retry(s.attempt + 1, now, null, event.reason, false, actions);
        }
        break;
      case "connected":
        if (event.type === "lost") this.lost(s.url, event.code, event.reason, now, actions);
        break;
      case "reconnecting":
        if (event.type === "timeout" && now >= s.at) this.connect(s.attempt, now, null, "backoff elapsed", actions);
        break;
      case "circuit-open":
        if (event.type === "timeout" && now >= s.until) {
          this.connect(0, now, null, "circuit half-open: probing", actions);
        }
        break;
    }
    return actions;
  }

  private lost(url: number, code: number | null, reason: string, now: number, actions: Action[]): void {
    if (this.isFinal(code)) {
      this.go({ kind: "closed", code, reason }, code, reason, actions);
    } else if (code === 1001) {
      this.url = (url + 1) % this.config.urls;
      this.connect(0, now, code, reason, actions);
    } else {
      this.retry(0, now, code, reason, code === 1013 || code === 4029, actions);
    }
  }

  /** A close code that ends the client for good, whether or not autoReconnect is on. */
  private isRefusal(code: number | null): boolean {
    if (code === 1008 || code === 4003) return true;
    return code === 4001 && !this.config.canRenewToken;
  }

  private isFinal(code: number | null): boolean {
    return this.isRefusal(code) || !this.config.autoReconnect;
  }

  private connect(attempt: number, now: number, code: number | null, reason: string, actions: Action[]): void {
    if (!this.circuit.allow(now)) {
      this.go({ kind: "circuit-open", until: this.circuit.pollTimeout() ?? now }, code, "circuit open", actions);
      return;
    }
    this.go({ kind: "connecting", attempt, url: this.url }, code, reason, actions);
    actions.push({ type: "connect", url: this.url });
  }

  private retry(
    attempt: number,
    now: number,
    code: number | null,
    reason: string,
    atLeastBase: boolean,
    actions: Action[],
  ): void {
    // Giving up (the attempt cap) wins over waiting for the breaker.
    const delay = this.backoff.nextDelay(this.random);
    if (delay === null) {
      const why = `gave up after ${this.backoff.attempt} attempts (${reason})`;
      this.go({ kind: "closed", code, reason: why }, code, why, actions);
      return;
    }
    const circuit = this.circuit.state;
    if (circuit.kind === "open") {
      this.go({ kind: "circuit-open", until: circuit.until }, code, reason, actions);
      return;
    }
    const wait = atLeastBase ? Math.max(delay, this.config.backoff.baseMs) : delay;
    this.go({ kind: "reconnecting", attempt, at: now + wait }, code, reason, actions);
  }

  private go(next: State, code: number | null, reason: string, actions: Action[]): void {
    const old = this.current;
    this.current = next;
    actions.push({ type: "transition", transition: { old, new: next, code, reason } });
  }
}
