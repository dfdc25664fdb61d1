// Tether wire protocol, version 1 (`shared/protocol.md`), for the browser SDK.
//
// Client → server parsing and validation mirror the Rust crate
// `crates/protocol` (`client.rs`, `validate.rs`, `codes.rs`) rule for rule; the
// golden vectors in `crates/protocol/tests/vectors/` are checked by both.
// Server → client frames are decoded with zod schemas shaped like `server.rs`.
//
// Known difference from the Rust parser: JavaScript's JSON.parse cannot tell an
// integer literal from an equal float literal, so `4.0`, `1e2` or integers
// above 2^53 in `since.seq` / `data.concurrency` are judged by their numeric
// value here (Rust rejects any float literal and accepts integers up to 2^64-1).
// `-0` is rejected like in Rust. Everything else (JSON nesting limit, lone
// surrogates, numbers out of range) is mirrored.

import { z } from "zod";

// ---------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------

/** The protocol version announced in `welcome.protocol`. */
export const PROTOCOL_VERSION = 1;
/** Most inner messages a `batch` may carry. */
export const MAX_BATCH = 100;
/** Longest `id` (and `client_id`) in bytes. */
export const MAX_ID_LEN = 128;
/** Longest channel name in bytes (`inbox:<principal>` may be longer). */
export const MAX_CHANNEL_LEN = 128;
/** Prefix of an agent's own channel. */
export const AGENT_PREFIX = "agent:";
/** Prefix of a principal's results channel. */
export const INBOX_PREFIX = "inbox:";
/** Longest agent name: `agent:<name>` must still be a valid channel name. */
export const MAX_AGENT_NAME_LEN = MAX_CHANNEL_LEN - AGENT_PREFIX.length;
/** The channel carrying the agent status array. */
export const AGENTS_CHANNEL = "agents";
/** The channel carrying periodic `system_metrics` snapshots. */
export const SYSTEM_CHANNEL = "system";
/** Largest `concurrency` an agent may register with. */
export const MAX_CONCURRENCY = 10_000;
/** Most commands one `register` may list. */
export const MAX_REGISTER_COMMANDS = 256;
/** Most messages one `POST /api/v1/messages` body may carry. */
export const MAX_HTTP_MESSAGES = 1000;
/** Deepest JSON nesting serde_json (the gateway's parser) accepts. */
export const MAX_JSON_DEPTH = 127;

/** Client → server type names (any other valid command type is a command). */
export const CLIENT_TYPES = [
  "ping",
  "auth",
  "subscribe",
  "unsubscribe",
  "publish",
  "request_agent_status",
  "request_system_metrics",
  "subscribe_agent",
  "unsubscribe_agent",
  "batch",
  "register",
  "status",
  "task_progress",
  "task_result",
] as const;

/** Server → client type names; never valid as commands. */
export const SERVER_TYPES = [
  "welcome",
  "pong",
  "ack",
  "error",
  "event",
  "agent_status",
  "system_metrics",
  "result",
  "task",
] as const;

export type ClientType = (typeof CLIENT_TYPES)[number];
export type ServerType = (typeof SERVER_TYPES)[number];

// ---------------------------------------------------------------------------
// Error and close codes (codes.rs)
// ---------------------------------------------------------------------------

/** Every wire error code, in the order the protocol lists them. */
export const ERROR_CODES = [
  "bad_request",
  "unauthorized",
  "forbidden",
  "rate_limited",
  "too_large",
  "no_handler",
  "timeout",
  "overloaded",
  "internal",
] as const;

/** The `error.code` of an `error` frame (or of an inbox result). */
export type ErrorCode = (typeof ERROR_CODES)[number];

const RETRYABLE: ReadonlySet<string> = new Set<ErrorCode>([
  "rate_limited",
  "no_handler",
  "timeout",
  "overloaded",
  "internal",
]);

/** Whether `code` is one of the protocol's error codes. */
export function isErrorCode(code: string): code is ErrorCode {
  return (ERROR_CODES as readonly string[]).includes(code);
}

/** Whether the same request may succeed if sent again later. Unknown codes are not retryable. */
export function retryable(code: string): boolean {
  return RETRYABLE.has(code);
}

/** The WebSocket close codes the gateway uses. */
export const CloseCode = {
  GoingAway: 1001,
  MessageTooBig: 1009,
  TryAgainLater: 1013,
  Unauthorized: 4001,
  Forbidden: 4003,
  HeartbeatTimeout: 4008,
  RateLimited: 4029,
} as const;

export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/** Every close code with its snake_case label, in the protocol's order. */
export const CLOSE_CODES: readonly { readonly code: CloseCode; readonly name: string }[] = [
  { code: CloseCode.GoingAway, name: "going_away" },
  { code: CloseCode.MessageTooBig, name: "message_too_big" },
  { code: CloseCode.TryAgainLater, name: "try_again_later" },
  { code: CloseCode.Unauthorized, name: "unauthorized" },
  { code: CloseCode.Forbidden, name: "forbidden" },
  { code: CloseCode.HeartbeatTimeout, name: "heartbeat_timeout" },
  { code: CloseCode.RateLimited, name: "rate_limited" },
];

/** Whether `code` is one of the gateway's close codes. */
export function isCloseCode(code: number): code is CloseCode {
  return CLOSE_CODES.some((c) => c.code === code);
}

/**
 * What a client should do after a close: `reconnect` (with the usual backoff,
 * preferably elsewhere), `backoff` (reconnect with backoff), `after-fix`
 * (only once something changed: a new token, a fixed frame), `never`.
 */
export type ReconnectAdvice = "reconnect" | "backoff" | "after-fix" | "never";

/**
 * The advice for a close code, per the protocol's table. Codes that are not the
 * gateway's (a normal 1000, a network 1006, …) get `reconnect`.
 */
export function reconnectAdvice(code: number): ReconnectAdvice {
  switch (code) {
    case CloseCode.GoingAway:
    case CloseCode.HeartbeatTimeout:
      return "reconnect";
    case CloseCode.TryAgainLater:
    case CloseCode.RateLimited:
      return "backoff";
    case CloseCode.MessageTooBig:
    case CloseCode.Unauthorized:
      return "after-fix";
    case CloseCode.Forbidden:
      return "never";
    default:
      return "reconnect";
  }
}

// ---------------------------------------------------------------------------
// Validators (validate.rs)
// ---------------------------------------------------------------------------

function printableAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

function channelChars(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const ok =
      (c >= 0x30 && c <= 0x39) || // 0-9
      (c >= 0x41 && c <= 0x5a) || // A-Z
      (c >= 0x61 && c <= 0x7a) || // a-z
      c === 0x5f || // _
      c === 0x3a || // :
      c === 0x2e || // .
      c === 0x2d; // -
    if (!ok) return false;
  }
  return true;
}

/** An `id`: 1..=128 printable ASCII characters (bytes 0x20–0x7E, space included). */
export function isValidId(id: string): boolean {
  // Any non-ASCII character fails printableAscii, so UTF-16 length = byte length here.
  return id.length >= 1 && id.length <= MAX_ID_LEN && printableAscii(id);
}

/** A principal given as `client_id`: the same rule as an id. */
export function isValidPrincipal(p: string): boolean {
  return isValidId(p);
}

/**
 * A channel name: `^[A-Za-z0-9_:.\-]{1,128}$`, or `inbox:<principal>` for any
 * valid principal (e.g. `inbox:alice@example.com`, up to 134 bytes).
 */
export function isValidChannel(name: string): boolean {
  if (name.length >= 1 && name.length <= MAX_CHANNEL_LEN && channelChars(name)) return true;
  if (name.startsWith(INBOX_PREFIX)) return isValidPrincipal(name.slice(INBOX_PREFIX.length));
  return false;
}

/** An agent name: channel characters, at most 122 so that `agent:<name>` is a valid channel. */
export function isValidAgentName(name: string): boolean {
  return name.length >= 1 && name.length <= MAX_AGENT_NAME_LEN && channelChars(name);
}

/** A command type: `^[a-z][a-z0-9_.:-]{0,63}$` and not a protocol type name. */
export function isValidCommandType(t: string): boolean {
  if (t.length < 1 || t.length > 64) return false;
  const first = t.charCodeAt(0);
  if (first < 0x61 || first > 0x7a) return false;
  for (let i = 1; i < t.length; i++) {
    const c = t.charCodeAt(i);
    const ok =
      (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x5f || c === 0x2e || c === 0x3a || c === 0x2d;
    if (!ok) return false;
  }
  return !(CLIENT_TYPES as readonly string[]).includes(t) && !(SERVER_TYPES as readonly string[]).includes(t);
}

/** The channel of an agent's status and progress. */
export function agentChannel(name: string): string {
  return AGENT_PREFIX + name;
}

/** The channel of a principal's command results. */
export function inboxChannel(principal: string): string {
  return INBOX_PREFIX + principal;
}

const utf8 = new TextEncoder();

/**
 * Matches `name` against a protocol pattern: `*` matches any run of characters
 * (including none), `?` exactly one byte, everything else itself. Works on UTF-8
 * bytes like the gateway.
 */
export function patternMatches(pattern: string, name: string): boolean {
  const p = utf8.encode(pattern);
  const n = utf8.encode(name);
  let pi = 0;
  let ni = 0;
  // Position of the last `*` seen and the name position it was tried at.
  let starP = -1;
  let starN = 0;
  const STAR = 0x2a;
  const QUESTION = 0x3f;
  while (ni < n.length) {
    const pc = p[pi];
    if (pc !== undefined && (pc === QUESTION || pc === n[ni])) {
      pi++;
      ni++;
    } else if (pc === STAR) {
      starP = pi;
      starN = ni;
      pi++;
    } else if (starP >= 0) {
      pi = starP + 1;
      starN++;
      ni = starN;
    } else {
      return false;
    }
  }
  for (; pi < p.length; pi++) {
    if (p[pi] !== STAR) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------
// JSON decoding with the gateway's (serde_json's) limits
// ---------------------------------------------------------------------------

/** Whether `s` holds a UTF-16 surrogate without its pair (not valid JSON for the gateway). */
export function hasLoneSurrogate(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++;
        continue;
      }
      return true;
    }
    if (c >= 0xdc00 && c <= 0xdfff) return true;
  }
  return false;
}

/** Why serde_json would refuse an already JSON.parse'd value, or null. */
function serdeRefusal(value: unknown, depth: number): string | null {
  if (typeof value === "number") return Number.isFinite(value) ? null : "number out of range";
  if (typeof value === "string") return hasLoneSurrogate(value) ? "lone surrogate in string" : null;
  if (value === null || typeof value !== "object") return null;
  if (depth + 1 > MAX_JSON_DEPTH) return "recursion limit exceeded";
  if (Array.isArray(value)) {
    for (const v of value as unknown[]) {
      const r = serdeRefusal(v, depth + 1);
      if (r !== null) return r;
    }
    return null;
  }
  for (const [k, v] of Object.entries(value)) {
    if (hasLoneSurrogate(k)) return "lone surrogate in key";
    const r = serdeRefusal(v, depth + 1);
    if (r !== null) return r;
  }
  return null;
}

/** JSON.parse with the gateway's extra refusals (nesting over 127, lone surrogates, ±Infinity). */
function decodeJson(text: string): { ok: true; value: unknown } | { ok: false; message: string } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return { ok: false, message: e instanceof Error ? e.message : String(e) };
  }
  const refusal = serdeRefusal(value, 0);
  return refusal === null ? { ok: true, value } : { ok: false, message: refusal };
}

// ---------------------------------------------------------------------------
// Client → server messages (client.rs)
// ---------------------------------------------------------------------------

/** `since` of a recovering `subscribe`. */
export interface Since {
  /** The last seq the client has. */
  seq: number;
  /** The epoch that seq belongs to; `null` only means "the current one". */
  epoch: string | null;
}

/** A replica's self-reported state (`status` message). */
export type AgentState = "idle" | "busy" | "error";

/** An agent's error answer to a task (`task_result` with `error`). */
export interface AgentError {
  code: string;
  message: string;
}

/** The outcome of a task as an agent reports it. */
export type TaskOutcome = { ok: true; data: unknown } | { ok: false; error: AgentError };

/** One valid client message. Commands have `type: "command"` and their wire type in `command`. */
export type ClientMessage =
  | { type: "ping"; id: string }
  | { type: "auth"; id: string; token: string }
  | { type: "subscribe"; id: string; channel: string; since: Since | null }
  | { type: "unsubscribe"; id: string; channel: string }
  | { type: "publish"; id: string; channel: string; data: unknown }
  | { type: "request_agent_status"; id: string }
  | { type: "request_system_metrics"; id: string }
  | { type: "subscribe_agent"; id: string; name: string }
  | { type: "unsubscribe_agent"; id: string; name: string }
  | { type: "register"; id: string; name: string; commands: string[]; concurrency: number }
  | { type: "status"; state: AgentState; detail: string | null }
  | { type: "task_progress"; id: string; data: unknown }
  | { type: "task_result"; id: string; outcome: TaskOutcome }
  | { type: "command"; id: string; command: string; data: unknown };

/** A frame that is not a valid client message (answered with `bad_request`). */
export interface FrameError {
  /** The frame's id when it had a valid one, else null. */
  id: string | null;
  /** What is wrong, for a human. */
  message: string;
}

export type MessageResult = { ok: true; message: ClientMessage } | { ok: false; error: FrameError };

/** One text frame: a single message, or a batch whose inner messages are each valid or not. */
export type ClientFrame = { kind: "single"; message: ClientMessage } | { kind: "batch"; items: MessageResult[] };

export type FrameResult = { ok: true; frame: ClientFrame } | { ok: false; error: FrameError };

/** The message's type name as on the wire (the command name for a command). */
export function messageType(msg: ClientMessage): string {
  return msg.type === "command" ? msg.command : msg.type;
}

/** The message's id, or null (`status`). */
export function messageId(msg: ClientMessage): string | null {
  return msg.type === "status" ? null : msg.id;
}

type JsonObject = Record<string, unknown>;

function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** serde_json's `Value::get(key)`: a field of an object, else undefined. */
function field(v: unknown, key: string): unknown {
  return isObject(v) && Object.hasOwn(v, key) ? v[key] : undefined;
}

/** serde_json's `Value::as_u64` (for values JSON.parse can represent exactly). */
function asU64(v: unknown): number | undefined {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0 && !Object.is(v, -0) ? v : undefined;
}

/** Rust's `truncate`: at most `max` Unicode scalar values. */
function truncate(s: string, max: number): string {
  const chars = Array.from(s);
  return chars.length > max ? chars.slice(0, max).join("") : s;
}

class Invalid extends Error {
  constructor(
    readonly id: string | null,
    message: string,
  ) {
    super(message);
  }
}

function fail(error: FrameError): { ok: false; error: FrameError } {
  return { ok: false, error };
}

/** Parses one text frame. */
export function parseFrame(text: string): FrameResult {
  const decoded = decodeJson(text);
  if (!decoded.ok) return fail({ id: null, message: `frame is not valid JSON: ${decoded.message}` });
  return parseFrameValue(decoded.value);
}

/** Parses one already-decoded frame. */
export function parseFrameValue(value: unknown): FrameResult {
  if (!isObject(value)) return fail({ id: null, message: "frame must be a JSON object" });
  if (field(value, "type") !== "batch") {
    const r = parseObject(value);
    return r.ok ? { ok: true, frame: { kind: "single", message: r.message } } : r;
  }
  // A batch that fails as a whole is answered with id null, whatever id it carried.
  const items = field(value, "data");
  if (!Array.isArray(items)) {
    return fail({ id: null, message: "batch needs `data`: an array of 1 to 100 messages" });
  }
  if (items.length === 0 || items.length > MAX_BATCH) {
    return fail({ id: null, message: `batch carries ${items.length} messages; it must carry 1 to ${MAX_BATCH}` });
  }
  if ((items as unknown[]).some((m) => field(m, "type") === "batch")) {
    return fail({ id: null, message: "batches may not be nested" });
  }
  return { ok: true, frame: { kind: "batch", items: (items as unknown[]).map(parseMessage) } };
}

/**
 * Parses the body of `POST /api/v1/messages`: a JSON array of at most 1000
 * messages, each valid or not on its own.
 */
export function parseHttpMessages(body: string): { ok: true; items: MessageResult[] } | { ok: false; error: FrameError } {
  const decoded = decodeJson(body);
  if (!decoded.ok) return fail({ id: null, message: `body is not valid JSON: ${decoded.message}` });
  const v = decoded.value;
  if (!Array.isArray(v)) return fail({ id: null, message: "body must be a JSON array of messages" });
  if (v.length > MAX_HTTP_MESSAGES) {
    return fail({ id: null, message: `${v.length} messages in one request; at most ${MAX_HTTP_MESSAGES}` });
  }
  return { ok: true, items: (v as unknown[]).map(parseMessage) };
}

/** Parses one message (a non-batch frame, a batch's inner message, or an HTTP item). */
export function parseMessage(value: unknown): MessageResult {
  if (!isObject(value)) return fail({ id: null, message: "message must be a JSON object" });
  return parseObject(value);
}

function parseObject(obj: JsonObject): MessageResult {
  try {
    return { ok: true, message: parseObjectOrThrow(obj) };
  } catch (e) {
    if (e instanceof Invalid) return fail({ id: e.id, message: e.message });
    throw e;
  }
}

function parseObjectOrThrow(obj: JsonObject): ClientMessage {
  const rawId = field(obj, "id");
  const id = typeof rawId === "string" && isValidId(rawId) ? rawId : null;
  const err = (m: string): Invalid => new Invalid(id, m);
  if (rawId !== undefined && rawId !== null && id === null) {
    throw err(`\`id\` must be a string of 1 to ${MAX_ID_LEN} printable ASCII characters`);
  }
  const rawType = field(obj, "type");
  if (rawType === undefined) throw err("missing `type`");
  if (typeof rawType !== "string") throw err("`type` must be a string");
  const ty = rawType;
  const needId = (): string => {
    if (id === null) throw new Invalid(null, `\`${ty}\` needs an \`id\``);
    return id;
  };
  const rawData = field(obj, "data");
  const data: unknown = rawData === undefined ? null : rawData;

  switch (ty) {
    case "ping":
      return { type: "ping", id: needId() };
    case "auth": {
      const i = needId();
      const token = field(data, "token");
      if (typeof token !== "string" || token === "") throw err("`auth` needs `data.token`: a non-empty string");
      return { type: "auth", id: i, token };
    }
    case "subscribe": {
      const i = needId();
      const channel = channelField(obj, i);
      const rawSince = field(obj, "since");
      const since = rawSince === undefined || rawSince === null ? null : parseSince(rawSince, err);
      return { type: "subscribe", id: i, channel, since };
    }
    case "unsubscribe": {
      const i = needId();
      return { type: "unsubscribe", id: i, channel: channelField(obj, i) };
    }
    case "publish": {
      const i = needId();
      return { type: "publish", id: i, channel: channelField(obj, i), data };
    }
    case "request_agent_status":
      return { type: "request_agent_status", id: needId() };
    case "request_system_metrics":
      return { type: "request_system_metrics", id: needId() };
    case "subscribe_agent":
    case "unsubscribe_agent": {
      const i = needId();
      const name = field(data, "name");
      if (typeof name !== "string" || !isValidAgentName(name)) throw err("needs `data.name`: a valid agent name");
      return { type: ty, id: i, name };
    }
    case "register":
      return parseRegister(needId(), data);
    case "status": {
      const state = agentState(field(data, "status"));
      if (state === null) throw err("`status` needs `data.status`: idle, busy or error");
      const rawDetail = field(data, "detail");
      let detail: string | null;
      if (rawDetail === undefined || rawDetail === null) detail = null;
      else if (typeof rawDetail === "string") detail = rawDetail;
      else throw err("`data.detail` must be a string");
      return { type: "status", state, detail };
    }
    case "task_progress":
      return { type: "task_progress", id: needId(), data };
    case "task_result": {
      const i = needId();
      const rawError = field(obj, "error");
      const outcome: TaskOutcome =
        rawError === undefined || rawError === null
          ? { ok: true, data }
          : { ok: false, error: parseAgentError(rawError, err) };
      return { type: "task_result", id: i, outcome };
    }
    case "batch":
      throw err("batches may not be nested");
    default:
      if (isValidCommandType(ty)) return { type: "command", id: needId(), command: ty, data };
      throw err(`unknown type \`${truncate(ty, 64)}\``);
  }
}

const AGENT_STATES: readonly string[] = ["idle", "busy", "error"];

/**
 * serde's deserialization of the `AgentState` enum from a JSON value: a
 * variant name, or (serde's externally tagged form of a unit variant) an
 * object with that single key whose value is null.
 */
function agentState(v: unknown): AgentState | null {
  if (typeof v === "string") return AGENT_STATES.includes(v) ? (v as AgentState) : null;
  if (isObject(v)) {
    const keys = Object.keys(v);
    const key = keys[0];
    if (keys.length === 1 && key !== undefined && AGENT_STATES.includes(key) && v[key] === null) {
      return key as AgentState;
    }
  }
  return null;
}

function channelField(obj: JsonObject, id: string): string {
  const c = field(obj, "channel");
  if (typeof c === "string") {
    if (isValidChannel(c)) return c;
    throw new Invalid(id, `bad channel name \`${truncate(c, 64)}\`: use 1 to 128 of A-Z a-z 0-9 _ : . -`);
  }
  throw new Invalid(id, "missing `channel`: a string");
}

function parseSince(v: unknown, err: (m: string) => Invalid): Since {
  const seq = asU64(field(v, "seq"));
  if (seq === undefined) throw err("`since.seq` must be a non-negative integer");
  const rawEpoch = field(v, "epoch");
  if (rawEpoch === undefined || rawEpoch === null) return { seq, epoch: null };
  if (typeof rawEpoch === "string") return { seq, epoch: rawEpoch };
  throw err("`since.epoch` must be a string");
}

function parseAgentError(v: unknown, err: (m: string) => Invalid): AgentError {
  const code = field(v, "code");
  const message = field(v, "message");
  if (typeof code !== "string" || code === "") throw err("`error` needs `code`: a non-empty string");
  return { code, message: typeof message === "string" ? message : "" };
}

function parseRegister(id: string, data: unknown): ClientMessage {
  const err = (m: string): Invalid => new Invalid(id, m);
  const name = field(data, "name");
  if (typeof name !== "string" || !isValidAgentName(name)) {
    throw err("`register` needs `data.name`: 1 to 122 of A-Z a-z 0-9 _ : . -");
  }
  const list = field(data, "commands");
  if (!Array.isArray(list) || list.length === 0 || list.length > MAX_REGISTER_COMMANDS) {
    throw err("`register` needs `data.commands`: an array of 1 to 256 command types");
  }
  const commands: string[] = [];
  for (const c of list as unknown[]) {
    if (typeof c !== "string" || !isValidCommandType(c)) {
      throw err("every entry of `data.commands` must be a valid command type");
    }
    commands.push(c);
  }
  const rawConcurrency = field(data, "concurrency");
  let concurrency = 1;
  if (rawConcurrency !== undefined && rawConcurrency !== null) {
    const c = asU64(rawConcurrency);
    if (c === undefined || c < 1 || c > MAX_CONCURRENCY) {
      throw err("`data.concurrency` must be an integer from 1 to 10000");
    }
    concurrency = c;
  }
  return { type: "register", id, name, commands, concurrency };
}

// ---------------------------------------------------------------------------
// Client frame builders
// ---------------------------------------------------------------------------

/**
 * The wire object of a client message (what `JSON.stringify` sends). Parsing
 * it back with `parseMessage` gives an equal message.
 */
export function toWire(msg: ClientMessage): JsonObject {
  switch (msg.type) {
    case "ping":
    case "request_agent_status":
    case "request_system_metrics":
      return { type: msg.type, id: msg.id };
    case "auth":
      return { type: "auth", id: msg.id, data: { token: msg.token } };
    case "subscribe": {
      const out: JsonObject = { type: "subscribe", id: msg.id, channel: msg.channel };
      if (msg.since !== null) {
        out["since"] = msg.since.epoch === null ? { seq: msg.since.seq } : { seq: msg.since.seq, epoch: msg.since.epoch };
      }
      return out;
    }
    case "unsubscribe":
      return { type: "unsubscribe", id: msg.id, channel: msg.channel };
    case "publish":
      return { type: "publish", id: msg.id, channel: msg.channel, data: msg.data };
    case "subscribe_agent":
    case "unsubscribe_agent":
      return { type: msg.type, id: msg.id, data: { name: msg.name } };
    case "register":
      return {
        type: "register",
        id: msg.id,
        data: { name: msg.name, commands: msg.commands, concurrency: msg.concurrency },
      };
    case "status":
      return {
        type: "status",
        data: msg.detail === null ? { status: msg.state } : { status: msg.state, detail: msg.detail },
      };
    case "task_progress":
      return { type: "task_progress", id: msg.id, data: msg.data };
    case "task_result":
      return msg.outcome.ok
        ? { type: "task_result", id: msg.id, data: msg.outcome.data }
        : { type: "task_result", id: msg.id, error: { code: msg.outcome.error.code, message: msg.outcome.error.message } };
    case "command":
      return { type: msg.command, id: msg.id, data: msg.data };
  }
}

/** The text of one client message. */
export function encodeMessage(msg: ClientMessage): string {
  return JSON.stringify(toWire(msg));
}

/** `ping` → `pong`. */
export function pingFrame(id: string): string {
  return encodeMessage({ type: "ping", id });
}

/** `auth`: replace the connection's token. */
export function authFrame(id: string, token: string): string {
  return encodeMessage({ type: "auth", id, token });
}

/** `subscribe`, recovering from `since` when given (`epoch` omitted means the current one). */
export function subscribeFrame(id: string, channel: string, since?: { seq: number; epoch?: string | null }): string {
  const s: Since | null = since === undefined ? null : { seq: since.seq, epoch: since.epoch ?? null };
  return encodeMessage({ type: "subscribe", id, channel, since: s });
}

/** `unsubscribe`. */
export function unsubscribeFrame(id: string, channel: string): string {
  return encodeMessage({ type: "unsubscribe", id, channel });
}

/** `publish`. */
export function publishFrame(id: string, channel: string, data: unknown): string {
  return encodeMessage({ type: "publish", id, channel, data });
}

/** `request_agent_status`. */
export function requestAgentStatusFrame(id: string): string {
  return encodeMessage({ type: "request_agent_status", id });
}

/** `request_system_metrics`. */
export function requestSystemMetricsFrame(id: string): string {
  return encodeMessage({ type: "request_system_metrics", id });
}

/** `subscribe_agent` (= `subscribe` to `agent:<name>`). */
export function subscribeAgentFrame(id: string, name: string): string {
  return encodeMessage({ type: "subscribe_agent", id, name });
}

/** `unsubscribe_agent`. */
export function unsubscribeAgentFrame(id: string, name: string): string {
  return encodeMessage({ type: "unsubscribe_agent", id, name });
}

/** A command (`type` is the command name), routed to an agent. */
export function commandFrame(id: string, command: string, data?: unknown): string {
  return encodeMessage({ type: "command", id, command, data: data === undefined ? null : data });
}

/** `register` as a replica of agent `name`. */
export function registerFrame(id: string, name: string, commands: readonly string[], concurrency = 1): string {
  return encodeMessage({ type: "register", id, name, commands: [...commands], concurrency });
}

/** `status`: this replica's self-reported state. */
export function statusFrame(state: AgentState, detail?: string): string {
  return encodeMessage({ type: "status", state, detail: detail ?? null });
}

/** `task_progress` of task `taskId`. */
export function taskProgressFrame(taskId: string, data: unknown): string {
  return encodeMessage({ type: "task_progress", id: taskId, data });
}

/** `task_result` with data. */
export function taskResultFrame(taskId: string, data: unknown): string {
  return encodeMessage({ type: "task_result", id: taskId, outcome: { ok: true, data } });
}

/** `task_result` with the agent's error. */
export function taskErrorFrame(taskId: string, code: string, message: string): string {
  return encodeMessage({ type: "task_result", id: taskId, outcome: { ok: false, error: { code, message } } });
}

/** A `batch` of 1 to 100 messages (none of them a batch). */
export function batchFrame(messages: readonly ClientMessage[]): string {
  if (messages.length === 0 || messages.length > MAX_BATCH) {
    throw new RangeError(`a batch carries 1 to ${MAX_BATCH} messages, not ${messages.length}`);
  }
  return JSON.stringify({ type: "batch", data: messages.map(toWire) });
}

// ---------------------------------------------------------------------------
// Server → client frames (server.rs)
// ---------------------------------------------------------------------------

const u64 = z.number().int().nonnegative();
/** Any JSON value; absent means null (serde's `#[serde(default)] Value`). */
const jsonValue = z
  .unknown()
  .optional()
  .transform((v) => (v === undefined ? null : v));

/** `welcome.data`. */
export const WelcomeSchema = z.object({
  session: z.string(),
  node: z.string(),
  protocol: u64,
  heartbeat_interval_ms: u64,
  heartbeat_timeout_ms: u64,
  max_message_bytes: u64,
  server_time: u64,
});
export type Welcome = z.output<typeof WelcomeSchema>;

/** `error` of an `error` frame or of a `result`. */
export const ErrorBodySchema = z.object({
  /** An ErrorCode for gateway errors; the agent's own code in a `result`. */
  code: z.string(),
  message: z.string().default(""),
  retryable: z.boolean().optional(),
  retry_after_ms: u64.optional(),
});
export type ErrorBody = z.output<typeof ErrorBodySchema>;

/** One entry of the `agent_status` array. */
export const AgentStatusEntrySchema = z.object({
  name: z.string(),
  status: z.string(),
  replicas: u64,
  commands: z.array(z.string()),
  in_flight: u64,
  processed: u64,
  failed: u64,
  avg_latency_ms: z.number(),
  last_seen: u64,
});
export type AgentStatusEntry = z.output<typeof AgentStatusEntrySchema>;

/** `system_metrics.data`. */
export const SystemMetricsSchema = z.object({
  node: z.string(),
  cpu_percent: z.number(),
  memory_bytes: u64,
  uptime_s: u64,
  connections: u64,
  agents: u64,
  messages_in_per_s: z.number(),
  messages_out_per_s: z.number(),
  /** Totals over every node sharing the gateway's Redis (absent on a single node). */
  cluster: z
    .object({
      nodes: u64,
      connections: u64,
      agents: u64,
      messages_in_per_s: z.number(),
      messages_out_per_s: z.number(),
    })
    .optional(),
});
export type SystemMetrics = z.output<typeof SystemMetricsSchema>;

/** `task.data`. */
export const TaskDataSchema = z.object({
  command: z.string(),
  payload: jsonValue,
  from: z.string(),
});
export type TaskData = z.output<typeof TaskDataSchema>;

export const WelcomeFrameSchema = z.object({ type: z.literal("welcome"), data: WelcomeSchema });
export type WelcomeFrame = z.output<typeof WelcomeFrameSchema>;

export const PongSchema = z.object({ type: z.literal("pong"), id: z.string(), ts: u64 });
export type Pong = z.output<typeof PongSchema>;

export const AckSchema = z.object({ type: z.literal("ack"), id: z.string(), data: jsonValue });
export type Ack = z.output<typeof AckSchema>;

export const ErrorFrameSchema = z.object({
  type: z.literal("error"),
  id: z.string().nullable().default(null),
  error: ErrorBodySchema,
  duplicate: z.boolean().optional(),
});
export type ErrorFrame = z.output<typeof ErrorFrameSchema>;

export const EventSchema = z.object({
  type: z.literal("event"),
  channel: z.string(),
  seq: u64,
  epoch: z.string(),
  ts: u64,
  /** The publisher's principal; absent for events made by the gateway. */
  from: z.string().optional(),
  data: jsonValue,
});
/** An `event` frame. */
export type Event = z.output<typeof EventSchema>;

export const AgentStatusFrameSchema = z.object({
  type: z.literal("agent_status"),
  id: z.string().nullable().default(null),
  data: z.array(AgentStatusEntrySchema),
});
export type AgentStatusFrame = z.output<typeof AgentStatusFrameSchema>;

export const SystemMetricsFrameSchema = z.object({
  type: z.literal("system_metrics"),
  id: z.string().nullable().default(null),
  data: SystemMetricsSchema,
});
export type SystemMetricsFrame = z.output<typeof SystemMetricsFrameSchema>;

export const ResultFrameSchema = z.object({
  type: z.literal("result"),
  id: z.string(),
  /** Present (possibly null) for a data result; absent for an agent error. */
  data: z.unknown().optional(),
  error: ErrorBodySchema.optional(),
  duplicate: z.boolean().optional(),
});
export type ResultFrame = z.output<typeof ResultFrameSchema>;

export const TaskFrameSchema = z.object({ type: z.literal("task"), id: z.string(), data: TaskDataSchema });
export type TaskFrame = z.output<typeof TaskFrameSchema>;

/** Any server → client frame. Unknown fields are dropped. */
export const ServerMessageSchema = z.discriminatedUnion("type", [
  WelcomeFrameSchema,
  PongSchema,
  AckSchema,
  ErrorFrameSchema,
  EventSchema,
  AgentStatusFrameSchema,
  SystemMetricsFrameSchema,
  ResultFrameSchema,
  TaskFrameSchema,
]);
export type ServerMessage = z.output<typeof ServerMessageSchema>;

export type ServerParseResult = { ok: true; message: ServerMessage } | { ok: false; error: string };

/** Decodes an already-parsed server frame. */
export function parseServerMessage(value: unknown): ServerParseResult {
  const r = ServerMessageSchema.safeParse(value);
  if (r.success) return { ok: true, message: r.data };
  return { ok: false, error: `not a server frame: ${z.prettifyError(r.error)}` };
}

/** Decodes one server frame's text. */
export function parseServerFrame(text: string): ServerParseResult {
  const decoded = decodeJson(text);
  if (!decoded.ok) return { ok: false, error: `server frame is not valid JSON: ${decoded.message}` };
  return parseServerMessage(decoded.value);
}
