// `OfflineSync`: the framework-agnostic controller behind `useOfflineSync`. It
// owns an `OfflineQueue` (durable, IndexedDB) and an `OnlineSource`, sends
// with an offline fallback, replays the queue (through a WebSocket sender, or
// over HTTP to `POST /api/v1/messages` when no sender is set) and publishes a
// frozen snapshot for `useSyncExternalStore`.
//
// Semantics: every message gets its `id` before its first attempt and keeps it
// through queueing and every replay, so the gateway's `(principal, id)`
// deduplication makes resending safe. Replays run one at a time (a second
// request joins the running one), oldest message first; a message is removed
// only once the gateway answered it (`ack`, `duplicate` included, or `result`)
// or refused it for good (a final error, see `isFinalError`: a duplicate, a
// non-retryable code, or `no_handler` / `timeout` for a command, since the
// gateway answers every resend of that id with the same error); any other
// failure, or no answer within `attemptTimeoutMs` (default 35 s), stops the
// replay and keeps the rest in order.
//
// Order: while messages are queued or a replay runs, a new send is queued
// behind them (and a replay started) instead of being sent directly, so it
// never overtakes them. `isSyncing` is true exactly while a replay runs: a
// request made while it shows true joins that replay.
//
// Automatic replays: when the `OnlineSource` goes online, when
// `notifyConnected()` is called (the React layer does so when its WebSocket
// connects), once at start when online, and every `retryDelayMs` (default 30 s)
// while a replay left messages behind. After queueing, a Background Sync
// (`tether-offline-sync`) is registered when a Service Worker with the Sync API
// is available, so that the Service Worker can replay with the page closed.
//
// Bounds: the queue's (see offline-queue.ts: a full queue refuses new messages,
// nothing is dropped); the snapshot holds at most that many records; one
// replay and one retry timer at a time.
//
// Not here: React (see @tether/react), the WebSocket (the sender is a function
// given by the caller), the Service Worker's own replay.

import { createLogger } from "./debug.js";
import { copyWithId } from "./offline-frame.js";
import {
  DEFAULT_REPLAY_REQUEST_TIMEOUT_MS,
  InvalidOfflineMessageError,
  OFFLINE_DB_NAME,
  OfflineQueue,
  type OfflineFrame,
  type OfflineMessage,
  type OfflineQueueOptions,
  type RejectedMessage,
  type ReplayOverHttpOptions,
  type ReplayResult,
  isFinalError,
  prepareOfflineFrame,
  replayOverHttp,
} from "./offline-queue.js";
import { type OnlineSource, browserOnlineSource } from "./online.js";
import { errorText, notifyAll, readErrorReply } from "./util.js";

const log = createLogger("[OfflineSync]");

/** The Background Sync tag registered after queueing; the Service Worker replays on it. */
export const BACKGROUND_SYNC_TAG = "tether-offline-sync";
/** Default delay before retrying a replay that left messages behind. */
export const DEFAULT_SYNC_RETRY_MS = 30_000;

/**
 * Sends one frame and settles when the gateway answered it, e.g.
 * `(frame) => client.request(frame)`. Resolving means "answered" (an `ack` or a
 * `result`); rejecting with an Error named `GatewayError` that is final (see
 * `isFinalGatewayError`: `duplicate`, not `retryable`, or `no_handler` /
 * `timeout` for a command) means "refused for good"; any other rejection, or
 * no answer within `attemptTimeoutMs`, means "try again later".
 */
export type OfflineSender = (frame: OfflineFrame) => unknown;

/** What a UI renders; a new frozen object only when something changed. */
export interface OfflineSyncSnapshot {
  /** The `OnlineSource`'s view (the device has a network). */
  readonly isOnline: boolean;
  /** The queued messages, oldest first. */
  readonly offlineQueue: readonly OfflineMessage[];
  /** A replay is running. */
  readonly isSyncing: boolean;
  /** When the last replay finished without being stopped by a failure (ms since the epoch). */
  readonly lastSyncTime: number | null;
  /** The last replay's failure or rejection, or a queue failure; null after a clean replay. */
  readonly lastError: string | null;
}

/** What one replay did (the same shape as `replayOverHttp`'s result). */
export type SyncResult = ReplayResult;

/** Where a send with offline fallback ended up. */
export interface SendOutcome {
  /** `sent`: the gateway answered; `queued`: kept in the offline queue for a later replay. */
  readonly status: "sent" | "queued";
  /** The message id (given, or assigned before the first attempt). */
  readonly id: string;
}

/** The HTTP replay's target, used when no sender is set. */
export interface HttpReplayConfig {
  /** Full URL of `POST /api/v1/messages` (see `httpEndpointFor`). */
  readonly endpoint: string;
  /** Sent as `Authorization: Bearer`. */
  readonly token?: string | (() => Promise<string | null | undefined>);
}

/** The part of `navigator.serviceWorker` used to register a Background Sync. */
export interface ServiceWorkerContainerLike {
  getRegistration(): Promise<unknown>;
}

/** Options of `OfflineSync` (and of `getOfflineSync`). */
export interface OfflineSyncOptions extends OfflineQueueOptions {
  /** Use this queue instead of opening one (`close()` then leaves it open). */
  queue?: OfflineQueue;
  /** Default `browserOnlineSource()`. */
  online?: OnlineSource;
  /** The initial default sender (see `setSender`). */
  sender?: OfflineSender;
  /** Replay over HTTP to this URL when no sender is set. */
  httpEndpoint?: string;
  /** Token of the HTTP replay. */
  token?: string | (() => Promise<string | null | undefined>);
  /** The HTTP replay's fetch (default `globalThis.fetch`). */
  fetch?: typeof fetch;
  /** Messages per HTTP request (default 50). */
  batchSize?: number;
  /** Retry a replay that left messages behind after this many ms (default 30000; 0 disables). */
  retryDelayMs?: number;
  /**
   * Longest wait in ms for one replay attempt (one send through the sender,
   * one HTTP request) before it counts as a transient failure: the replay
   * stops and keeps the message (default 35000, a little over the client's
   * `requestTimeout`).
   */
  attemptTimeoutMs?: number;
  /** Default `navigator.serviceWorker` when present; null disables Background Sync registration. */
  serviceWorker?: ServiceWorkerContainerLike | null;
}

const EMPTY: readonly OfflineMessage[] = Object.freeze([]);

/**
 * The send failure `e` of a message that cannot be queued, to rethrow: the
 * same Error (so `instanceof` and `name` checks still work) with the queue's
 * refusal as its `cause` when it has none; a thrown non-Error is wrapped in an
 * Error naming both.
 */
function withQueueRefusal(e: unknown, refusal: InvalidOfflineMessageError): unknown {
  if (e instanceof Error) {
    if (e.cause === undefined) {
      try {
        Object.defineProperty(e, "cause", { value: refusal, configurable: true, writable: true, enumerable: false });
      } catch {
        // a frozen error: rethrown as it is
      }
    }
    return e;
  }
  return new Error(`sending failed: ${String(e)}; not queued: ${refusal.message}`, { cause: e });
}

/**
 * Whether `e` is the gateway's refusal marked not retryable: an Error named
 * `GatewayError` (from @tether/client's connection) with `retryable` false.
 * Matched by shape, not class, so any copy of the SDK (or a look-alike) is
 * recognised. See `isFinalGatewayError` for the wider "resending can never
 * succeed" test the offline replay uses.
 */
export function isGatewayRejection(e: unknown): e is Error & { readonly code?: string; readonly retryable: false } {
  return e instanceof Error && e.name === "GatewayError" && (e as { retryable?: unknown }).retryable === false;
}

/**
 * Whether `e`, the rejection of a send of a message of type `frameType`, is
 * final: an Error named `GatewayError` (matched by shape, like
 * `isGatewayRejection`) that `isFinalError` calls final, i.e. `duplicate`
 * (the stored outcome of an id already seen), not `retryable`, or, for a
 * command (any type but `publish`), `no_handler` / `timeout`. Resending the
 * same id can never succeed.
 */
export function isFinalGatewayError(e: unknown, frameType: string): e is Error {
  if (!(e instanceof Error) || e.name !== "GatewayError") return false;
  const g = e as { code?: unknown; retryable?: unknown; duplicate?: unknown };
  return isFinalError(frameType, {
    code: typeof g.code === "string" ? g.code : "unknown",
    retryable: typeof g.retryable === "boolean" ? g.retryable : undefined,
    duplicate: g.duplicate === true,
  });
}

type Attempt = { kind: "done" } | { kind: "rejected"; error: string } | { kind: "failed"; error: string };

/** Interprets what a sender resolved with: an `error` frame counts as a refusal or a failure. */
function resolvedOutcome(reply: unknown, frameType: string): Attempt {
  if (typeof reply !== "object" || reply === null) return { kind: "done" };
  const r = reply as { type?: unknown; error?: unknown; duplicate?: unknown };
  if (r.type !== "error") return { kind: "done" };
  const error = readErrorReply(r);
  return isFinalError(frameType, error) ? { kind: "rejected", error: error.text } : { kind: "failed", error: error.text };
}

/** A stack of registrations: the latest one still registered is current. */
class Registrations<T> {
  private entries: { value: T }[] = [];

  get current(): T | null {
    return this.entries[this.entries.length - 1]?.value ?? null;
  }

  push(value: T): () => void {
    const entry = { value };
    this.entries.push(entry);
    return () => {
      this.entries = this.entries.filter((e) => e !== entry);
    };
  }

  clear(): void {
    this.entries = [];
  }
}

function sameRecords(a: readonly OfflineMessage[], b: readonly OfflineMessage[]): boolean {
  if (a.length !== b.length) return false;
  return a.every((m, i) => {
    const o = b[i];
    return (
      o !== undefined &&
      o.id === m.id &&
      o.attempts === m.attempts &&
      o.lastError === m.lastError &&
      o.queuedAt === m.queuedAt
    );
  });
}

/**
 * The offline-sync controller: a store (`subscribe` / `getSnapshot`) plus the
 * guide's actions. One per database is enough for a page: use `getOfflineSync`.
 */
export class OfflineSync {
  private readonly online: OnlineSource;
  private readonly queueReady: Promise<OfflineQueue>;
  private readonly ownsQueue: boolean;
  private queue: OfflineQueue | null = null;
  private readonly senders = new Registrations<OfflineSender>();
  private readonly https = new Registrations<HttpReplayConfig>();
  private readonly fetchImpl: typeof fetch | undefined;
  private readonly batchSize: number | undefined;
  private readonly retryDelayMs: number;
  private readonly attemptTimeoutMs: number;
  private readonly serviceWorker: ServiceWorkerContainerLike | null;
  /** The database name (the key of `getOfflineSync`). */
  readonly dbName: string;

  private snapshot: OfflineSyncSnapshot;
  private readonly listeners = new Set<() => void>();
  private running: Promise<SyncResult> | null = null;
  /** Sends whose message is on its way into the queue (a new send waits behind them). */
  private adding = 0;
  private loading: Promise<void> | null = null;
  private dirty = false;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private closed = false;
  private readonly unsubscribers: (() => void)[] = [];

  constructor(options: OfflineSyncOptions = {}) {
    this.dbName = options.queue?.dbName ?? options.dbName ?? OFFLINE_DB_NAME;
    this.online = options.online ?? browserOnlineSource();
    this.fetchImpl = options.fetch;
    this.batchSize = options.batchSize;
    const retry = options.retryDelayMs ?? DEFAULT_SYNC_RETRY_MS;
    if (!(retry >= 0) || !Number.isFinite(retry)) throw new RangeError("retryDelayMs must be 0 or a positive number of ms");
    this.retryDelayMs = retry;
    const attemptTimeout = options.attemptTimeoutMs ?? DEFAULT_REPLAY_REQUEST_TIMEOUT_MS;
    if (!(attemptTimeout > 0) || !Number.isFinite(attemptTimeout)) {
      throw new RangeError("attemptTimeoutMs must be a positive number of ms");
    }
    this.attemptTimeoutMs = attemptTimeout;
    this.serviceWorker = options.serviceWorker === undefined ? defaultServiceWorker() : options.serviceWorker;
    if (options.sender !== undefined) this.senders.push(options.sender);
    if (options.httpEndpoint !== undefined) {
      this.https.push(
        options.token === undefined
          ? { endpoint: options.httpEndpoint }
          : { endpoint: options.httpEndpoint, token: options.token },
      );
    }
    this.snapshot = Object.freeze({
      isOnline: this.online.isOnline(),
      offlineQueue: EMPTY,
      isSyncing: false,
      lastSyncTime: null,
      lastError: null,
    });
    this.unsubscribers.push(
      this.online.subscribe((on) => {
        this.onOnline(on);
      }),
    );

    this.ownsQueue = options.queue === undefined;
    if (options.queue !== undefined) {
      this.queueReady = Promise.resolve(options.queue);
    } else {
      const q: OfflineQueueOptions = {};
      if (options.dbName !== undefined) q.dbName = options.dbName;
      if (options.maxMessages !== undefined) q.maxMessages = options.maxMessages;
      if (options.maxBytes !== undefined) q.maxBytes = options.maxBytes;
      if (options.maxMessageBytes !== undefined) q.maxMessageBytes = options.maxMessageBytes;
      if (options.ttlMs !== undefined) q.ttlMs = options.ttlMs;
      if (options.indexedDB !== undefined) q.indexedDB = options.indexedDB;
      this.queueReady = OfflineQueue.open(q);
    }
    this.queueReady.then(
      (queue) => {
        if (this.closed) {
          if (this.ownsQueue) queue.close();
          return;
        }
        this.queue = queue;
        this.unsubscribers.push(
          queue.subscribe(() => {
            void this.refresh();
          }),
        );
        void this.refresh().then(() => {
          this.autoSync("start");
        });
      },
      (e: unknown) => {
        log("the offline queue cannot be opened", e);
        this.update({ lastError: `offline queue unavailable: ${errorText(e)}` });
      },
    );
  }

  // -------------------------------------------------------------------------
  // Store
  // -------------------------------------------------------------------------

  /** The current snapshot; the same object until something changes. */
  getSnapshot = (): OfflineSyncSnapshot => this.snapshot;

  /** Calls `listener` after every snapshot change; returns the unsubscribe function. */
  subscribe = (listener: () => void): (() => void) => {
    const entry = (): void => {
      listener();
    };
    this.listeners.add(entry);
    return () => {
      this.listeners.delete(entry);
    };
  };

  /** Resolves once the queue is open and its contents are in the snapshot (rejects if it cannot open). */
  async ready(): Promise<void> {
    await this.queueReady;
    await this.refresh();
  }

  /** The underlying queue, once open. */
  getQueue(): Promise<OfflineQueue> {
    return this.queueReady;
  }

  // -------------------------------------------------------------------------
  // Configuration
  // -------------------------------------------------------------------------

  /**
   * Sets the default sender used by replays (manual and automatic) and by
   * `sendMessageWithOfflineFallback` without a `sendFn`. Returns a function
   * that withdraws exactly this registration (the previous sender, if still
   * registered, is current again). `null` withdraws every sender.
   */
  setSender(sendFn: OfflineSender | null): () => void {
    if (sendFn === null) {
      this.senders.clear();
      return () => undefined;
    }
    return this.senders.push(sendFn);
  }

  /** The HTTP replay used when no sender is set; returns the withdrawing function like `setSender`. */
  setHttpReplay(config: HttpReplayConfig | null): () => void {
    if (config === null) {
      this.https.clear();
      return () => undefined;
    }
    return this.https.push(config);
  }

  /** Tells the controller that its WebSocket (re)connected: replays the queue if it is not empty. */
  notifyConnected(): void {
    this.autoSync("connected");
  }

  // -------------------------------------------------------------------------
  // Actions
  // -------------------------------------------------------------------------

  /**
   * Queues `message` (a `publish` or a command; an `id` is added when missing)
   * and resolves with its record; it is sent by the next replay. Rejects with
   * `InvalidOfflineMessageError` or `OfflineQueueFullError` (nothing stored).
   */
  async cacheOfflineMessage(message: object): Promise<OfflineMessage> {
    return this.enqueue(prepareOfflineFrame(message));
  }

  /**
   * Sends `message` now, or keeps it for later. The message gets its `id`
   * first (when it has none) and keeps it.
   *
   * - Offline (per the `OnlineSource`), or with no sender: queued at once,
   *   `sendFn` is not called (a WebSocket may hang while offline).
   * - Online while older messages are queued (or on their way into the
   *   queue) or a replay runs: queued behind them with the same id, and a
   *   replay is started (through `sendFn`), so that it never overtakes them.
   *   The outcome is then the replay's: a final refusal shows in its
   *   `rejected` and in `lastError` instead of being thrown here.
   * - Otherwise `sendFn(frame)` is awaited. When it rejects with a final
   *   gateway error (see `isFinalGatewayError`: a duplicate, a non-retryable
   *   code, `no_handler` / `timeout` for a command) that error is rethrown
   *   and nothing is queued (resending the id could never succeed); on any
   *   other failure (timeout, closed, full, network, retryable error) the
   *   message is queued with the failure recorded.
   *
   * Only `publish` and commands can be queued: any other message (a
   * `subscribe`, a `ping`) is sent directly, and when that send fails its
   * error is rethrown as it is, with the reason it could not be queued as its
   * `cause` (offline, such a message rejects with `InvalidOfflineMessageError`).
   * Rejects when the message is invalid or cannot be queued
   * (`OfflineQueueFullError`): a message is never dropped silently. Without
   * `sendFn`, the default sender is used.
   */
  async sendMessageWithOfflineFallback(message: object, sendFn?: OfflineSender): Promise<SendOutcome> {
    const frame = copyWithId(message, "a message").copy as OfflineFrame;
    const send = typeof sendFn === "function" ? sendFn : this.senders.current;
    if (!this.online.isOnline() || send === null) {
      log(send === null ? "no sender: queued" : "offline: queued", frame.id);
      await this.enqueue(prepareOfflineFrame(frame));
      return { status: "queued", id: frame.id };
    }
    const unqueueable = this.whyNotQueueable(frame);
    if (unqueueable === null && (await this.mustQueueBehind())) {
      log("older messages are queued or being replayed: queued behind them", frame.id);
      this.adding += 1;
      try {
        await this.enqueue(prepareOfflineFrame(frame));
      } finally {
        this.adding -= 1;
      }
      this.replaySoon(send);
      return { status: "queued", id: frame.id };
    }
    try {
      await send(frame);
      return { status: "sent", id: frame.id };
    } catch (e) {
      if (isFinalGatewayError(e, frame.type)) throw e;
      if (unqueueable !== null) throw withQueueRefusal(e, unqueueable);
      log("sending failed: queued", frame.id, e);
      this.adding += 1;
      try {
        await this.enqueue(prepareOfflineFrame(frame), e);
      } catch (refusal) {
        if (refusal instanceof InvalidOfflineMessageError) throw withQueueRefusal(e, refusal);
        throw refusal;
      } finally {
        this.adding -= 1;
      }
      return { status: "queued", id: frame.id };
    }
  }

  /**
   * Replays the queue now, oldest first: through `sendFn` (or the default
   * sender), one message at a time, else over HTTP when an endpoint is set.
   * Only one replay runs at a time: a call during a replay joins it (its
   * `sendFn` is then not used). Never rejects: failures are in the result and
   * in the snapshot's `lastError`. Offline, nothing is sent.
   */
  syncOfflineMessages(sendFn?: OfflineSender): Promise<SyncResult> {
    if (this.running !== null) return this.running;
    const explicit = typeof sendFn === "function" ? sendFn : null;
    this.running = this.runSync(explicit);
    return this.running;
  }

  /** Empties the queue. */
  async clearOfflineQueue(): Promise<void> {
    try {
      const queue = await this.queueReady;
      await queue.clear();
      await this.refresh();
    } catch (e) {
      this.update({ lastError: `clearing the queue failed: ${errorText(e)}` });
      throw e;
    }
  }

  /**
   * Stops everything: listeners, the retry timer, the queue (when this
   * controller opened it). A shared instance is forgotten by `getOfflineSync`.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (shared.get(this.dbName) === this) shared.delete(this.dbName);
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    for (const off of this.unsubscribers.splice(0)) off();
    this.listeners.clear();
    if (this.ownsQueue && this.queue !== null) this.queue.close();
  }

  /** Whether `close()` was called. */
  get isClosed(): boolean {
    return this.closed;
  }

  // -------------------------------------------------------------------------
  // Internals
  // -------------------------------------------------------------------------

  /** Why `frame` cannot go into the queue (it is no `publish` or command, or too large), or null. */
  private whyNotQueueable(frame: OfflineFrame): InvalidOfflineMessageError | null {
    try {
      prepareOfflineFrame(frame, this.queue?.limits.maxMessageBytes);
      return null;
    } catch (e) {
      if (e instanceof InvalidOfflineMessageError) return e;
      throw e;
    }
  }

  /** Whether a new send must go behind older messages: a replay runs, or messages are queued or being queued. */
  private async mustQueueBehind(): Promise<boolean> {
    if (this.running !== null || this.adding > 0) return true;
    let queue: OfflineQueue;
    try {
      queue = await this.queueReady;
    } catch {
      return false; // no durable queue: nothing can be waiting in it
    }
    try {
      return this.running !== null || this.adding > 0 || (await queue.size()) > 0;
    } catch (e) {
      log("cannot read the queue size", e);
      return false;
    }
  }

  /**
   * Replays through `send` now; during a replay, once it is over and only
   * when it ended cleanly with messages left (an HTTP replay does not pick
   * up messages queued while it ran). After a failed replay the retry timer
   * takes over.
   */
  private replaySoon(send: OfflineSender): void {
    const running = this.running;
    if (running === null) {
      void this.syncOfflineMessages(send);
      return;
    }
    void running.then(async (r) => {
      if (r.error !== undefined || this.closed || !this.online.isOnline()) return;
      try {
        const queue = await this.queueReady;
        if ((await queue.size()) > 0) void this.syncOfflineMessages(send);
      } catch (e) {
        log("cannot read the queue size", e);
      }
    });
  }

  private async enqueue(frame: OfflineFrame, failure?: unknown): Promise<OfflineMessage> {
    const queue = await this.queueReady;
    let record = await queue.add(frame);
    if (failure !== undefined && (await queue.markFailed(record.id, failure))) {
      record = { ...record, attempts: record.attempts + 1, lastError: errorText(failure).slice(0, 500) };
    }
    await this.refresh();
    void this.requestBackgroundSync();
    if (this.online.isOnline()) this.scheduleRetry();
    return record;
  }

  private async runSync(explicit: OfflineSender | null): Promise<SyncResult> {
    this.update({ isSyncing: true });
    try {
      const queue = await this.queueReady;
      if (!this.online.isOnline()) {
        log("offline: nothing replayed");
        return { sent: 0, rejected: [], remaining: await queue.size(), error: "offline: nothing was sent" };
      }
      const sender = explicit ?? this.senders.current;
      const http = this.https.current;
      let result: SyncResult;
      if (sender !== null) {
        result = await this.replayWith(queue, sender);
      } else if (http !== null) {
        const opts: ReplayOverHttpOptions = { endpoint: http.endpoint };
        if (http.token !== undefined) opts.token = http.token;
        if (this.fetchImpl !== undefined) opts.fetch = this.fetchImpl;
        if (this.batchSize !== undefined) opts.batchSize = this.batchSize;
        opts.timeoutMs = this.attemptTimeoutMs;
        result = await replayOverHttp(queue, opts);
      } else {
        const remaining = await queue.size();
        const error = "no sender (WebSocket) and no httpEndpoint: nothing was sent";
        if (remaining > 0) this.update({ lastError: error });
        return { sent: 0, rejected: [], remaining, error };
      }
      const lastRejection = result.rejected[result.rejected.length - 1];
      const lastError =
        result.error ?? (lastRejection === undefined ? null : `${lastRejection.id} rejected: ${lastRejection.error}`);
      if (result.error === undefined) this.update({ lastError, lastSyncTime: Date.now() });
      else this.update({ lastError });
      if (result.remaining > 0) this.scheduleRetry();
      log("replay done", result);
      return result;
    } catch (e) {
      const error = `replay failed: ${errorText(e)}`;
      log(error);
      this.update({ lastError: error });
      return { sent: 0, rejected: [], remaining: this.snapshot.offlineQueue.length, error };
    } finally {
      await this.refresh();
      // Together, with no await in between: a request from now on starts a
      // new replay (which sets isSyncing again), one before joined this one.
      this.running = null;
      this.update({ isSyncing: false });
    }
  }

  /** One at a time, oldest first, including messages queued during the replay. */
  private async replayWith(queue: OfflineQueue, sender: OfflineSender): Promise<SyncResult> {
    const attempted = new Set<string>();
    let sent = 0;
    const rejected: RejectedMessage[] = [];
    let error: string | undefined;
    outer: for (;;) {
      const todo = (await queue.list()).filter((m) => !attempted.has(m.id));
      if (todo.length === 0) break;
      for (const m of todo) {
        if (this.closed) {
          error = "closed during the replay";
          break outer;
        }
        if (!this.online.isOnline()) {
          error = "went offline during the replay";
          break outer;
        }
        attempted.add(m.id);
        const outcome = await attempt(sender, m.frame, this.attemptTimeoutMs);
        if (outcome.kind === "done") {
          await queue.remove(m.id);
          sent += 1;
        } else if (outcome.kind === "rejected") {
          await queue.remove(m.id);
          rejected.push({ id: m.id, error: outcome.error });
          log("rejected by the gateway, removed", m.id, outcome.error);
        } else {
          await queue.markFailed(m.id, outcome.error);
          error = `${m.id}: ${outcome.error}`;
          log("replay stopped", error);
          break outer;
        }
      }
    }
    const result: SyncResult = { sent, rejected, remaining: await queue.size() };
    if (error !== undefined) result.error = error;
    return result;
  }

  /** Starts a replay when it can do something: open, online, something to send with, something queued. */
  private autoSync(reason: string): void {
    if (this.closed || !this.online.isOnline()) return;
    if (this.senders.current === null && this.https.current === null) return;
    const queue = this.queue;
    if (queue === null) return;
    void queue.size().then(
      (n) => {
        if (n === 0 || this.closed) return;
        log("automatic replay", reason, n);
        void this.syncOfflineMessages();
      },
      (e: unknown) => {
        log("cannot read the queue size", e);
      },
    );
  }

  private onOnline(on: boolean): void {
    log(on ? "online" : "offline");
    this.update({ isOnline: on });
    if (on) this.autoSync("online");
    else if (this.retryTimer !== null) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
  }

  private scheduleRetry(): void {
    if (this.closed || this.retryDelayMs === 0 || this.retryTimer !== null) return;
    const timer = setTimeout(() => {
      this.retryTimer = null;
      this.autoSync("retry");
    }, this.retryDelayMs);
    (timer as { unref?: () => void }).unref?.();
    this.retryTimer = timer;
  }

  private async requestBackgroundSync(): Promise<void> {
    const container = this.serviceWorker;
    if (container === null) return;
    try {
      const registration = (await container.getRegistration()) as
        | { sync?: { register?: (tag: string) => Promise<void> } }
        | undefined
        | null;
      const sync = registration?.sync;
      if (sync === undefined || typeof sync.register !== "function") {
        log("no Service Worker with Background Sync; the page replays by itself");
        return;
      }
      await sync.register(BACKGROUND_SYNC_TAG);
      log("Background Sync registered", BACKGROUND_SYNC_TAG);
    } catch (e) {
      log("Background Sync registration failed", e);
    }
  }

  /** Reloads the queue into the snapshot; calls during a reload cause one more reload. */
  private refresh(): Promise<void> {
    if (this.closed || this.queue === null) return Promise.resolve();
    this.dirty = true;
    this.loading ??= this.load();
    return this.loading;
  }

  private async load(): Promise<void> {
    try {
      while (this.dirty && !this.closed && this.queue !== null) {
        this.dirty = false;
        try {
          const list = await this.queue.list();
          if (!sameRecords(list, this.snapshot.offlineQueue)) {
            this.update({ offlineQueue: Object.freeze(list.map((m) => Object.freeze(m))) });
          }
        } catch (e) {
          log("cannot read the queue", e);
        }
      }
    } finally {
      this.loading = null;
    }
  }

  private update(patch: Partial<OfflineSyncSnapshot>): void {
    if (this.closed) return;
    const s = this.snapshot;
    const next: OfflineSyncSnapshot = { ...s, ...patch };
    if (
      next.isOnline === s.isOnline &&
      next.offlineQueue === s.offlineQueue &&
      next.isSyncing === s.isSyncing &&
      next.lastSyncTime === s.lastSyncTime &&
      next.lastError === s.lastError
    ) {
      return;
    }
    this.snapshot = Object.freeze(next);
    notifyAll(this.listeners);
  }
}

/** One send of a replay; no answer within `timeoutMs` is a transient failure (the late answer is ignored). */
async function attempt(sender: OfflineSender, frame: OfflineFrame, timeoutMs: number): Promise<Attempt> {
  const sending = (async (): Promise<Attempt> => {
    try {
      return resolvedOutcome(await sender(frame), frame.type);
    } catch (e) {
      if (isFinalGatewayError(e, frame.type)) return { kind: "rejected", error: e.message };
      return { kind: "failed", error: errorText(e) };
    }
  })();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<Attempt>((resolve) => {
    timer = setTimeout(() => {
      resolve({ kind: "failed", error: `no answer within ${timeoutMs} ms` });
    }, timeoutMs);
  });
  try {
    return await Promise.race([sending, expired]);
  } finally {
    clearTimeout(timer);
  }
}

function defaultServiceWorker(): ServiceWorkerContainerLike | null {
  const sw = (globalThis as { navigator?: { serviceWorker?: { getRegistration?: unknown } } }).navigator?.serviceWorker;
  if (sw === undefined || typeof sw.getRegistration !== "function") return null;
  const container = sw as ServiceWorkerContainerLike;
  return { getRegistration: () => container.getRegistration() };
}

const shared = new Map<string, OfflineSync>();

/**
 * The page's shared controller for `options.dbName` (default
 * `tether-offline`), created on first use with these options; later calls
 * with the same name return it and ignore their options (use `setSender` /
 * `setHttpReplay` to change where it sends). A closed one is replaced.
 */
export function getOfflineSync(options: OfflineSyncOptions = {}): OfflineSync {
  const name = options.queue?.dbName ?? options.dbName ?? OFFLINE_DB_NAME;
  const existing = shared.get(name);
  if (existing !== undefined && !existing.isClosed) return existing;
  const created = new OfflineSync(options);
  shared.set(name, created);
  return created;
}
