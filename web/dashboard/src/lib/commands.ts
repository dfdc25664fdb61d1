// The Commands view's log: each command sent from the console with its
// payload, outcome and latency (from send to result). Bounded to MAX_COMMANDS,
// the oldest dropped first. Lives outside React so that it survives switching
// views.

import { GatewayError, type TetherClient } from "@tether/client";

export const MAX_COMMANDS = 50;

export type CommandOutcome =
  | { readonly kind: "pending" }
  /** The agent's `result` data. */
  | { readonly kind: "ok"; readonly data: unknown; readonly duplicate: boolean }
  /** The agent answered with an error. */
  | { readonly kind: "agent-error"; readonly code: string; readonly message: string }
  /** The gateway refused it (`no_handler`, `forbidden`, …) or it failed locally (timeout, closed). */
  | { readonly kind: "failed"; readonly code: string; readonly message: string };

export interface CommandRecord {
  /** Local sequence number, for keys and test ids. */
  readonly n: number;
  readonly type: string;
  readonly payload: unknown;
  readonly sentAt: number;
  readonly latencyMs: number | null;
  readonly outcome: CommandOutcome;
}

export class CommandLog {
  private records: readonly CommandRecord[] = [];
  private readonly listeners = new Set<() => void>();
  private counter = 0;

  constructor(
    private readonly client: TetherClient,
    private readonly clock: () => number = () => performance.now(),
  ) {}

  /** Sends command `type` with `payload`; the log shows it pending, then its outcome. Never rejects. */
  async send(type: string, payload: unknown): Promise<CommandRecord> {
    this.counter += 1;
    const n = this.counter;
    const started = this.clock();
    this.put({ n, type, payload, sentAt: Date.now(), latencyMs: null, outcome: { kind: "pending" } });
    let outcome: CommandOutcome;
    try {
      const result = await this.client.command(type, payload);
      outcome =
        result.error === undefined
          ? { kind: "ok", data: result.data, duplicate: result.duplicate === true }
          : { kind: "agent-error", code: result.error.code, message: result.error.message };
    } catch (e) {
      outcome =
        e instanceof GatewayError
          ? { kind: "failed", code: e.code, message: e.body.message }
          : { kind: "failed", code: e instanceof Error ? e.name : "error", message: e instanceof Error ? e.message : String(e) };
    }
    const done = this.records.find((r) => r.n === n);
    const record: CommandRecord = {
      n,
      type,
      payload,
      sentAt: done?.sentAt ?? Date.now(),
      latencyMs: this.clock() - started,
      outcome,
    };
    this.put(record);
    return record;
  }

  clear(): void {
    this.records = this.records.filter((r) => r.outcome.kind === "pending");
    this.emit();
  }

  // useSyncExternalStore shape; newest first.
  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  };

  getSnapshot = (): readonly CommandRecord[] => this.records;

  private put(record: CommandRecord): void {
    const rest = this.records.filter((r) => r.n !== record.n);
    const next = record.outcome.kind === "pending" ? [record, ...rest] : this.replace(record);
    this.records = next.slice(0, MAX_COMMANDS);
    this.emit();
  }

  /** The record in its place (or first when it was dropped meanwhile). */
  private replace(record: CommandRecord): CommandRecord[] {
    const i = this.records.findIndex((r) => r.n === record.n);
    if (i < 0) return [record, ...this.records];
    const next = [...this.records];
    next[i] = record;
    return next;
  }

  private emit(): void {
    for (const l of this.listeners) l();
  }
}
