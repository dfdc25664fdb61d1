// `TetherClient`: the I/O shell around the sans-IO `Machine` (state.ts), the
// browser counterpart of the Rust SDK's `driver.rs` + `client.rs`. It turns
// WebSocket events and timers into Machine events and performs the Machine's
// actions; it keeps the heartbeat, routes replies by id, resubscribes with
// `since` and resends unanswered requests (same ids) after every reconnect.
//
// Not here: React (see @tether/react), the durable offline queue
// (offline-queue.ts), the pool with health checks (pool), the injected I/O
// types (io.ts) and errors (errors.ts); agent registration and in-band token
// renewal (`auth`) are Rust-SDK-only for now (a token provider is asked again
// on every reconnect instead).
// All connection state lives in the Machine's `State`; this file only holds
// the per-socket bookkeeping (`Socket`) and the request/subscription tables.
//
// Time: one wake-up timer at the earliest of the Machine's `pollTimeout()`, the
// connect deadline, the heartbeat deadlines and the oldest request deadline.
// Clock and timers are injectable for tests.

import { type BackoffConfig, type Random } from "./backoff.js";
import { type CircuitConfig, DEFAULT_CIRCUIT } from "./circuit.js";
import { createLogger } from "./debug.js";
import { ClientClosedError, GatewayError, MessageTooLargeError, QueueFullError, RequestTimeoutError } from "./errors.js";
import {
  type Clock,
  type CloseEventLike,
  type MessageEventLike,
  SYSTEM_CLOCK,
  type WebSocketConstructor,
  type WebSocketLike,
} from "./io.js";
import { ClientMetrics } from "./metrics.js";
import {
  type AgentStatusEntry,
  type Event,
  type ResultFrame,
  type ServerMessage,
  type SystemMetrics,
  type Welcome,
  isValidChannel,
  isValidPrincipal,
  parseMessage,
  parseServerFrame,
  pingFrame,
  publishFrame,
  requestAgentStatusFrame,
  requestSystemMetricsFrame,
  commandFrame,
  subscribeFrame,
  unsubscribeFrame,
} from "./protocol.js";
import { type Action, Machine, type MachineEvent, type State, type Transition } from "./state.js";
import { notifyAll, randomHex } from "./util.js";

// ---------------------------------------------------------------------------
// Bounds
// ---------------------------------------------------------------------------

/**
 * Most requests awaiting a reply at once (sent or not). Each holds a promise
 * and its frame until the reply or its deadline; 1000 covers any UI burst
 * while keeping a stuck gateway from growing memory without limit. When full,
 * a new request is rejected at once with an Error saying so (nothing is sent).
 */
export const DEFAULT_MAX_PENDING = 1000;

/**
 * Most requests made while not connected that still wait for their first send.
 * They are sent, in order, right after the next `welcome`; 100 keeps their
 * burst under the gateway's rate burst (200). Requests already sent and still
 * unanswered are resent in the same burst, so a client with hundreds of those
 * can exceed it: the gateway then answers some `rate_limited` (retryable).
 * When full, a new request is rejected at once with `QueueFullError`.
 */
export const DEFAULT_MAX_QUEUED = 100;

/** The gateway's default `max_message_bytes`, assumed until a `welcome` says otherwise. */
export const DEFAULT_MAX_MESSAGE_BYTES = 65_536;

export * from "./io.js";
export * from "./errors.js";

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

/** Options, with the browser provider's names. Give `url` or `urls`. */
export interface TetherClientOptions {
  /** The gateway's WebSocket URL, e.g. `ws://localhost:8001/ws`. */
  url?: string;
  /** Several URLs, tried in turn (the next one after a failure or a 1001). */
  urls?: readonly string[];
  /** Reconnect after a lost connection (default true). */
  autoReconnect?: boolean;
  /** Base reconnect delay in ms (default 1000). */
  reconnectInterval?: number;
  /** Largest reconnect delay in ms (default 30000). */
  maxReconnectDelay?: number;
  /** Give up after this many reconnect delays; `null` (default): never. */
  maxReconnectAttempts?: number | null;
  /** Ping after this many ms without sending (default 30000; the welcome's value if smaller). */
  heartbeatInterval?: number;
  /** No pong within this many ms: the connection is dead (default 10000; the welcome's if smaller). */
  heartbeatTimeout?: number;
  /** The `welcome` must arrive within this many ms of a connect, token included (default 10000). */
  connectionTimeout?: number;
  /** A request without a reply after this many ms is rejected (default 30000). */
  requestTimeout?: number;
  /**
   * The stable principal sent as `client_id` (deduplication spans reconnects).
   * Default: the one kept in `localStorage` under `tether.clientId` (made on
   * first use, so it survives page reloads and is shared by the tabs of an
   * origin), or a random one where there is no `localStorage`.
   */
  clientId?: string;
  /** A fixed token, sent as `access_token`. */
  token?: string;
  /** Asked before every connect; wins over `token`. Also lets a 4001 close reconnect. */
  getToken?: () => Promise<string | null | undefined>;
  /** Default `globalThis.WebSocket`. */
  WebSocketImpl?: WebSocketConstructor;
  /** Default `performance.now()` and the global timers. */
  clock?: Clock;
  /** The random source of the backoff jitter (default `Math.random`). */
  random?: Random;
  /** The connect circuit breaker (default 5 failures, 60 s). */
  circuit?: CircuitConfig;
  /** See DEFAULT_MAX_PENDING. */
  maxPending?: number;
  /** See DEFAULT_MAX_QUEUED. */
  maxQueued?: number;
}

// ---------------------------------------------------------------------------
// Public shapes
// ---------------------------------------------------------------------------

/** An item delivered to a subscription listener. */
export type SubscriptionItem =
  /** The next event, in seq order, never twice. */
  | { readonly kind: "event"; readonly event: Event }
  /** After a recovering subscribe: `ok: false` means events were lost; refetch state. */
  | { readonly kind: "recovered"; readonly ok: boolean }
  /** The gateway refused the subscription (e.g. `forbidden`); no further items. */
  | { readonly kind: "error"; readonly error: GatewayError };

export type SubscriptionListener = (item: SubscriptionItem) => void;

/** The ack data of a publish. `duplicate` is true when a resent id had already been accepted. */
export interface PublishAck {
  readonly channel: string;
  readonly seq: number;
  readonly epoch: string;
  readonly duplicate?: boolean;
}

/** What a UI renders; a new (frozen) object only when something changed. */
export interface ConnectionSnapshot {
  readonly state: State;
  readonly isConnected: boolean;
  /** Why the connection is not up (the last loss or failure), null when connected or never failed. */
  readonly error: string | null;
  /** Connection attempts since the last successful connection (0 while connected and before the first loss). */
  readonly reconnectAttempts: number;
  readonly lastTransition: Transition | null;
}

/** A request frame as on the wire (`{type, id?, …}`); an `id` is added when missing. */
export type RequestFrame = { readonly type: string; readonly id?: string } & Readonly<Record<string, unknown>>;

// ---------------------------------------------------------------------------
// Internals
// ---------------------------------------------------------------------------

interface Pending {
  readonly id: string;
  readonly text: string;
  readonly deadline: number;
  /** Written to some socket at least once (else it counts against `maxQueued`). */
  sent: boolean;
  /** The socket it was last written to (so that `resume` does not send it twice). */
  sentOn: Socket | null;
  /** When it was first written (clock ms), for the ack-latency histogram. */
  firstSentAt: number | null;
  readonly resolve: (frame: ServerMessage) => void;
  readonly reject: (error: Error) => void;
}

interface Sub {
  readonly listeners: Set<SubscriptionListener>;
  /** The last delivered (or, after `recovered: false`, skipped-to) position. */
  last: { seq: number; epoch: string } | null;
  /** The application's recovery point for the first subscribe. */
  readonly since: { seq: number; epoch?: string | null } | undefined;
  /** The socket the last subscribe went to. */
  sentOn: Socket | null;
}

/** One WebSocket and its heartbeat; replaced on every connect. */
interface Socket {
  readonly ws: WebSocketLike;
  welcome: Welcome | null;
  /** `welcome` deadline while connecting. */
  readonly connectBy: number;
  lastSent: number;
  lastReceived: number;
  ping: { id: string; due: number } | null;
  interval: number;
  timeout: number;
}

const noop = (): void => undefined;
const log = createLogger("[WebSocket]");

/** The key under which the default `client_id` is kept in `localStorage`. */
export const CLIENT_ID_STORAGE_KEY = "tether.clientId";

/** The persistent default principal (see `TetherClientOptions.clientId`). */
export function defaultClientId(): string {
  try {
    const storage = (
      globalThis as { localStorage?: { getItem(key: string): string | null; setItem(key: string, value: string): void } }
    ).localStorage;
    if (storage !== undefined) {
      const kept = storage.getItem(CLIENT_ID_STORAGE_KEY);
      if (kept !== null && isValidPrincipal(kept)) return kept;
      const made = `c-${randomHex()}`;
      storage.setItem(CLIENT_ID_STORAGE_KEY, made);
      return made;
    }
  } catch {
    // storage disabled (private mode, sandboxed frame): fall through
  }
  return `c-${randomHex()}`;
}

const REPLY_TYPES = new Set(["ack", "error", "result", "pong", "agent_status", "system_metrics"]);
/** Client messages the gateway never answers by id: they cannot be requests. */
export const NO_REPLY_TYPES: ReadonlySet<string> = new Set(["batch", "status", "task_progress", "task_result"]);

// ---------------------------------------------------------------------------
// TetherClient
// ---------------------------------------------------------------------------

export class TetherClient {
  private readonly urls: readonly string[];
  private readonly machine: Machine;
  private readonly clock: Clock;
  private readonly WebSocketImpl: WebSocketConstructor;
  private readonly prefix = randomHex();
  private counter = 0;
  readonly clientId: string;
  /** Counters and the ack-latency histogram; `metrics.toPrometheus()` renders them. */
  readonly metrics = new ClientMetrics();
  private connects = 0;
  private reconnectAttempts = 0;
  /** The gateway's `max_message_bytes` from the last welcome (its default before the first). */
  private maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES;
  /** Index into `urls` of the current or last connect attempt. */
  private urlIndex = 0;

  private readonly heartbeatInterval: number;
  private readonly heartbeatTimeout: number;
  private readonly connectionTimeout: number;
  private readonly requestTimeout: number;
  private readonly maxPending: number;
  private readonly maxQueued: number;
  private readonly token: string | undefined;
  private readonly getToken: (() => Promise<string | null | undefined>) | undefined;

  private socket: Socket | null = null;
  /** Bumped on every connect and teardown: stale async work checks it. */
  private generation = 0;
  private timer: { handle: unknown; at: number } | null = null;

  /** Insertion order = deadline order (one fixed `requestTimeout`). */
  private readonly pending = new Map<string, Pending>();
  private unsent = 0;
  private readonly subs = new Map<string, Sub>();
  /** Subscribe ids in flight on the current socket → channel. */
  private readonly subIds = new Map<string, string>();

  private snapshot: ConnectionSnapshot;
  private readonly stateListeners = new Set<() => void>();
  private readonly transitionListeners = new Set<(t: Transition) => void>();

  constructor(options: TetherClientOptions) {
    const urls = options.urls ?? (options.url === undefined ? [] : [options.url]);
    if (urls.length === 0) throw new Error("TetherClient needs `url` or a non-empty `urls`");
    this.urls = [...urls];
    const Impl = options.WebSocketImpl ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (Impl === undefined) throw new Error("no WebSocket in this environment: pass `WebSocketImpl`");
    this.WebSocketImpl = Impl;
    this.clock = options.clock ?? SYSTEM_CLOCK;
    this.clientId = options.clientId ?? defaultClientId();
    if (!isValidPrincipal(this.clientId)) throw new Error("clientId must be 1 to 128 printable ASCII characters");
    this.heartbeatInterval = positive("heartbeatInterval", options.heartbeatInterval ?? 30_000);
    this.heartbeatTimeout = positive("heartbeatTimeout", options.heartbeatTimeout ?? 10_000);
    this.connectionTimeout = positive("connectionTimeout", options.connectionTimeout ?? 10_000);
    this.requestTimeout = positive("requestTimeout", options.requestTimeout ?? 30_000);
    this.maxPending = positive("maxPending", options.maxPending ?? DEFAULT_MAX_PENDING);
    this.maxQueued = positive("maxQueued", options.maxQueued ?? DEFAULT_MAX_QUEUED);
    this.token = options.token;
    this.getToken = options.getToken;
    const backoff: BackoffConfig = {
      baseMs: options.reconnectInterval ?? 1000,
      maxMs: options.maxReconnectDelay ?? 30_000,
      maxAttempts: options.maxReconnectAttempts ?? null,
    };
    this.machine = new Machine(
      {
        urls: this.urls.length,
        autoReconnect: options.autoReconnect ?? true,
        canRenewToken: options.getToken !== undefined,
        backoff,
        circuit: options.circuit ?? DEFAULT_CIRCUIT,
      },
      options.random ?? Math.random,
    );
    this.snapshot = Object.freeze({
      state: this.machine.state,
      isConnected: false,
      error: null,
      reconnectAttempts: 0,
      lastTransition: null,
    });
  }

  // -------------------------------------------------------------------------
  // Lifecycle
  // -------------------------------------------------------------------------

  /** Connects (and keeps reconnecting). Does nothing after the first call. */
  start(): void {
    this.feed({ type: "start" });
  }

  /**
   * Closes the connection for good: no reconnect; unanswered requests are
   * rejected with `ClientClosedError`; listeners get nothing more.
   */
  close(): void {
    this.feed({ type: "stop" });
  }

  /** The connection state now. */
  get state(): State {
    return this.machine.state;
  }

  /**
   * The WebSocket URL (without query or fragment) of the current or last
   * connect attempt; the first URL before any. The HTTP API lives on the same
   * host (see `httpEndpointFor`).
   */
  get currentUrl(): string {
    const url = this.urls[this.urlIndex] ?? this.urls[0] ?? "";
    return url.split(/[?#]/, 1)[0] ?? url;
  }

  /** The token the next connect would send: the token provider's answer, else the fixed token, else null. */
  async accessToken(): Promise<string | null> {
    if (this.getToken !== undefined) return (await this.getToken()) ?? null;
    return this.token ?? null;
  }

  // -------------------------------------------------------------------------
  // Store (useSyncExternalStore-shaped)
  // -------------------------------------------------------------------------

  /** The current snapshot; the same object until something changes. */
  getSnapshot = (): ConnectionSnapshot => this.snapshot;

  /** Calls `listener` after every snapshot change; returns the unsubscribe function. */
  subscribeState = (listener: () => void): (() => void) => {
    this.stateListeners.add(listener);
    return () => {
      this.stateListeners.delete(listener);
    };
  };

  /** Every transition `{old, new, code, reason}` from now on; returns the unsubscribe function. */
  onTransition(listener: (t: Transition) => void): () => void {
    this.transitionListeners.add(listener);
    return () => {
      this.transitionListeners.delete(listener);
    };
  }

  // -------------------------------------------------------------------------
  // Requests
  // -------------------------------------------------------------------------

  /** Publishes `data` on `channel`; resolves with the ack's data once the event is durable. */
  async publish(channel: string, data: unknown): Promise<PublishAck> {
    if (!isValidChannel(channel)) throw new Error(`invalid channel name: ${JSON.stringify(channel)}`);
    const id = this.nextId("p");
    const reply = await this.enqueue(id, publishFrame(id, channel, data));
    return (reply.type === "ack" ? reply.data : null) as PublishAck;
  }

  /**
   * Sends command `type` and resolves with its `result` frame (which may carry
   * the agent's `error`); gateway failures such as `no_handler` reject with a
   * `GatewayError`.
   */
  async command(type: string, data?: unknown): Promise<ResultFrame> {
    const id = this.nextId("c");
    const text = commandFrame(id, type, data);
    const checked = parseMessage(JSON.parse(text));
    if (!checked.ok || checked.message.type !== "command") {
      throw new Error(`invalid command type: ${JSON.stringify(type)}`);
    }
    const reply = await this.enqueue(id, text);
    if (reply.type !== "result") throw new Error(`expected a result frame, got ${reply.type}`);
    return reply;
  }

  /** The agents' status. */
  async requestAgentStatus(): Promise<AgentStatusEntry[]> {
    const id = this.nextId("r");
    const reply = await this.enqueue(id, requestAgentStatusFrame(id));
    if (reply.type !== "agent_status") throw new Error(`expected agent_status, got ${reply.type}`);
    return reply.data;
  }

  /** The gateway's metrics snapshot. */
  async requestSystemMetrics(): Promise<SystemMetrics> {
    const id = this.nextId("r");
    const reply = await this.enqueue(id, requestSystemMetricsFrame(id));
    if (reply.type !== "system_metrics") throw new Error(`expected system_metrics, got ${reply.type}`);
    return reply.data;
  }

  /**
   * Any request that is answered by id (`ping`, `publish`, a command, …), as a
   * wire object; an `id` is added when missing. Resolves with the reply frame;
   * an `error` reply rejects with `GatewayError`. Invalid frames throw.
   */
  async request(frame: RequestFrame): Promise<ServerMessage> {
    const wire: Record<string, unknown> = { ...frame };
    if (wire["id"] === undefined) wire["id"] = this.nextId("r");
    const checked = parseMessage(wire);
    if (!checked.ok) throw new Error(`invalid request frame: ${checked.error.message}`);
    if (NO_REPLY_TYPES.has(frame.type)) throw new Error(`a ${frame.type} frame gets no reply by id`);
    const id = String(wire["id"]);
    if (this.pending.has(id)) throw new Error(`request ${id} is already pending`);
    return this.enqueue(id, JSON.stringify(wire));
  }

  private enqueue(id: string, text: string): Promise<ServerMessage> {
    if (this.machine.state.kind === "closed") return Promise.reject(new ClientClosedError("the client is closed"));
    // A cheap bound first: a UTF-16 unit is at most 3 UTF-8 bytes.
    if (text.length * 3 > this.maxMessageBytes) {
      const bytes = new TextEncoder().encode(text).length;
      if (bytes > this.maxMessageBytes) return Promise.reject(new MessageTooLargeError(id, bytes, this.maxMessageBytes));
    }
    if (this.pending.size >= this.maxPending) {
      return Promise.reject(
        new QueueFullError(`too many unanswered requests (maxPending = ${this.maxPending}); request ${id} not sent`),
      );
    }
    const connected = this.isOpen();
    if (!connected && this.unsent >= this.maxQueued) {
      return Promise.reject(
        new QueueFullError(
          `offline queue full (maxQueued = ${this.maxQueued} requests waiting for a connection); request ${id} not queued`,
        ),
      );
    }
    return new Promise<ServerMessage>((resolve, reject) => {
      const deadline = this.clock.now() + this.requestTimeout;
      const p: Pending = { id, text, deadline, sent: false, sentOn: null, firstSentAt: null, resolve, reject };
      this.pending.set(id, p);
      this.unsent += 1;
      if (connected) this.sendPending(p);
      this.schedule();
    });
  }

  // -------------------------------------------------------------------------
  // Subscriptions
  // -------------------------------------------------------------------------

  /**
   * Listens to `channel` across reconnects (resubscribing with `since` of the
   * last delivered event); never delivers a seq twice. With `since`, the first
   * item is `recovered`. A second listener on a channel already subscribed
   * joins at the live position (giving it `since` throws). Returns the
   * unsubscribe function; the last one unsubscribes on the gateway.
   */
  subscribe(
    channel: string,
    listener: SubscriptionListener,
    since?: { seq: number; epoch?: string | null },
  ): () => void {
    if (!isValidChannel(channel)) throw new Error(`invalid channel name: ${JSON.stringify(channel)}`);
    let sub = this.subs.get(channel);
    if (sub !== undefined) {
      if (since !== undefined) throw new Error(`already subscribed to ${channel}: since applies only to the first listener`);
    } else {
      sub = { listeners: new Set(), last: null, since, sentOn: null };
      this.subs.set(channel, sub);
      if (this.isOpen()) this.sendSubscribe(channel, sub);
    }
    const theSub = sub;
    // A wrapper so that the same function may be added twice and removed once each.
    const entry: SubscriptionListener = (item) => {
      listener(item);
    };
    theSub.listeners.add(entry);
    return () => {
      if (!theSub.listeners.delete(entry) || theSub.listeners.size > 0) return;
      if (this.subs.get(channel) !== theSub) return;
      this.subs.delete(channel);
      if (this.isOpen()) this.send(unsubscribeFrame(this.nextId("u"), channel));
    };
  }

  // -------------------------------------------------------------------------
  // The Machine
  // -------------------------------------------------------------------------

  private feed(event: MachineEvent): void {
    const actions = this.machine.handle(event, this.clock.now());
    this.perform(actions);
    if (this.machine.state.kind === "closed") this.finish();
    this.schedule();
  }

  private perform(actions: readonly Action[]): void {
    for (const action of actions) {
      switch (action.type) {
        case "connect":
          this.urlIndex = action.url;
          void this.open(action.url);
          break;
        case "disconnect":
          this.teardown(1000, "closed by the application");
          break;
        case "transition":
          this.publishTransition(action.transition);
          break;
      }
    }
  }

  private publishTransition(t: Transition): void {
    log(`${t.old.kind} -> ${t.new.kind}`, t.reason);
    if (t.old.kind === "connected" && t.new.kind !== "connected") this.metrics.disconnected();
    if (t.new.kind === "connecting") {
      if (this.connects > 0) this.reconnectAttempts += 1;
      this.connects += 1;
    } else if (t.new.kind === "connected") {
      this.reconnectAttempts = 0;
    }
    if (t.new.kind === "circuit-open" && t.old.kind !== "circuit-open") this.metrics.circuitOpened();
    let error = this.snapshot.error;
    if (t.new.kind === "connected" || t.new.kind === "idle") error = null;
    else if (t.new.kind === "closed" && t.reason === "stop") error = null;
    else if (t.new.kind !== "connecting") error = t.reason;
    this.snapshot = Object.freeze({
      state: t.new,
      isConnected: t.new.kind === "connected",
      error,
      reconnectAttempts: this.reconnectAttempts,
      lastTransition: t,
    });
    notifyAll(this.transitionListeners, t);
    notifyAll(this.stateListeners);
  }

  /** Closed for good: fail what waits, stop the timer. */
  private finish(): void {
    this.teardown(1000, "closed");
    const s = this.machine.state;
    const reason = s.kind === "closed" ? s.reason : "closed";
    const waiting = [...this.pending.values()];
    this.pending.clear();
    this.unsent = 0;
    this.subs.clear();
    for (const p of waiting) p.reject(new ClientClosedError(`the client is closed (${reason})`));
    if (this.timer !== null) this.clock.clearTimeout(this.timer.handle);
    this.timer = null;
  }

  // -------------------------------------------------------------------------
  // The socket
  // -------------------------------------------------------------------------

  private async open(url: number): Promise<void> {
    this.teardown(1000, "reconnecting");
    const generation = ++this.generation;
    const connectBy = this.clock.now() + this.connectionTimeout;
    // The connect deadline covers the token too: a placeholder socket-less wait.
    this.connectDeadline = { generation, at: connectBy };
    this.schedule();
    let token: string | null | undefined = this.token;
    if (this.getToken !== undefined) {
      try {
        token = await this.getToken();
      } catch (e) {
        if (generation === this.generation) this.connectFailed(`getToken failed: ${String(e)}`);
        return;
      }
    }
    if (generation !== this.generation || this.machine.state.kind !== "connecting") return;
    const base = this.urls[url] ?? this.urls[0] ?? "";
    let full = `${base}${base.includes("?") ? "&" : "?"}client_id=${encodeURIComponent(this.clientId)}`;
    if (token !== null && token !== undefined && token !== "") full += `&access_token=${encodeURIComponent(token)}`;
    let ws: WebSocketLike;
    this.metrics.connectAttempt();
    log(`connecting to ${base}`);
    try {
      ws = new this.WebSocketImpl(full);
    } catch (e) {
      this.connectFailed(`cannot open ${base}: ${String(e)}`);
      return;
    }
    const socket: Socket = {
      ws,
      welcome: null,
      connectBy,
      lastSent: this.clock.now(),
      lastReceived: this.clock.now(),
      ping: null,
      interval: this.heartbeatInterval,
      timeout: this.heartbeatTimeout,
    };
    this.socket = socket;
    this.connectDeadline = null;
    ws.onerror = noop; // a close event follows
    ws.onmessage = (ev: MessageEventLike) => {
      if (this.socket === socket) this.onMessage(socket, ev.data);
    };
    ws.onclose = (ev: CloseEventLike) => {
      const why = ev.reason === "" ? `closed with ${ev.code}` : `closed with ${ev.code}: ${ev.reason}`;
      this.drop(socket, ev.code, why);
    };
    this.schedule();
  }

  /** Set while awaiting `getToken`, before a socket exists. */
  private connectDeadline: { generation: number; at: number } | null = null;

  private connectFailed(reason: string): void {
    this.teardown(1000, "");
    this.feed({ type: "connect-failed", reason });
  }

  /** Drops the current socket (if any) without feeding the Machine. */
  private teardown(code: number, reason: string): void {
    this.generation += 1;
    this.connectDeadline = null;
    this.subIds.clear();
    const socket = this.socket;
    if (socket === null) return;
    this.socket = null;
    const ws = socket.ws;
    ws.onmessage = noop;
    ws.onclose = noop;
    ws.onopen = noop;
    ws.onerror = noop; // `ws` throws on an 'error' event without a listener
    // 0 CONNECTING, 1 OPEN
    if (ws.readyState === 0 || ws.readyState === 1) {
      try {
        ws.close(code, reason);
      } catch {
        // already closing
      }
    }
  }

  /** Whether a socket is open and welcomed. */
  private isOpen(): boolean {
    return this.socket !== null && this.socket.welcome !== null;
  }

  /** Drops the socket and tells the Machine, whichever phase it was in. */
  private drop(socket: Socket, code: number | null, reason: string): void {
    if (this.socket !== socket) return;
    this.teardown(1000, "");
    if (socket.welcome === null) this.feed({ type: "connect-failed", reason, code });
    else this.feed({ type: "lost", code, reason });
  }

  private send(text: string): boolean {
    const socket = this.socket;
    if (socket === null) return false;
    try {
      socket.ws.send(text);
    } catch (e) {
      this.drop(socket, null, `send failed: ${String(e)}`);
      return false;
    }
    socket.lastSent = this.clock.now();
    this.metrics.frameSent();
    return true;
  }

  private sendPending(p: Pending): void {
    const socket = this.socket;
    if (!this.send(p.text)) return;
    p.sentOn = socket;
    p.firstSentAt ??= this.clock.now();
    if (!p.sent) {
      p.sent = true;
      this.unsent -= 1;
    }
  }

  private sendSubscribe(channel: string, sub: Sub): void {
    const id = this.nextId("s");
    const since = sub.last ?? sub.since;
    this.subIds.set(id, channel);
    sub.sentOn = this.socket;
    this.send(subscribeFrame(id, channel, since));
  }

  /** After `welcome`: resubscribe with `since`, then resend what is unanswered (same ids, in order). */
  private resume(): void {
    const socket = this.socket;
    // Skip what a listener of the `connected` transition already sent on this socket.
    for (const [channel, sub] of [...this.subs]) {
      if (this.socket !== socket) return;
      if (sub.sentOn !== socket && this.subs.get(channel) === sub) this.sendSubscribe(channel, sub);
    }
    for (const p of [...this.pending.values()]) {
      if (this.socket !== socket) return;
      if (p.sentOn !== socket && this.pending.has(p.id)) this.sendPending(p);
    }
  }

  private onMessage(socket: Socket, data: unknown): void {
    if (typeof data !== "string") return; // the gateway sends text only
    this.metrics.frameReceived();
    socket.lastReceived = this.clock.now();
    const parsed = parseServerFrame(data);
    if (!parsed.ok) {
      log("dropped an unparsable frame", parsed.error);
      return;
    }
    const msg = parsed.message;
    if (socket.welcome === null) {
      if (msg.type !== "welcome") {
        this.drop(socket, null, `expected welcome, got ${msg.type}`);
        return;
      }
      socket.welcome = msg.data;
      if (msg.data.max_message_bytes > 0) this.maxMessageBytes = msg.data.max_message_bytes;
      const { heartbeat_interval_ms: hi, heartbeat_timeout_ms: ht } = msg.data;
      if (hi > 0) socket.interval = Math.min(socket.interval, hi);
      if (ht > 0) socket.timeout = Math.min(socket.timeout, ht);
      socket.lastSent = this.clock.now();
      this.metrics.welcomed();
      this.feed({ type: "opened", session: msg.data.session });
      if (this.socket === socket) this.resume();
      this.schedule();
      return;
    }
    switch (msg.type) {
      case "event":
        this.onEvent(msg);
        return;
      case "pong":
        if (socket.ping !== null && socket.ping.id === msg.id) {
          socket.ping = null;
          return;
        }
        break;
      case "ack":
      case "error":
        if (msg.id !== null && this.subIds.has(msg.id)) {
          this.onSubscribed(msg);
          return;
        }
        break;
      default:
        break;
    }
    if (!REPLY_TYPES.has(msg.type) || !("id" in msg) || msg.id === null) return;
    const p = this.pending.get(msg.id);
    if (p === undefined) return;
    this.pending.delete(msg.id);
    if (p.firstSentAt !== null) this.metrics.observeAck(this.clock.now() - p.firstSentAt);
    if (msg.type === "error") p.reject(new GatewayError(msg.error, msg.duplicate === true));
    else p.resolve(msg);
  }

  private onSubscribed(msg: Extract<ServerMessage, { type: "ack" | "error" }>): void {
    const id = msg.id ?? "";
    const channel = this.subIds.get(id);
    this.subIds.delete(id);
    if (channel === undefined) return;
    const sub = this.subs.get(channel);
    if (sub === undefined) return;
    if (msg.type === "error") {
      this.subs.delete(channel);
      deliver(sub, { kind: "error", error: new GatewayError(msg.error, msg.duplicate === true) });
      return;
    }
    const data = (typeof msg.data === "object" && msg.data !== null ? msg.data : {}) as {
      seq?: unknown;
      epoch?: unknown;
      recovered?: unknown;
    };
    const current = {
      seq: typeof data.seq === "number" ? data.seq : 0,
      epoch: typeof data.epoch === "string" ? data.epoch : "",
    };
    if (typeof data.recovered === "boolean") {
      if (!data.recovered) sub.last = current;
      deliver(sub, { kind: "recovered", ok: data.recovered });
    } else if (sub.last === null) {
      sub.last = current;
    }
  }

  private onEvent(event: Event): void {
    const sub = this.subs.get(event.channel);
    if (sub === undefined) return;
    const last = sub.last;
    if (last !== null && last.epoch === event.epoch && event.seq <= last.seq) return; // already delivered
    sub.last = { seq: event.seq, epoch: event.epoch };
    deliver(sub, { kind: "event", event });
  }

  // -------------------------------------------------------------------------
  // Time
  // -------------------------------------------------------------------------

  /** The earliest instant something must happen, or null. */
  private nextWake(): number | null {
    let at = this.machine.pollTimeout();
    const earlier = (t: number | null): void => {
      if (t !== null && (at === null || t < at)) at = t;
    };
    earlier(this.connectDeadline?.at ?? null);
    const s = this.socket;
    if (s !== null) {
      if (s.welcome === null) earlier(s.connectBy);
      else earlier(s.ping === null ? pingDue(s) : s.ping.due);
    }
    const oldest = this.pending.values().next();
    if (oldest.done !== true) earlier(oldest.value.deadline);
    return at;
  }

  /** (Re)arms the single timer if the next wake-up is earlier than the armed one. */
  private schedule(): void {
    if (this.machine.state.kind === "closed") return;
    const at = this.nextWake();
    if (at === null) return;
    if (this.timer !== null && this.timer.at <= at) return; // waking early is harmless
    if (this.timer !== null) this.clock.clearTimeout(this.timer.handle);
    const delay = Math.max(0, at - this.clock.now());
    const handle = this.clock.setTimeout(() => {
      this.timer = null;
      this.tick();
    }, delay);
    this.timer = { handle, at };
  }

  private tick(): void {
    const now = this.clock.now();
    this.expire(now);
    const due = this.machine.pollTimeout();
    if (due !== null && due <= now) this.feed({ type: "timeout" });
    if (this.connectDeadline !== null && this.connectDeadline.at <= now) {
      this.connectFailed("connection timed out (token)");
    }
    const s = this.socket;
    if (s !== null) {
      if (s.welcome === null) {
        if (s.connectBy <= now) this.drop(s, null, "connection timed out: no welcome");
      } else if (s.ping !== null) {
        if (s.ping.due <= now) {
          log("heartbeat timeout: no pong; replacing the connection");
          this.drop(s, null, "heartbeat timeout: no pong");
        }
      } else if (pingDue(s) <= now) {
        const id = this.nextId("hb");
        if (this.send(pingFrame(id)) && this.socket === s) s.ping = { id, due: this.clock.now() + s.timeout };
      }
    }
    this.schedule();
  }

  /** Rejects the requests whose deadline passed (the oldest come first). */
  private expire(now: number): void {
    for (const p of this.pending.values()) {
      if (p.deadline > now) break;
      this.pending.delete(p.id);
      if (!p.sent) this.unsent -= 1;
      p.reject(new RequestTimeoutError(p.id, this.requestTimeout));
    }
  }

  /** A fresh request id, unique across this client's instances. */
  private nextId(kind: string): string {
    this.counter += 1;
    return `${kind}-${this.prefix}-${this.counter}`;
  }
}

/**
 * When the next heartbeat ping is due: an interval after the last frame sent
 * or received, whichever is older. So an idle connection is pinged, and so is
 * a busy sender that hears nothing back (a half-open connection swallows its
 * frames without an error).
 */
function pingDue(s: Socket): number {
  return Math.min(s.lastSent, s.lastReceived) + s.interval;
}

function deliver(sub: Sub, item: SubscriptionItem): void {
  notifyAll(sub.listeners, item);
}

function positive(name: string, value: number): number {
  if (!(value > 0) || !Number.isFinite(value)) throw new Error(`${name} must be a positive number of ms`);
  return value;
}
