// The durable offline queue of the browser SDK: client messages (publishes and
// commands) kept in IndexedDB (through `idb`) until they reach the gateway, so
// that they survive a page reload, a closed tab and a browser restart; plus
// `replayOverHttp`, which sends them to `POST /api/v1/messages` (the route a
// Service Worker uses in background sync): an answer or a final error (see
// `isFinalError`) removes a message, a transient error stops the replay there
// so that nothing newer overtakes it.
//
// Every message keeps its ORIGINAL `id` from its first send attempt through
// queueing and replay. The gateway deduplicates by `(principal, id)` within its
// dedup window (default 24 h), so replaying a message whose first send was
// accepted but whose reply was lost takes effect once, provided the replay uses
// the same principal (the same token `sub`, or with auth off the same
// `client_id`) and happens within that window.
//
// STORAGE SCHEMA (fixed: the Service Worker reads the same database, keep it in
// step with packages/service-worker): database `tether-offline` (option
// `dbName`), version 1, one object store `messages` with keyPath `id` and an
// index `queuedAt` on the field `queuedAt`. A record is an `OfflineMessage`
// (`{id, frame, queuedAt, attempts, lastError?}`); `frame` is the wire message
// and always carries the same `id`.
//
// BOUND POLICY: at most `maxMessages` messages (default 1000) and `maxBytes` of
// frame JSON (default 5 MiB, UTF-8) are held. When a new message would exceed
// either, `add` rejects with `OfflineQueueFullError` and stores nothing; queued
// messages are never dropped to make room (they are a user's unsent work). A
// single frame over `maxMessageBytes` (default 64 KiB, the gateway's default
// `max_message_bytes`) is refused as invalid: the gateway would refuse it too.
// `lastError` strings are cut to 500 characters. `list()` and the byte check
// read the whole queue, so these bounds also bound the memory and time of one
// call.
//
// Change notification: `subscribe` listeners hear about every change made by
// this instance and, through a `BroadcastChannel` named after the database
// (when the environment has one), about changes made by other instances in
// other tabs, workers and the Service Worker (which should post on the same
// channel after it changes the store).
//
// EXPIRY: a message queued longer than `ttlMs` ago (default 24 h, the
// gateway's default dedup window) is dropped by `list()` (so never replayed),
// with a debug line: past the window the gateway no longer remembers its id,
// and replaying a message whose first send did arrive would take effect twice.
// The Rust SDK's offline queue does the same. Raise `ttlMs` only together with
// the gateway's `--dedup-window`.
//
// Not here: deciding when to send (see offline-sync.ts), the WebSocket, the
// Service Worker itself.

import { type DBSchema, type IDBPDatabase, wrap } from "idb";
import { createLogger } from "./debug.js";
import { InvalidOfflineMessageError, copyWithId } from "./offline-frame.js";
import { MAX_HTTP_MESSAGES, isValidPrincipal, messageType, parseFrame, retryable } from "./protocol.js";
import { errorText, notifyAll, readErrorReply } from "./util.js";

export { InvalidOfflineMessageError, newMessageId } from "./offline-frame.js";

const log = createLogger("[OfflineSync]");

// ---------------------------------------------------------------------------
// Schema and bounds
// ---------------------------------------------------------------------------

/** Default database name (shared with the Service Worker). */
export const OFFLINE_DB_NAME = "tether-offline";
/** Schema version of the database. */
export const OFFLINE_DB_VERSION = 1;
/** The object store holding the messages (keyPath `id`). */
export const OFFLINE_STORE = "messages";
/** The index on `queuedAt` (oldest first). */
export const OFFLINE_QUEUED_AT_INDEX = "queuedAt";
/** Default most messages held. */
export const DEFAULT_OFFLINE_MAX_MESSAGES = 1000;
/** Default most bytes of frame JSON (UTF-8) held: 5 MiB. */
export const DEFAULT_OFFLINE_MAX_BYTES = 5 * 1024 * 1024;
/** Default largest single frame: the gateway's default `max_message_bytes` (64 KiB). */
export const DEFAULT_OFFLINE_MAX_MESSAGE_BYTES = 64 * 1024;
/** Default age after which a queued message is dropped: 24 h, the gateway's default dedup window. */
export const DEFAULT_OFFLINE_TTL_MS = 24 * 60 * 60 * 1000;
/** Default messages per `POST /api/v1/messages` in `replayOverHttp`. */
export const DEFAULT_REPLAY_BATCH_SIZE = 50;
/**
 * Default longest wait for one replay attempt (one `POST` of `replayOverHttp`,
 * one send of `OfflineSync`'s WebSocket replay): a little over the client's
 * default `requestTimeout` (30 s), so that a sender that times out by itself
 * does so first.
 */
export const DEFAULT_REPLAY_REQUEST_TIMEOUT_MS = 35_000;
/** Longest `lastError` kept on a record. */
const MAX_ERROR_CHARS = 500;

/** A queued wire message: a `publish` or a command, always with its `id`. */
export type OfflineFrame = { readonly type: string; readonly id: string } & Readonly<Record<string, unknown>>;

/** One record of the `messages` store. */
export interface OfflineMessage {
  /** The message id; equal to `frame.id`. */
  readonly id: string;
  /** The wire message, exactly as it is sent. */
  readonly frame: OfflineFrame;
  /** When it was queued (`Date.now()`, raised by 1 ms when needed so that the index order is the queueing order). */
  readonly queuedAt: number;
  /** Failed replay attempts so far. */
  readonly attempts: number;
  /** Why the last attempt failed. */
  readonly lastError?: string;
}

interface QueueSchema extends DBSchema {
  messages: {
    key: string;
    value: OfflineMessage;
    indexes: { queuedAt: number };
  };
}

type Db = IDBPDatabase<QueueSchema>;

/** Options of `OfflineQueue.open`. */
export interface OfflineQueueOptions {
  /** Database name (default `tether-offline`); also the BroadcastChannel's name. */
  dbName?: string;
  /** Most messages held (default 1000). See the bound policy: a full queue refuses new messages. */
  maxMessages?: number;
  /** Most bytes of frame JSON held (default 5 MiB). A full queue refuses new messages. */
  maxBytes?: number;
  /** Largest single frame in bytes (default 64 KiB); a larger one is refused as invalid. */
  maxMessageBytes?: number;
  /** Age in ms after which a queued message is dropped unsent (default 24 h, the gateway's dedup window). */
  ttlMs?: number;
  /**
   * The IndexedDB factory (default `globalThis.indexedDB`), e.g. a fresh
   * `IDBFactory` from fake-indexeddb in tests. `idb` checks values against the
   * global `IDBRequest`, `IDBDatabase`, … classes, so they must exist (in Node:
   * `import "fake-indexeddb/auto"`).
   */
  indexedDB?: IDBFactory;
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/**
 * The queue is full (`maxMessages` or `maxBytes`): the message was NOT stored
 * and nothing else was dropped. The caller still owns the message.
 */
export class OfflineQueueFullError extends Error {
  override readonly name = "OfflineQueueFullError";
  constructor(
    message: string,
    /** The bound that was reached. */
    readonly limit: "maxMessages" | "maxBytes",
    /** The id of the refused message. */
    readonly id: string,
  ) {
    super(message);
  }
}

// ---------------------------------------------------------------------------
// Ids and frames
// ---------------------------------------------------------------------------
// (`newMessageId`, `InvalidOfflineMessageError` and the checked copy with an id
// that `OfflineSync` takes too: offline-frame.ts.)

/** UTF-8 length of a string without allocating. */
function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}

/**
 * The wire frame of `message` as it will be queued and sent: a JSON copy (what
 * `JSON.stringify` would send), with a fresh id (`newMessageId`) when it has
 * none. Throws `InvalidOfflineMessageError` unless it is a valid `publish` or
 * command per the protocol (`parseMessage`) of at most `maxMessageBytes`.
 * Other message types are refused: `POST /api/v1/messages` (the Service
 * Worker's replay) accepts only these two, and a queued `subscribe` or `ping`
 * would mean nothing once replayed.
 */
export function prepareOfflineFrame(
  message: object,
  maxMessageBytes: number = DEFAULT_OFFLINE_MAX_MESSAGE_BYTES,
): OfflineFrame {
  const { copy, parsed } = copyWithId(message, "an offline message");
  if (parsed.type !== "publish" && parsed.type !== "command") {
    throw new InvalidOfflineMessageError(
      `only publish and command messages can be queued offline, not \`${messageType(parsed)}\``,
    );
  }
  const text = JSON.stringify(copy);
  // The JSON-level refusals of the gateway's parser (nesting over 127, lone surrogates).
  const whole = parseFrame(text);
  if (!whole.ok) throw new InvalidOfflineMessageError(`invalid message: ${whole.error.message}`);
  const bytes = utf8Length(text);
  if (bytes > maxMessageBytes) {
    throw new InvalidOfflineMessageError(
      `the message is ${bytes} bytes; at most ${maxMessageBytes} can be queued (the gateway's max_message_bytes)`,
    );
  }
  return copy as OfflineFrame;
}

// ---------------------------------------------------------------------------
// Opening
// ---------------------------------------------------------------------------

function positiveInt(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer, not ${v}`);
  return v;
}

async function openDatabase(factory: IDBFactory, name: string, onLost: () => void): Promise<Db> {
  const request = factory.open(name, OFFLINE_DB_VERSION);
  request.addEventListener("upgradeneeded", () => {
    const db = request.result;
    if (!db.objectStoreNames.contains(OFFLINE_STORE)) {
      const store = db.createObjectStore(OFFLINE_STORE, { keyPath: "id" });
      store.createIndex(OFFLINE_QUEUED_AT_INDEX, "queuedAt");
      return;
    }
    const store = request.transaction?.objectStore(OFFLINE_STORE);
    if (store !== undefined && !store.indexNames.contains(OFFLINE_QUEUED_AT_INDEX)) {
      store.createIndex(OFFLINE_QUEUED_AT_INDEX, "queuedAt");
    }
  });
  request.addEventListener("blocked", () => {
    log("opening the offline database is blocked by another connection", name);
  });
  const db = (await wrap(request)) as unknown as Db | undefined;
  if (db === undefined) throw new Error(`cannot open the offline database ${name}`);
  // Another tab (or the Service Worker) wants a newer version or deletes the
  // database: let it, and reopen on the next call.
  db.addEventListener("versionchange", () => {
    db.close();
    onLost();
  });
  db.addEventListener("close", onLost);
  return db;
}

interface ChannelLike {
  postMessage(message: unknown): void;
  close(): void;
  onmessage: ((ev: MessageEvent) => void) | null;
}

function openChannel(name: string): ChannelLike | null {
  const Ctor = (globalThis as { BroadcastChannel?: new (name: string) => ChannelLike }).BroadcastChannel;
  if (Ctor === undefined) return null;
  try {
    const ch = new Ctor(name);
    // Node: do not keep the process alive just for this channel.
    (ch as { unref?: () => void }).unref?.();
    return ch;
  } catch (e) {
    log("no BroadcastChannel; changes in other tabs will not be noticed", e);
    return null;
  }
}

// ---------------------------------------------------------------------------
// OfflineQueue
// ---------------------------------------------------------------------------

/**
 * The durable, bounded offline queue. Obtain one with `OfflineQueue.open()`.
 *
 * Bound policy: when a new message would exceed `maxMessages` (default 1000)
 * or `maxBytes` of frame JSON (default 5 MiB), `add` rejects with
 * `OfflineQueueFullError` and stores nothing; queued messages are never
 * dropped to make room.
 *
 * Every method is async and runs in one IndexedDB transaction, so several
 * instances (tabs, workers) may share one database safely.
 */
export class OfflineQueue {
  private db: Promise<Db> | null = null;
  private closed = false;
  private readonly listeners = new Set<() => void>();
  private readonly channel: ChannelLike | null;

  private constructor(
    /** The database's name (and the BroadcastChannel's). */
    readonly dbName: string,
    /** The bounds in force. */
    readonly limits: {
      readonly maxMessages: number;
      readonly maxBytes: number;
      readonly maxMessageBytes: number;
      readonly ttlMs: number;
    },
    private readonly factory: IDBFactory,
  ) {
    this.channel = openChannel(dbName);
    if (this.channel !== null) {
      this.channel.onmessage = () => {
        log("the queue changed elsewhere", dbName);
        this.emit();
      };
    }
  }

  /**
   * Opens (creating when needed) the queue's database. Rejects when there is
   * no IndexedDB (pass `indexedDB`) or the database cannot be opened.
   */
  static async open(options: OfflineQueueOptions = {}): Promise<OfflineQueue> {
    const dbName = options.dbName ?? OFFLINE_DB_NAME;
    if (dbName === "") throw new RangeError("dbName must not be empty");
    const limits = {
      maxMessages: positiveInt("maxMessages", options.maxMessages ?? DEFAULT_OFFLINE_MAX_MESSAGES),
      maxBytes: positiveInt("maxBytes", options.maxBytes ?? DEFAULT_OFFLINE_MAX_BYTES),
      maxMessageBytes: positiveInt("maxMessageBytes", options.maxMessageBytes ?? DEFAULT_OFFLINE_MAX_MESSAGE_BYTES),
      ttlMs: positiveInt("ttlMs", options.ttlMs ?? DEFAULT_OFFLINE_TTL_MS),
    };
    const factory = options.indexedDB ?? (globalThis as { indexedDB?: IDBFactory }).indexedDB;
    if (factory === undefined) throw new Error("no IndexedDB in this environment: pass the `indexedDB` option");
    const queue = new OfflineQueue(dbName, limits, factory);
    try {
      await queue.database();
    } catch (e) {
      queue.close();
      throw e;
    }
    return queue;
  }

  private database(): Promise<Db> {
    if (this.closed) return Promise.reject(new Error(`the offline queue ${this.dbName} is closed`));
    if (this.db === null) {
      const opening: Promise<Db> = openDatabase(this.factory, this.dbName, () => {
        if (this.db === opening) this.db = null;
      });
      opening.catch(() => {
        if (this.db === opening) this.db = null;
      });
      this.db = opening;
    }
    return this.db;
  }

  /**
   * Queues `message` (a `publish` or a command; an `id` is added when missing)
   * and resolves with its record. Adding an id that is already queued changes
   * nothing and resolves with the queued record. Rejects with
   * `InvalidOfflineMessageError` for an invalid message and with
   * `OfflineQueueFullError` when a bound would be exceeded; in both cases
   * nothing is stored.
   */
  async add(message: object): Promise<OfflineMessage> {
    const frame = prepareOfflineFrame(message, this.limits.maxMessageBytes);
    const db = await this.database();
    const tx = db.transaction(OFFLINE_STORE, "readwrite");
    const existing = await tx.store.get(frame.id);
    if (existing !== undefined) {
      await tx.done;
      log("already queued", frame.id);
      return existing;
    }
    const all = await tx.store.getAll();
    const bytes = utf8Length(JSON.stringify(frame));
    let held = 0;
    let last = 0;
    for (const r of all) {
      held += utf8Length(JSON.stringify(r.frame));
      if (r.queuedAt > last) last = r.queuedAt;
    }
    let full: OfflineQueueFullError | null = null;
    if (all.length + 1 > this.limits.maxMessages) {
      full = new OfflineQueueFullError(
        `offline queue full: ${all.length} messages held (maxMessages = ${this.limits.maxMessages}); message ${frame.id} not queued`,
        "maxMessages",
        frame.id,
      );
    } else if (held + bytes > this.limits.maxBytes) {
      full = new OfflineQueueFullError(
        `offline queue full: ${held} + ${bytes} bytes exceed maxBytes = ${this.limits.maxBytes}; message ${frame.id} not queued`,
        "maxBytes",
        frame.id,
      );
    }
    if (full !== null) {
      await tx.done;
      log(full.message);
      throw full;
    }
    const record: OfflineMessage = { id: frame.id, frame, queuedAt: Math.max(Date.now(), last + 1), attempts: 0 };
    await tx.store.add(record);
    await tx.done;
    log("queued", frame.id);
    this.changed();
    return record;
  }

  /** Every queued message, oldest first; drops (and does not return) those older than `ttlMs`. */
  async list(): Promise<OfflineMessage[]> {
    const db = await this.database();
    const all = await db.getAllFromIndex(OFFLINE_STORE, OFFLINE_QUEUED_AT_INDEX);
    const cutoff = Date.now() - this.limits.ttlMs;
    const expired = all.filter((r) => r.queuedAt <= cutoff);
    if (expired.length === 0) return all;
    await this.remove(expired.map((r) => r.id));
    log(
      `dropped ${expired.length} message(s) queued more than ttlMs = ${this.limits.ttlMs} ms ago: ` +
        "past the gateway's dedup window a replay could take effect twice",
      expired.map((r) => r.id),
    );
    return all.filter((r) => r.queuedAt > cutoff);
  }

  /** How many messages are queued. */
  async size(): Promise<number> {
    const db = await this.database();
    return db.count(OFFLINE_STORE);
  }

  /** Removes the messages with these ids (unknown ids are ignored); resolves with how many were removed. */
  async remove(ids: string | readonly string[]): Promise<number> {
    const list = typeof ids === "string" ? [ids] : [...new Set(ids)];
    if (list.length === 0) return 0;
    const db = await this.database();
    const tx = db.transaction(OFFLINE_STORE, "readwrite");
    const found = await Promise.all(list.map((id) => tx.store.getKey(id)));
    const present = list.filter((_, i) => found[i] !== undefined);
    await Promise.all(present.map((id) => tx.store.delete(id)));
    await tx.done;
    if (present.length > 0) {
      log("removed", present.length);
      this.changed();
    }
    return present.length;
  }

  /** Removes every message. */
  async clear(): Promise<void> {
    const db = await this.database();
    await db.clear(OFFLINE_STORE);
    log("cleared");
    this.changed();
  }

  /**
   * Records a failed attempt: `attempts + 1` and `lastError` (cut to 500
   * characters). Resolves false when the message is no longer queued.
   */
  async markFailed(id: string, error: unknown): Promise<boolean> {
    const db = await this.database();
    const tx = db.transaction(OFFLINE_STORE, "readwrite");
    const record = await tx.store.get(id);
    if (record === undefined) {
      await tx.done;
      return false;
    }
    const text = typeof error === "string" ? error : errorText(error);
    await tx.store.put({ ...record, attempts: record.attempts + 1, lastError: text.slice(0, MAX_ERROR_CHARS) });
    await tx.done;
    this.changed();
    return true;
  }

  /**
   * Calls `listener` after every change made by this instance, and (through
   * the BroadcastChannel, when there is one) by other instances on the same
   * database in this or other tabs and workers. Returns the unsubscribe function.
   */
  subscribe(listener: () => void): () => void {
    const entry = (): void => {
      listener();
    };
    this.listeners.add(entry);
    return () => {
      this.listeners.delete(entry);
    };
  }

  /** Closes the database and the channel; later calls reject. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    if (this.channel !== null) {
      this.channel.onmessage = null;
      this.channel.close();
    }
    const db = this.db;
    this.db = null;
    if (db !== null) {
      db.then(
        (d) => {
          d.close();
        },
        () => undefined,
      );
    }
  }

  /** Whether `close()` was called. */
  get isClosed(): boolean {
    return this.closed;
  }

  private changed(): void {
    try {
      this.channel?.postMessage({ type: "changed", dbName: this.dbName });
    } catch (e) {
      log("cannot post on the BroadcastChannel", e);
    }
    this.emit();
  }

  private emit(): void {
    notifyAll(this.listeners);
  }
}

// ---------------------------------------------------------------------------
// HTTP replay
// ---------------------------------------------------------------------------

/** Options of `replayOverHttp`. */
export interface ReplayOverHttpOptions {
  /** Full URL of `POST /api/v1/messages`, e.g. `http://host/api/v1/messages?client_id=X` (see `httpEndpointFor`). */
  endpoint: string;
  /** Default `globalThis.fetch`. */
  fetch?: typeof fetch;
  /** Sent as `Authorization: Bearer <token>`; a function is asked before every request. */
  token?: string | (() => Promise<string | null | undefined>);
  /** Messages per request, 1 to 1000 (default 50). */
  batchSize?: number;
  /**
   * Longest wait in ms for one request's answer (default 35000); past it the
   * request is aborted and the replay stops, keeping what was not answered.
   */
  timeoutMs?: number;
}

/** A message the gateway refused for good (removed from the queue; see `isFinalError`). */
export interface RejectedMessage {
  readonly id: string;
  /** `code: message` of the gateway's error. */
  readonly error: string;
}

/** What a replay did. */
export interface ReplayResult {
  /** Messages the gateway accepted (acks, duplicates included, and results): removed. */
  sent: number;
  /** Messages answered with a final error (see `isFinalError`): removed, since resending can never succeed. */
  rejected: RejectedMessage[];
  /** Messages still queued afterwards. */
  remaining: number;
  /** Why the replay stopped early (network, HTTP status, bad token, a retryable error, no answer in time…); everything unsent was kept. */
  error?: string;
}

type ReplyOutcome = { kind: "done" } | { kind: "rejected"; error: string } | { kind: "retry"; error: string };

/**
 * Command error codes that are a command's stored outcome: the gateway
 * answers every later send of the same id with the same error (and
 * `"duplicate": true`), so resending a queued command after one of these can
 * never succeed. For a `publish` they stay retryable.
 */
export const FINAL_COMMAND_ERROR_CODES: ReadonlySet<string> = new Set(["no_handler", "timeout"]);

/** The fields of a gateway error that decide whether resending can help. */
export interface ErrorVerdictInput {
  /** The error's `code`. */
  readonly code: string;
  /** The error's `retryable` flag; when absent, the protocol's list decides. */
  readonly retryable?: boolean | undefined;
  /** The reply carried `"duplicate": true`: the stored outcome of an id already seen. */
  readonly duplicate?: boolean | undefined;
}

/**
 * Whether a gateway error in reply to a message of type `frameType` is final,
 * i.e. resending the same id can never succeed, so a queued message should be
 * removed and reported rather than kept: a duplicate (the stored outcome of
 * the id, sent again forever), a non-retryable code, or, for a command (any
 * type but `publish`), `no_handler` and `timeout` (see
 * `FINAL_COMMAND_ERROR_CODES`). Everything else (`rate_limited`, `overloaded`,
 * `internal`, …) is transient: keep the message and try again later.
 */
export function isFinalError(frameType: string, error: ErrorVerdictInput): boolean {
  if (error.duplicate === true) return true;
  if (frameType !== "publish" && FINAL_COMMAND_ERROR_CODES.has(error.code)) return true;
  return !(error.retryable ?? retryable(error.code));
}

/** What to do with a message of type `frameType` given the gateway's reply to it. */
function classifyReply(reply: unknown, frameType: string): ReplyOutcome {
  if (typeof reply !== "object" || reply === null) return { kind: "retry", error: "unexpected reply: not an object" };
  const r = reply as { type?: unknown; error?: unknown; duplicate?: unknown };
  if (r.type === "ack" || r.type === "result") return { kind: "done" };
  if (r.type === "error") {
    const error = readErrorReply(r);
    return isFinalError(frameType, error) ? { kind: "rejected", error: error.text } : { kind: "retry", error: error.text };
  }
  return { kind: "retry", error: `unexpected reply type ${JSON.stringify(r.type)}` };
}

async function bodyExcerpt(response: Response): Promise<string> {
  try {
    const text = await response.text();
    return text.length > 200 ? `${text.slice(0, 200)}…` : text;
  } catch {
    return "";
  }
}

/**
 * Sends the queue, oldest first, to `POST /api/v1/messages` in batches (a JSON
 * array per request, with `Authorization: Bearer` when a token is given), and
 * applies each reply in order: `ack` (a `duplicate` included) or `result` →
 * removed; a final `error` (see `isFinalError`: a duplicate, a non-retryable
 * code, or `no_handler` / `timeout` for a command) → removed and listed in
 * `rejected` (it can never succeed; keeping it would block the queue
 * forever); any other `error` → kept (`markFailed`), and no further batch is
 * sent, so that no newer message overtakes it (`error` names it).
 *
 * Order: batches go one after another, oldest first, and stop at the first
 * batch with a retryable failure. Within one batch the order is the gateway's:
 * it handles the array in order, so a later message of the batch may take
 * effect although an earlier one was refused for now (use `batchSize: 1` when
 * that matters more than speed).
 *
 * A network failure, a request without an answer within `timeoutMs`, or any
 * non-2xx status (5xx, 400, 401, 403, 413, …) stops the replay and keeps
 * every message not yet answered, with the reason in `error`. Never rejects
 * for those; only a closed queue or an IndexedDB failure rejects.
 */
export async function replayOverHttp(queue: OfflineQueue, options: ReplayOverHttpOptions): Promise<ReplayResult> {
  const batchSize = options.batchSize ?? DEFAULT_REPLAY_BATCH_SIZE;
  if (!Number.isSafeInteger(batchSize) || batchSize < 1 || batchSize > MAX_HTTP_MESSAGES) {
    throw new RangeError(`batchSize must be an integer from 1 to ${MAX_HTTP_MESSAGES}`);
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_REPLAY_REQUEST_TIMEOUT_MS;
  if (!(timeoutMs > 0) || !Number.isFinite(timeoutMs)) throw new RangeError("timeoutMs must be a positive number of ms");
  const doFetch = options.fetch ?? (globalThis as { fetch?: typeof fetch }).fetch;
  if (doFetch === undefined) throw new Error("no fetch in this environment: pass the `fetch` option");
  const items = await queue.list();
  let sent = 0;
  const rejected: RejectedMessage[] = [];
  let error: string | undefined;

  for (let start = 0; start < items.length && error === undefined; start += batchSize) {
    const batch = items.slice(start, start + batchSize);
    const headers: Record<string, string> = { "content-type": "application/json" };
    let token: string | null | undefined;
    try {
      token = typeof options.token === "function" ? await options.token() : options.token;
    } catch (e) {
      error = `getting the token failed: ${errorText(e)}`;
      break;
    }
    if (token !== undefined && token !== null && token !== "") headers["authorization"] = `Bearer ${token}`;

    const answer = await postBatch(doFetch, options.endpoint, headers, batch, timeoutMs);
    if (!answer.ok) {
      error = answer.error;
      break;
    }
    const done: string[] = [];
    for (const [i, m] of batch.entries()) {
      const outcome = classifyReply(answer.replies[i], m.frame.type);
      switch (outcome.kind) {
        case "done":
          done.push(m.id);
          sent += 1;
          break;
        case "rejected":
          done.push(m.id);
          rejected.push({ id: m.id, error: outcome.error });
          log("rejected by the gateway, removed", m.id, outcome.error);
          break;
        case "retry":
          await queue.markFailed(m.id, outcome.error);
          // The first one names the stop; no later batch is sent.
          error ??= `${m.id}: ${outcome.error}`;
          break;
      }
    }
    await queue.remove(done);
    if (error !== undefined) log("HTTP replay stopped: kept for a later replay", error);
  }

  const remaining = await queue.size();
  log("HTTP replay", { sent, rejected: rejected.length, remaining, error });
  const result: ReplayResult = { sent, rejected, remaining };
  if (error !== undefined) result.error = error;
  return result;
}

type BatchAnswer = { ok: true; replies: readonly unknown[] } | { ok: false; error: string };

/** One `POST` of `batch`, bounded by `timeoutMs` (the request is aborted then); the replies when they match the batch. */
async function postBatch(
  doFetch: typeof fetch,
  endpoint: string,
  headers: Record<string, string>,
  batch: readonly OfflineMessage[],
  timeoutMs: number,
): Promise<BatchAnswer> {
  const abort = typeof AbortController === "function" ? new AbortController() : null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<BatchAnswer>((resolve) => {
    timer = setTimeout(() => {
      abort?.abort();
      resolve({ ok: false, error: `no answer within ${timeoutMs} ms` });
    }, timeoutMs);
  });
  const exchange = async (): Promise<BatchAnswer> => {
    let response: Response;
    try {
      const init: RequestInit = { method: "POST", headers, body: JSON.stringify(batch.map((m) => m.frame)) };
      if (abort !== null) init.signal = abort.signal;
      response = await doFetch(endpoint, init);
    } catch (e) {
      return { ok: false, error: `network error: ${errorText(e)}` };
    }
    if (!response.ok) {
      const excerpt = await bodyExcerpt(response);
      return { ok: false, error: `HTTP ${response.status}${excerpt === "" ? "" : `: ${excerpt}`}` };
    }
    let replies: unknown;
    try {
      replies = await response.json();
    } catch (e) {
      return { ok: false, error: `the reply is not JSON: ${errorText(e)}` };
    }
    if (!Array.isArray(replies) || replies.length !== batch.length) {
      return { ok: false, error: `expected an array of ${batch.length} replies` };
    }
    return { ok: true, replies: replies as unknown[] };
  };
  try {
    return await Promise.race([exchange(), expired]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The `POST /api/v1/messages` URL of the gateway behind a WebSocket URL:
 * `ws://host/ws/dashboard?x` → `http://host/api/v1/messages?client_id=…`
 * (`wss` → `https`; a path prefix before `/ws` is kept; other query
 * parameters, such as a token, are dropped). `clientId` defaults to the
 * `client_id` of `wsUrl`; without either, no `client_id` is sent (the
 * principal is then `anonymous` when auth is off, which breaks deduplication
 * against a WebSocket that used a `client_id`).
 */
export function httpEndpointFor(wsUrl: string, clientId?: string): string {
  const u = new URL(wsUrl);
  if (u.protocol === "ws:") u.protocol = "http:";
  else if (u.protocol === "wss:") u.protocol = "https:";
  else if (u.protocol !== "http:" && u.protocol !== "https:") {
    throw new Error(`not a WebSocket or HTTP URL: ${wsUrl}`);
  }
  const id = clientId ?? u.searchParams.get("client_id") ?? undefined;
  if (id !== undefined && !isValidPrincipal(id)) throw new Error("clientId must be 1 to 128 printable ASCII characters");
  const prefix = u.pathname.replace(/\/ws(\/dashboard)?\/?$/, "").replace(/\/+$/, "");
  u.pathname = `${prefix}/api/v1/messages`;
  u.search = "";
  u.hash = "";
  if (id !== undefined) u.searchParams.set("client_id", id);
  return u.toString();
}
