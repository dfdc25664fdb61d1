// `TetherPool`: several `TetherClient`s over several gateway URLs behind one
// `send`, the browser counterpart of the Rust SDK's pool
// (crates/client/src/pool/). This file is the public entry (requests, the
// wait queue, counters, the metrics store) and re-exports the rest of ./pool/:
// config.ts (options, defaults, validation), members.ts (opening, sizing and
// health-checking the member connections), choose.ts (the strategies),
// health.ts (the score), queue.ts (the bounded wait queue), metrics.ts
// (snapshot and Prometheus text), errors.ts.
//
// The rules (as in the Rust pool, except where marked *):
// - Healthy: a connection is healthy while its client is `connected` and it is
//   not being replaced; only healthy connections are chosen.
// - Choice: within the highest priority tier present among the healthy ones,
//   `round-robin` takes them in turn, `least-used` the fewest in flight,
//   `health-based` the best score; ties go to the next id after the last pick.
// - Health: every `healthCheckInterval` each connected member gets a `ping`
//   request; its RTT feeds the score, a missing pong (within one interval) or
//   a connection fault counts as an error. *After 3 failed checks in a row the
//   member is replaced: it takes no new requests, a new member is opened, and
//   it is closed once its requests are settled.
// - Queue: with no healthy member, `send` waits (bounded, priority order, shed
//   lowest; see WaitQueue) until one connects or *`connectionTimeout` passes
//   (the Rust pool uses its request timeout). Once handed to a member, a
//   request stays with it (its client resends it with the same id after a
//   reconnect, so the gateway's (principal, id) dedup makes it count once);
//   the pool never sends one request to two members.
// - Sizing: `minConnections` members are opened at `start()`. *Members are
//   spread over the URLs (fewest members first, then higher priority, then URL
//   order; a URL whose members, not counting those being replaced, are all
//   failing is skipped: a member being replaced says nothing about its URL,
//   so its replacement may open there while it finishes its requests), so
//   there may be several per URL (the Rust pool has one client per URL).
//   Another member is opened, up to `maxConnections`, when fewer than
//   `minConnections` are healthy or connecting, when requests wait and
//   nothing is connecting, or when every healthy member of the top tier has
//   `growInFlight` requests in flight. *An extra healthy member idle for `idleTimeout` is closed, down to
//   `minConnections` healthy (the Rust pool keeps started endpoints).
// - A member whose client closes for good (4003, 4001 without `getToken`,
//   `maxReconnectAttempts` used up, a loss with `autoReconnect: false`) is
//   dropped and its URL abandoned for the pool's life (`abandonedUrls`), as
//   the Rust pool never restarts a closed endpoint: reopening at once would
//   hammer a gateway that said "do not come back".
// - Every member shares one `clientId`, so deduplication spans them. *By
//   default it is the page's persistent one (`defaultClientId()`, kept in
//   `localStorage` like a TetherClient's), so that a message sent through the
//   pool and replayed later (offline queue, another client of the page) is
//   deduplicated as the same principal's and takes effect once.
// - Bounds: at most `maxConnections` members; the wait queue holds
//   `queueCapacity` requests (full: shed lowest, the loser gets
//   `PoolQueueFullError`); each member's client bounds its own unanswered
//   requests (`maxPending`, `QueueFullError`); at most one health ping per
//   member is outstanding; error timestamps per member are capped
//   (MAX_ERRORS_KEPT, oldest dropped).
//
// Not here: connecting, heartbeats, backoff, circuit breaking and resending
// (each member's TetherClient does that; the pool only reads its state);
// subscriptions and their failover (use a member client, or
// @tether/client's TetherClient with several `urls`); React (@tether/react).

import {
  type Clock,
  NO_REPLY_TYPES,
  type PublishAck,
  type RequestFrame,
  SYSTEM_CLOCK,
  type TetherClientOptions,
  defaultClientId,
} from "./connection.js";
import { createLogger } from "./debug.js";
import { chooseConnection } from "./pool/choose.js";
import { type ResolvedPoolConfig, type TetherPoolOptions, resolvePoolConfig } from "./pool/config.js";
import { NoHealthyConnectionError, PoolClosedError, PoolQueueFullError } from "./pool/errors.js";
import { type Member, Members } from "./pool/members.js";
import { type PoolMetricsSnapshot, renderPoolMetrics } from "./pool/metrics.js";
import { type QueueKey, WaitQueue } from "./pool/queue.js";
import { type ResultFrame, type ServerMessage, isValidChannel, parseMessage } from "./protocol.js";
import { notifyAll, randomHex } from "./util.js";

export * from "./pool/config.js";
export * from "./pool/errors.js";
export * from "./pool/metrics.js";
export { RTT_SCALE_MS, healthScore, isConnectionFault } from "./pool/health.js";
export { FAILED_HEALTH_CHECKS_TO_REPLACE } from "./pool/members.js";

/** The priority of `send` without one, `publish` and `command`; higher goes first. */
export const DEFAULT_REQUEST_PRIORITY = 0;

/** One connection's answer to `broadcast`, in the shape of `Promise.allSettled`, plus which connection. */
export type BroadcastResult =
  | { readonly status: "fulfilled"; readonly connectionId: number; readonly url: string; readonly value: ServerMessage }
  | { readonly status: "rejected"; readonly connectionId: number; readonly url: string; readonly reason: unknown };

interface Waiter {
  readonly wire: Record<string, unknown>;
  readonly started: number;
  readonly resolve: (reply: ServerMessage) => void;
  readonly reject: (error: Error) => void;
  key: QueueKey;
  timer: unknown;
}

/** Options copied as they are to every member TetherClient. */
const PASSED_OPTIONS = [
  "token",
  "getToken",
  "WebSocketImpl",
  "random",
  "heartbeatInterval",
  "heartbeatTimeout",
  "requestTimeout",
  "autoReconnect",
  "reconnectInterval",
  "maxReconnectDelay",
  "maxReconnectAttempts",
  "circuit",
] as const satisfies readonly (keyof TetherClientOptions & keyof TetherPoolOptions)[];

const log = createLogger("[WebSocketPool]");

/**
 * A pool of connections to one or more gateways (see the file comment for the
 * rules). Create, `start()`, `send`/`broadcast`, `close()`. The constructor
 * validates and does no I/O; `subscribe`/`getSnapshot` form a store for
 * `useSyncExternalStore`.
 */
export class TetherPool {
  /** The validated configuration, defaults applied. */
  readonly config: ResolvedPoolConfig;
  /** The principal shared by every member connection. */
  readonly clientId: string;
  private readonly clock: Clock;
  private readonly members: Members;
  private readonly queue: WaitQueue<Waiter>;
  private last: number | null = null;
  private started = false;
  private closed = false;
  private maintaining = false;
  private again = false;
  private readonly prefix = randomHex();
  private counter = 0;

  private totalRequests = 0;
  private failedRequests = 0;
  private rejected = 0;
  private answered = 0;
  private responseSum = 0;

  private readonly listeners = new Set<() => void>();
  private snapshot: PoolMetricsSnapshot;
  private snapshotKey = "";
  private dirty = true;

  /** Validates `options` (throws `PoolConfigError`); connects nothing until `start()`. */
  constructor(options: TetherPoolOptions) {
    this.config = resolvePoolConfig(options);
    this.clock = options.clock ?? SYSTEM_CLOCK;
    this.clientId = options.clientId ?? defaultClientId();
    const client: TetherClientOptions = {
      clientId: this.clientId,
      clock: this.clock,
      connectionTimeout: this.config.connectionTimeout,
    };
    for (const key of PASSED_OPTIONS) {
      if (options[key] !== undefined) (client as Record<string, unknown>)[key] = options[key];
    }
    this.members = new Members(
      this.config,
      this.clock,
      client,
      () => {
        this.maintain();
      },
      log,
    );
    this.queue = new WaitQueue(this.config.queueCapacity);
    this.snapshot = this.build();
  }

  // -------------------------------------------------------------------------
  // Lifecycle
  // -------------------------------------------------------------------------

  /** Opens `minConnections` connections and starts the health checks. Does nothing after the first call or after `close()`. */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    log("starting", this.config);
    this.maintain();
    this.members.startHealthChecks();
  }

  /** Closes every connection for good; waiting requests fail with `PoolClosedError`, in-flight ones with `ClientClosedError`. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.queue.drain()) {
      this.clock.clearTimeout(w.timer);
      this.failedRequests += 1;
      w.reject(new PoolClosedError());
    }
    this.members.closeAll();
    log("closed");
    this.changed();
  }

  /** Whether `close()` was called. */
  get isClosed(): boolean {
    return this.closed;
  }

  // -------------------------------------------------------------------------
  // Requests
  // -------------------------------------------------------------------------

  /**
   * Sends one request (`ping`, `publish`, a command, …; an `id` is added when
   * missing and kept across the member's resends) through one healthy
   * connection chosen by the strategy, and resolves with the reply frame (an
   * `error` reply rejects with `GatewayError`). With no healthy connection it
   * waits in the queue at `priority` (higher first, FIFO within a priority)
   * for up to `connectionTimeout` ms, then rejects with
   * `NoHealthyConnectionError`. The queue holds `queueCapacity` requests; when
   * full, a request of higher priority than the lowest waiting one displaces
   * the newest of those, otherwise it is refused; either way the loser
   * rejects with `PoolQueueFullError` at once.
   */
  send(frame: RequestFrame, priority: number = DEFAULT_REQUEST_PRIORITY): Promise<ServerMessage> {
    if (this.closed) return Promise.reject(new PoolClosedError());
    let wire: Record<string, unknown>;
    try {
      if (typeof priority !== "number" || !Number.isFinite(priority)) throw new Error("priority must be a finite number");
      wire = this.prepare(frame, true);
    } catch (e) {
      return Promise.reject(e as Error);
    }
    this.totalRequests += 1;
    const started = this.clock.now();
    if (this.queue.size === 0) {
      const m = this.reserve();
      if (m !== null) {
        const reply = this.dispatch(m, wire, started);
        this.changed();
        return reply;
      }
    }
    return new Promise<ServerMessage>((resolve, reject) => {
      const waiter: Waiter = { wire, started, resolve, reject, key: -1, timer: null };
      const pushed = this.queue.push(priority, waiter);
      if (!pushed.ok) {
        this.rejected += 1;
        this.failedRequests += 1;
        log("queue full, refused", wire["type"], wire["id"]);
        reject(new PoolQueueFullError(this.config.queueCapacity));
        this.changed();
        return;
      }
      waiter.key = pushed.key;
      if (pushed.displaced !== null) {
        const d = pushed.displaced;
        this.clock.clearTimeout(d.timer);
        this.rejected += 1;
        this.failedRequests += 1;
        log("queue full, displaced", d.wire["type"], d.wire["id"]);
        d.reject(new PoolQueueFullError(this.config.queueCapacity));
      }
      waiter.timer = this.clock.setTimeout(() => {
        if (this.queue.remove(waiter.key) === undefined) return;
        this.failedRequests += 1;
        log("no healthy connection in time", wire["type"], wire["id"]);
        reject(new NoHealthyConnectionError(this.config.connectionTimeout));
        this.changed();
      }, this.config.connectionTimeout);
      log("queued", wire["type"], wire["id"], `priority ${String(priority)}`);
      this.maintain();
      this.changed();
    });
  }

  /** Publishes `data` on `channel` through one connection; resolves with the ack's data once durable. */
  async publish(channel: string, data: unknown, priority: number = DEFAULT_REQUEST_PRIORITY): Promise<PublishAck> {
    if (!isValidChannel(channel)) throw new Error(`invalid channel name: ${JSON.stringify(channel)}`);
    const reply = await this.send({ type: "publish", channel, data }, priority);
    return (reply.type === "ack" ? reply.data : null) as PublishAck;
  }

  /** Sends command `type` through one connection; resolves with its `result` frame. */
  async command(type: string, data?: unknown, priority: number = DEFAULT_REQUEST_PRIORITY): Promise<ResultFrame> {
    const reply = await this.send(data === undefined ? { type } : { type, data }, priority);
    if (reply.type !== "result") throw new Error(`expected a result frame, got ${reply.type}`);
    return reply;
  }

  /**
   * Sends `frame` to every healthy connection at once and resolves, when all
   * have settled, with one result per connection (oldest first); never
   * rejects for a connection's failure. Nothing waits in the queue: with no
   * healthy connection the result is `[]`.
   *
   * Ids, as in the Rust pool: a frame without an `id` gets a fresh one per
   * connection (each member's client picks its own). Every member shares one
   * principal, so one id on several connections would be deduplicated by
   * (principal, id): on one gateway, or gateways sharing a store, only the
   * first copy would take effect and the others would get `duplicate: true`.
   * A frame that carries an `id` keeps it on every copy: the caller asked for
   * "once per store".
   */
  async broadcast(frame: RequestFrame): Promise<BroadcastResult[]> {
    if (this.closed) throw new PoolClosedError();
    const wire = this.prepare(frame, false);
    const started = this.clock.now();
    const targets = this.members.healthy();
    this.totalRequests += targets.length;
    const results = targets.map((m) => {
      m.inFlight += 1;
      const base = { connectionId: m.id, url: m.url };
      return this.dispatch(m, { ...wire }, started).then(
        (value): BroadcastResult => ({ status: "fulfilled", ...base, value }),
        (reason: unknown): BroadcastResult => ({ status: "rejected", ...base, reason }),
      );
    });
    log("broadcast", wire["type"], `to ${String(targets.length)} connections`);
    this.changed();
    return Promise.all(results);
  }

  /** Connections with an open socket now (the guide's "Active Connections"). */
  getConnectionCount(): number {
    return this.members.connectedCount();
  }

  // -------------------------------------------------------------------------
  // Metrics and store
  // -------------------------------------------------------------------------

  /** A current snapshot (the same object as long as nothing changed). */
  get metrics(): PoolMetricsSnapshot {
    this.dirty = true;
    return this.getSnapshot();
  }

  /** The metrics as Prometheus text (format 0.0.4), names prefixed `tether_pool_`. */
  toPrometheus(): string {
    return renderPoolMetrics(this.metrics);
  }

  /** The snapshot for `useSyncExternalStore`: frozen, a new object only when something changed. */
  getSnapshot = (): PoolMetricsSnapshot => {
    if (!this.dirty) return this.snapshot;
    this.dirty = false;
    const next = this.build();
    const key = JSON.stringify(next);
    if (key !== this.snapshotKey) {
      this.snapshot = next;
      this.snapshotKey = key;
    }
    return this.snapshot;
  };

  /** Calls `listener` after every change; returns the unsubscribe function. */
  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  };

  private changed(): void {
    this.dirty = true;
    notifyAll(this.listeners);
  }

  private build(): PoolMetricsSnapshot {
    const connections = this.members.metrics(this.clock.now());
    const count = (p: (c: (typeof connections)[number]) => boolean): number => connections.filter(p).length;
    return Object.freeze({
      strategy: this.config.loadBalancingStrategy,
      minConnections: this.config.minConnections,
      maxConnections: this.config.maxConnections,
      totalConnections: connections.length,
      activeConnections: count((c) => c.state === "connected"),
      healthyConnections: count((c) => c.healthy),
      failedConnections: count((c) => c.state === "reconnecting" || c.state === "circuit-open"),
      totalRequests: this.totalRequests,
      failedRequests: this.failedRequests,
      averageResponseTime: this.answered === 0 ? 0 : this.responseSum / this.answered,
      inFlight: connections.reduce((n, c) => n + c.inFlight, 0),
      queued: this.queue.size,
      queueCapacity: this.config.queueCapacity,
      rejected: this.rejected,
      closed: this.closed,
      abandonedUrls: Object.freeze(this.members.abandonedUrls()),
      connections: Object.freeze(connections),
    });
  }

  // -------------------------------------------------------------------------
  // Choosing and sending
  // -------------------------------------------------------------------------

  /** Checks a frame the way the member will; adds an id when `assignId` and none is given. */
  private prepare(frame: RequestFrame, assignId: boolean): Record<string, unknown> {
    if (typeof frame !== "object" || frame === null || typeof frame.type !== "string") {
      throw new Error("a request frame must be an object with a string `type`");
    }
    if (NO_REPLY_TYPES.has(frame.type)) throw new Error(`a ${frame.type} frame gets no reply by id; the pool sends only requests`);
    const wire: Record<string, unknown> = { ...frame };
    if (assignId && wire["id"] === undefined) {
      this.counter += 1;
      wire["id"] = `pool-${this.prefix}-${String(this.counter)}`;
    }
    const checked = parseMessage(wire["id"] === undefined ? { ...wire, id: "probe" } : wire);
    if (!checked.ok) throw new Error(`invalid request frame: ${checked.error.message}`);
    return wire;
  }

  /** Chooses a healthy member and counts a request in flight on it; null when none is healthy. */
  private reserve(): Member | null {
    const healthy = this.members.healthy();
    const candidates = this.members.candidates(healthy, this.clock.now());
    const id = chooseConnection(this.config.loadBalancingStrategy, candidates, this.last);
    const m = healthy.find((x) => x.id === id);
    if (m === undefined) return null;
    this.last = m.id;
    m.inFlight += 1;
    if (this.members.list.length < this.config.maxConnections && this.members.isBusy(healthy)) this.maintain();
    return m;
  }

  /** Sends on a reserved member; settles the pool's accounting either way. */
  private dispatch(m: Member, wire: Record<string, unknown>, started: number): Promise<ServerMessage> {
    m.requests += 1;
    m.lastUsed = this.clock.now();
    log("send", wire["type"], wire["id"] ?? "(id per connection)", `via #${String(m.id)} ${m.url}`);
    return m.client.request(wire as RequestFrame).then(
      (reply) => {
        this.settle(m, started, null);
        return reply;
      },
      (e: unknown) => {
        this.settle(m, started, e);
        throw e;
      },
    );
  }

  private settle(m: Member, started: number, error: unknown): void {
    const now = this.clock.now();
    m.inFlight -= 1;
    m.lastUsed = now;
    if (error === null) {
      this.answered += 1;
      this.responseSum += now - started;
    } else {
      this.failedRequests += 1;
      this.members.recordFailure(m, error, now);
    }
    if (m.replacing && m.inFlight === 0) this.maintain();
    this.changed();
  }

  /** Hands waiting requests, in queue order, to healthy members. */
  private drain(): void {
    while (this.queue.size > 0) {
      const m = this.reserve();
      if (m === null) return;
      const w = this.queue.pop();
      if (w === undefined) {
        m.inFlight -= 1;
        return;
      }
      this.clock.clearTimeout(w.timer);
      this.dispatch(m, w.wire, w.started).then(w.resolve, w.reject);
    }
  }

  /**
   * Re-balances the members (drop finished ones, open and close as the sizing
   * rules say), then drains the queue. Runs after every member state change,
   * health-check result and queued request; re-entrant calls (a member opened
   * here reports its first transition at once) fold into one more round.
   */
  private maintain(): void {
    if (this.started && !this.closed) {
      if (this.maintaining) {
        this.again = true;
        return;
      }
      this.maintaining = true;
      try {
        do {
          this.again = false;
          this.members.rebalance(this.queue.size);
          this.drain();
        } while (this.again && !this.closed);
      } finally {
        this.maintaining = false;
      }
    }
    this.changed();
  }
}
