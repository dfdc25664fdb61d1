// Zod schemas of every client → server message of wire protocol v1
// (`shared/protocol.md`), for validating a message before it is sent.
//
// The rules are those of the hand-written parser in `protocol.ts`
// (`parseMessage` / `parseFrameValue`, which mirror the Rust crate rule for
// rule); the golden vectors in `crates/protocol/tests/vectors/` check both.
//
// - One object schema per message type (`PingMessageSchema`, …,
//   `CommandMessageSchema`, `BatchMessageSchema`) describes its fields, so that
//   the inferred types and the error paths (`["data", "name"]`, …) are useful.
//   Unknown top-level fields are allowed and stripped from the output (the
//   gateway ignores them).
// - `ClientMessageSchema` (= `WireMessageSchema`): one message of any type as it
//   goes on the wire, `id` required wherever the protocol requires it.
// - `ClientFrameSchema`: one text frame, a single message or a batch.
// - `WebSocketMessageSchema`: one message as handed to the SDK's
//   `sendMessage` / `TetherClient.request`, which add an `id` when it is missing.
//
// The three top-level schemas pick the per-type schema by `type` (so that a
// failure reports that type's fields, not a union of every type's issues), and
// then add two checks that per-field zod schemas cannot express:
// 1. JSON as the gateway (serde_json) reads it: nesting at most 127 levels,
//    no lone UTF-16 surrogates, no NaN/±Infinity, only plain objects, arrays and
//    JSON scalars (a function, bigint, Date, Map or `undefined` in an array would
//    be dropped, changed or refused by `JSON.stringify`). `parseMessage` works on
//    already-decoded values and does not see these; `parseFrame` refuses them in
//    the text, so they are checked here on the value about to be stringified.
// 2. A cross-check with `parseMessage` / `parseFrameValue`: a message the
//    per-type schemas accept but the parser refuses is refused too, with the
//    parser's message. This never fires while the two agree (the tests check
//    the per-type schemas alone against the vectors); it keeps the verdicts
//    equal should the parser change first.
//
// Not checked: the size limit (`max_message_bytes`, 64 KiB by default) is the
// gateway's setting, announced in `welcome`; compare the encoded length with it.

import { z } from "zod";
import {
  hasLoneSurrogate,
  MAX_AGENT_NAME_LEN,
  MAX_BATCH,
  MAX_CHANNEL_LEN,
  MAX_CONCURRENCY,
  MAX_ID_LEN,
  MAX_JSON_DEPTH,
  MAX_REGISTER_COMMANDS,
  isValidAgentName,
  isValidChannel,
  isValidCommandType,
  isValidId,
  parseFrameValue,
  parseMessage,
  type AgentState,
  type ClientType,
} from "./protocol.js";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

type JsonObject = Record<string, unknown>;

function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A field the way the gateway reads it: own properties only. */
function own(v: JsonObject, key: string): unknown {
  return Object.hasOwn(v, key) ? v[key] : undefined;
}

/** At most 64 characters of `v`, for error messages. */
function shown(v: unknown): string {
  const s = typeof v === "string" ? v : String(v);
  const chars = Array.from(s);
  return chars.length > 64 ? `${chars.slice(0, 64).join("")}…` : s;
}

const ID_RULE = `\`id\` must be a string of 1 to ${MAX_ID_LEN} printable ASCII characters`;

// ---------------------------------------------------------------------------
// Field schemas
// ---------------------------------------------------------------------------

/** An `id`: 1..=128 printable ASCII characters (space included). */
export const MessageIdSchema = z.string({ error: ID_RULE }).refine(isValidId, { error: ID_RULE });

/** The `id` of a message type that requires one (`null` counts as missing, as on the wire). */
function requiredId(what: string) {
  return z
    .string({ error: (iss) => (iss.input === undefined || iss.input === null ? `${what} needs an \`id\`` : ID_RULE) })
    .refine(isValidId, { error: ID_RULE });
}

/** An `id` that may be absent or null (`status`: it is ignored, but must be valid when given). */
const OptionalIdSchema = MessageIdSchema.nullish();

/**
 * The `id` of a request handed to the SDK: absent (or `undefined`) means "let
 * the SDK choose one"; `null` is not replaced and therefore refused.
 */
const SdkIdSchema = z
  .string({ error: `${ID_RULE}; leave it out to let the SDK choose one` })
  .refine(isValidId, { error: ID_RULE })
  .optional();

const CHANNEL_RULE = `1 to ${MAX_CHANNEL_LEN} of A-Z a-z 0-9 _ : . - (or inbox:<principal>)`;

/** A channel name: `^[A-Za-z0-9_:.\-]{1,128}$`, or `inbox:<principal>` for any valid principal. */
export const ChannelNameSchema = z
  .string({ error: "missing `channel`: a string" })
  .refine(isValidChannel, { error: (iss) => `bad channel name \`${shown(iss.input)}\`: use ${CHANNEL_RULE}` });

const AGENT_NAME_RULE = `a valid agent name: 1 to ${MAX_AGENT_NAME_LEN} of A-Z a-z 0-9 _ : . -`;

/** An agent name: channel characters, at most 122 so that `agent:<name>` is a valid channel. */
export const AgentNameSchema = z
  .string({ error: `needs ${AGENT_NAME_RULE}` })
  .refine(isValidAgentName, { error: (iss) => `\`${shown(iss.input)}\` is not ${AGENT_NAME_RULE}` });

/** A command type: `^[a-z][a-z0-9_.:-]{0,63}$` and not a protocol type name. */
export const CommandTypeSchema = z.string({ error: "a command type must be a string" }).refine(isValidCommandType, {
  error: (iss) =>
    `\`${shown(iss.input)}\` is not a command type: ^[a-z][a-z0-9_.:-]{0,63}$, and not a protocol type name`,
});

const SEQ_RULE = "`since.seq` must be a non-negative integer";

/** `since` of a recovering `subscribe`: `{seq, epoch?}` (`epoch` absent or null: the current one). */
export const SinceSchema = z.object(
  {
    seq: z
      .number({ error: SEQ_RULE })
      .int({ error: SEQ_RULE })
      .min(0, { error: SEQ_RULE })
      .refine((n) => !Object.is(n, -0), { error: SEQ_RULE }),
    epoch: z.string({ error: "`since.epoch` must be a string" }).nullish(),
  },
  { error: "`since` must be an object {seq, epoch?}" },
);

const STATE_RULE = "`status` needs `data.status`: idle, busy or error";

/**
 * A replica's self-reported state. Like the gateway (serde), it also accepts
 * the externally tagged form of the unit variant (`{"idle": null}`); the output
 * is always the word.
 */
export const AgentStateSchema = z
  .union(
    [
      z.enum(["idle", "busy", "error"]),
      z.strictObject({ idle: z.null() }),
      z.strictObject({ busy: z.null() }),
      z.strictObject({ error: z.null() }),
    ],
    { error: STATE_RULE },
  )
  .transform((s): AgentState => {
    if (typeof s === "string") return s;
    if ("idle" in s) return "idle";
    if ("busy" in s) return "busy";
    return "error";
  });

const AGENT_ERROR_RULE = "`error` needs `code`: a non-empty string";

/**
 * The agent's error in a `task_result`. `message` is used when it is a string,
 * else (absent included) it reads as `""`, as on the gateway.
 */
export const AgentErrorSchema = z.object(
  {
    code: z.string({ error: AGENT_ERROR_RULE }).min(1, { error: AGENT_ERROR_RULE }),
    message: z
      .unknown()
      .optional()
      .transform((m) => (typeof m === "string" ? m : "")),
  },
  { error: AGENT_ERROR_RULE },
);

/** Any JSON payload; absent means null. */
const PayloadSchema = z.unknown().optional();

// ---------------------------------------------------------------------------
// One schema per client message type
// ---------------------------------------------------------------------------

/** `ping` → `pong`. */
export const PingMessageSchema = z.object({ type: z.literal("ping"), id: requiredId("`ping`") });

const AUTH_RULE = "`auth` needs `data.token`: a non-empty string";

/** `auth`: replaces the connection's token. */
export const AuthMessageSchema = z.object({
  type: z.literal("auth"),
  id: requiredId("`auth`"),
  data: z.object({ token: z.string({ error: AUTH_RULE }).min(1, { error: AUTH_RULE }) }, { error: AUTH_RULE }),
});

/** `subscribe`, recovering from `since` when given. */
export const SubscribeMessageSchema = z.object({
  type: z.literal("subscribe"),
  id: requiredId("`subscribe`"),
  channel: ChannelNameSchema,
  since: SinceSchema.nullish(),
});

/** `unsubscribe`. */
export const UnsubscribeMessageSchema = z.object({
  type: z.literal("unsubscribe"),
  id: requiredId("`unsubscribe`"),
  channel: ChannelNameSchema,
});

/** `publish`: `data` is any JSON value (absent means null). */
export const PublishMessageSchema = z.object({
  type: z.literal("publish"),
  id: requiredId("`publish`"),
  channel: ChannelNameSchema,
  data: PayloadSchema,
});

/** `request_agent_status` → `agent_status`. */
export const RequestAgentStatusMessageSchema = z.object({
  type: z.literal("request_agent_status"),
  id: requiredId("`request_agent_status`"),
});

/** `request_system_metrics` → `system_metrics`. */
export const RequestSystemMetricsMessageSchema = z.object({
  type: z.literal("request_system_metrics"),
  id: requiredId("`request_system_metrics`"),
});

const AGENT_DATA_RULE = `needs \`data.name\`: ${AGENT_NAME_RULE}`;

/** `subscribe_agent` (= `subscribe` to `agent:<name>`). */
export const SubscribeAgentMessageSchema = z.object({
  type: z.literal("subscribe_agent"),
  id: requiredId("`subscribe_agent`"),
  data: z.object({ name: AgentNameSchema }, { error: AGENT_DATA_RULE }),
});

/** `unsubscribe_agent`. */
export const UnsubscribeAgentMessageSchema = z.object({
  type: z.literal("unsubscribe_agent"),
  id: requiredId("`unsubscribe_agent`"),
  data: z.object({ name: AgentNameSchema }, { error: AGENT_DATA_RULE }),
});

const COMMANDS_RULE = `\`register\` needs \`data.commands\`: an array of 1 to ${MAX_REGISTER_COMMANDS} command types`;
const CONCURRENCY_RULE = `\`data.concurrency\` must be an integer from 1 to ${MAX_CONCURRENCY}`;

/** `register` as a replica of agent `data.name` (`concurrency` absent or null means 1). */
export const RegisterMessageSchema = z.object({
  type: z.literal("register"),
  id: requiredId("`register`"),
  data: z.object(
    {
      name: AgentNameSchema,
      commands: z
        .array(CommandTypeSchema, { error: COMMANDS_RULE })
        .min(1, { error: COMMANDS_RULE })
        .max(MAX_REGISTER_COMMANDS, { error: COMMANDS_RULE }),
      concurrency: z
        .number({ error: CONCURRENCY_RULE })
        .int({ error: CONCURRENCY_RULE })
        .min(1, { error: CONCURRENCY_RULE })
        .max(MAX_CONCURRENCY, { error: CONCURRENCY_RULE })
        .nullish(),
    },
    { error: "`register` needs `data`: {name, commands, concurrency?}" },
  ),
});

/** `status`: the replica's self-reported state. Needs no `id`; one that is given must be valid. */
export const StatusMessageSchema = z.object({
  type: z.literal("status"),
  id: OptionalIdSchema,
  data: z.object(
    {
      status: AgentStateSchema,
      detail: z.string({ error: "`data.detail` must be a string" }).nullish(),
    },
    { error: STATE_RULE },
  ),
});

/** `task_progress` of the task whose id is `id`. */
export const TaskProgressMessageSchema = z.object({
  type: z.literal("task_progress"),
  id: requiredId("`task_progress` (the task's id)"),
  data: PayloadSchema,
});

/**
 * `task_result` of the task whose id is `id`: its `data`, or, when `error` is
 * present and not null, the agent's error (then `data` is ignored).
 */
export const TaskResultMessageSchema = z.object({
  type: z.literal("task_result"),
  id: requiredId("`task_result` (the task's id)"),
  data: PayloadSchema,
  error: AgentErrorSchema.nullish(),
});

/** `task_result` in its error form (`error` required); a narrowing of `TaskResultMessageSchema`. */
export const TaskErrorMessageSchema = TaskResultMessageSchema.extend({ error: AgentErrorSchema });

/** A command: any other `type` that is a valid command type, e.g. `process_receipt`; routed to an agent. */
export const CommandMessageSchema = z.object({
  type: CommandTypeSchema,
  id: requiredId("a command"),
  data: PayloadSchema,
});

const BATCH_RULE = `batch needs \`data\`: an array of 1 to ${MAX_BATCH} messages`;

/**
 * One entry of a batch, as the gateway judges the batch as a whole: anything
 * but a nested batch. Each entry is then valid or invalid on its own (an
 * invalid one gets its own `bad_request`); check entries with `ClientMessageSchema`.
 */
export const BatchEntrySchema = z
  .unknown()
  .refine((m) => !(isObject(m) && own(m, "type") === "batch"), { error: "batches may not be nested" });

/** `batch`: 1 to 100 messages, none of them a batch. A batch needs no `id` (it is ignored). */
export const BatchMessageSchema = z.object({
  type: z.literal("batch"),
  data: z
    .array(BatchEntrySchema, { error: BATCH_RULE })
    .min(1, { error: BATCH_RULE })
    .max(MAX_BATCH, { error: BATCH_RULE }),
});

export type PingMessage = z.output<typeof PingMessageSchema>;
export type AuthMessage = z.output<typeof AuthMessageSchema>;
export type SubscribeMessage = z.output<typeof SubscribeMessageSchema>;
export type UnsubscribeMessage = z.output<typeof UnsubscribeMessageSchema>;
export type PublishMessage = z.output<typeof PublishMessageSchema>;
export type RequestAgentStatusMessage = z.output<typeof RequestAgentStatusMessageSchema>;
export type RequestSystemMetricsMessage = z.output<typeof RequestSystemMetricsMessageSchema>;
export type SubscribeAgentMessage = z.output<typeof SubscribeAgentMessageSchema>;
export type UnsubscribeAgentMessage = z.output<typeof UnsubscribeAgentMessageSchema>;
export type RegisterMessage = z.output<typeof RegisterMessageSchema>;
export type StatusMessage = z.output<typeof StatusMessageSchema>;
export type TaskProgressMessage = z.output<typeof TaskProgressMessageSchema>;
export type TaskResultMessage = z.output<typeof TaskResultMessageSchema>;
export type TaskErrorMessage = z.output<typeof TaskErrorMessageSchema>;
export type CommandMessage = z.output<typeof CommandMessageSchema>;
export type BatchMessage = z.output<typeof BatchMessageSchema>;

// ---------------------------------------------------------------------------
// Dispatch by `type`
// ---------------------------------------------------------------------------

/** The schema of each protocol type name of a single message. */
const MESSAGE_SCHEMAS = {
  ping: PingMessageSchema,
  auth: AuthMessageSchema,
  subscribe: SubscribeMessageSchema,
  unsubscribe: UnsubscribeMessageSchema,
  publish: PublishMessageSchema,
  request_agent_status: RequestAgentStatusMessageSchema,
  request_system_metrics: RequestSystemMetricsMessageSchema,
  subscribe_agent: SubscribeAgentMessageSchema,
  unsubscribe_agent: UnsubscribeAgentMessageSchema,
  register: RegisterMessageSchema,
  status: StatusMessageSchema,
  task_progress: TaskProgressMessageSchema,
  task_result: TaskResultMessageSchema,
} as const satisfies Record<Exclude<ClientType, "batch">, z.ZodType>;

type MessageSchemas = typeof MESSAGE_SCHEMAS;
type MessageSchema = MessageSchemas[keyof MessageSchemas] | typeof CommandMessageSchema;

/**
 * One client message as it goes on the wire (the output of `ClientMessageSchema`).
 * A command's `type` is any string, so `switch (m.type)` does not leave commands
 * out of a `case`; test `isProtocolMessage(m)` first for exact narrowing.
 */
export type WireMessage = z.output<MessageSchema>;
/** A `WireMessage` of one of the protocol's own types (not a command). */
export type ProtocolMessage = z.output<MessageSchemas[keyof MessageSchemas]>;
/** What `ClientMessageSchema` accepts, as a type. */
export type WireMessageInput = z.input<MessageSchema>;
/** One client text frame (the output of `ClientFrameSchema`). */
export type WireFrame = WireMessage | BatchMessage;
/** What `ClientFrameSchema` accepts, as a type. */
export type WireFrameInput = WireMessageInput | z.input<typeof BatchMessageSchema>;

/**
 * The per-type schema a frame of type `type` is checked against: a protocol
 * type's own, `CommandMessageSchema` for a valid command type,
 * `BatchMessageSchema` for `batch`; `undefined` for any other type (which the
 * gateway answers with `bad_request`). It checks the fields only (see
 * `ClientMessageSchema` for the rest).
 */
export function messageSchemaFor(type: string): MessageSchema | typeof BatchMessageSchema | undefined {
  return type === "batch" ? BatchMessageSchema : singleMessageSchemaFor(type);
}

function singleMessageSchemaFor(type: string): MessageSchema | undefined {
  if (Object.hasOwn(MESSAGE_SCHEMAS, type)) return MESSAGE_SCHEMAS[type as keyof MessageSchemas];
  return isValidCommandType(type) ? CommandMessageSchema : undefined;
}

/**
 * Whether `m` is of one of the protocol's own types, not a command. Narrows
 * `m` to `ProtocolMessage` (where `switch (m.type)` then narrows exactly), and
 * to `CommandMessage` when false.
 */
export function isProtocolMessage(m: WireMessage): m is ProtocolMessage {
  return Object.hasOwn(MESSAGE_SCHEMAS, m.type);
}

/** The types whose `id` the SDK chooses when it is missing (requests answered by id). */
const SDK_ID_TYPES: ReadonlySet<string> = new Set([
  "ping",
  "auth",
  "subscribe",
  "unsubscribe",
  "publish",
  "request_agent_status",
  "request_system_metrics",
  "subscribe_agent",
  "unsubscribe_agent",
  "register",
]);

const OUTGOING_SCHEMAS = {
  ping: PingMessageSchema.extend({ id: SdkIdSchema }),
  auth: AuthMessageSchema.extend({ id: SdkIdSchema }),
  subscribe: SubscribeMessageSchema.extend({ id: SdkIdSchema }),
  unsubscribe: UnsubscribeMessageSchema.extend({ id: SdkIdSchema }),
  publish: PublishMessageSchema.extend({ id: SdkIdSchema }),
  request_agent_status: RequestAgentStatusMessageSchema.extend({ id: SdkIdSchema }),
  request_system_metrics: RequestSystemMetricsMessageSchema.extend({ id: SdkIdSchema }),
  subscribe_agent: SubscribeAgentMessageSchema.extend({ id: SdkIdSchema }),
  unsubscribe_agent: UnsubscribeAgentMessageSchema.extend({ id: SdkIdSchema }),
  register: RegisterMessageSchema.extend({ id: SdkIdSchema }),
  // No id, or the task's id: never chosen by the SDK.
  status: StatusMessageSchema,
  task_progress: TaskProgressMessageSchema,
  task_result: TaskResultMessageSchema,
} as const satisfies Record<Exclude<ClientType, "batch">, z.ZodType>;

const OutgoingCommandSchema = CommandMessageSchema.extend({ id: SdkIdSchema });

type OutgoingSchemas = typeof OUTGOING_SCHEMAS;
type OutgoingSchema = OutgoingSchemas[keyof OutgoingSchemas] | typeof OutgoingCommandSchema;

/** One message as handed to `sendMessage` (the output of `WebSocketMessageSchema`). */
export type WebSocketMessage = z.output<OutgoingSchema>;
/** What `WebSocketMessageSchema` accepts, as a type. */
export type WebSocketMessageInput = z.input<OutgoingSchema>;

interface Problem {
  path: PropertyKey[];
  message: string;
}

const MAX_JSON_PROBLEMS = 10;

/**
 * What keeps `root` from reaching the gateway as the same JSON value: nesting
 * deeper than serde_json's 127 levels, lone surrogates, NaN/±Infinity, and
 * values `JSON.stringify` drops, changes or refuses.
 */
function jsonProblems(root: JsonObject): Problem[] {
  const problems: Problem[] = [];
  const ancestors = new Set<object>();
  const walk = (v: unknown, path: PropertyKey[], depth: number): void => {
    if (problems.length >= MAX_JSON_PROBLEMS) return;
    const problem = (message: string): void => {
      problems.push({ path, message });
    };
    switch (typeof v) {
      case "boolean":
        return;
      case "string":
        if (hasLoneSurrogate(v)) problem("a string with a lone UTF-16 surrogate is not valid JSON for the gateway");
        return;
      case "number":
        if (!Number.isFinite(v)) problem(`${String(v)} is not a JSON number`);
        return;
      case "undefined":
      case "function":
      case "symbol":
      case "bigint":
        problem(`a ${typeof v} is not a JSON value`);
        return;
    }
    if (typeof v !== "object" || v === null) return;
    if (ancestors.has(v)) {
      problem("a circular reference cannot be sent as JSON");
      return;
    }
    if (depth + 1 > MAX_JSON_DEPTH) {
      problem(`JSON nested deeper than ${MAX_JSON_DEPTH} levels (the gateway's limit)`);
      return;
    }
    ancestors.add(v);
    if (Array.isArray(v)) {
      // Index loop: a hole in a sparse array is `undefined` too.
      for (let i = 0; i < v.length; i++) walk((v as unknown[])[i], [...path, i], depth + 1);
    } else {
      const proto: unknown = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) {
        const name = (v as { constructor?: { name?: unknown } }).constructor?.name;
        problem(`${typeof name === "string" && name !== "" ? `a ${name}` : "this object"} is not a plain JSON object`);
      } else {
        for (const [k, item] of Object.entries(v)) {
          if (hasLoneSurrogate(k)) problems.push({ path: [...path, k], message: "a key with a lone UTF-16 surrogate" });
          // JSON.stringify leaves out a property whose value is undefined, as if absent.
          else if (item !== undefined) walk(item, [...path, k], depth + 1);
        }
      }
    }
    ancestors.delete(v);
  };
  walk(root, [], 0);
  return problems;
}

interface DispatchOptions {
  /** The per-type schema for `type`, or why that type is refused. */
  pick: (type: string) => z.ZodType | string;
  /** The hand-written parser's objection to the message, or null. */
  parser: (value: JsonObject) => string | null;
}

/**
 * A schema that reads `type`, checks the message with that type's schema (so
 * that issues are about its fields), then the JSON rules and the parser.
 */
function dispatcher<Out, In>({ pick, parser }: DispatchOptions): z.ZodType<Out, In> {
  const schema = z.unknown().transform((value, ctx): Out => {
    if (!isObject(value)) {
      ctx.addIssue({ code: "custom", message: "a message must be a JSON object", input: value });
      return z.NEVER;
    }
    const before = ctx.issues.length;
    const rawType = own(value, "type");
    let chosen: z.ZodType | undefined;
    if (rawType === undefined) ctx.addIssue({ code: "custom", path: ["type"], message: "missing `type`", input: value });
    else if (typeof rawType !== "string") {
      ctx.addIssue({ code: "custom", path: ["type"], message: "`type` must be a string", input: rawType });
    } else {
      const picked = pick(rawType);
      if (typeof picked === "string") ctx.addIssue({ code: "custom", path: ["type"], message: picked, input: rawType });
      else chosen = picked;
    }
    let out: unknown;
    if (chosen === undefined) {
      // No fields to check without a type; a bad id is still worth reporting.
      const id = own(value, "id");
      if (id !== undefined && id !== null && !(typeof id === "string" && isValidId(id))) {
        ctx.addIssue({ code: "custom", path: ["id"], message: ID_RULE, input: id });
      }
    } else {
      const r = chosen.safeParse(value);
      if (r.success) out = r.data;
      else for (const issue of r.error.issues) ctx.addIssue({ ...issue });
    }
    for (const p of jsonProblems(value)) ctx.addIssue({ code: "custom", path: p.path, message: p.message, input: value });
    if (ctx.issues.length === before) {
      const objection = parser(value);
      if (objection !== null) {
        ctx.addIssue({ code: "custom", message: `the gateway's parser refuses it: ${objection}`, input: value });
      }
    }
    return ctx.issues.length === before ? (out as Out) : z.NEVER;
  });
  // The transform accepts any value; its input type is declared as what it accepts.
  return schema as unknown as z.ZodType<Out, In>;
}

function pickMessage(type: string): MessageSchema | string {
  if (type === "batch") return "batches may not be nested: a batch is a frame, not a message";
  return singleMessageSchemaFor(type) ?? `unknown type \`${shown(type)}\``;
}

function parserObjection(r: { ok: true } | { ok: false; error: { message: string } }): string | null {
  return r.ok ? null : r.error.message;
}

// ---------------------------------------------------------------------------
// Top-level schemas
// ---------------------------------------------------------------------------

/**
 * One client → server message of any type, exactly as the gateway judges a
 * single message (a non-batch frame, a batch's entry, an HTTP item): `id`
 * required wherever the protocol requires it; a batch is refused (it is a
 * frame, see `ClientFrameSchema`). A batch entry is judged here as a message of
 * its own, so its JSON nesting is counted from the entry.
 */
export const ClientMessageSchema = dispatcher<WireMessage, WireMessageInput>({
  pick: pickMessage,
  parser: (v) => parserObjection(parseMessage(v)),
});

/**
 * The strict form of `WebSocketMessageSchema`: one message exactly as it must
 * go on the wire, `id` included wherever the protocol requires it. The same
 * schema as `ClientMessageSchema`.
 */
export const WireMessageSchema = ClientMessageSchema;

/**
 * One client text frame as the gateway judges it: a single message
 * (`ClientMessageSchema`) or a `batch` of 1 to 100 entries, none of them a
 * batch. The batch is valid as a whole even when some entries are not (each of
 * those gets its own `bad_request`); check entries with `ClientMessageSchema`.
 */
export const ClientFrameSchema = dispatcher<WireFrame, WireFrameInput>({
  pick: (type) => messageSchemaFor(type) ?? `unknown type \`${shown(type)}\``,
  parser: (v) => parserObjection(parseFrameValue(v)),
});

/**
 * The schema to validate an outgoing message with before
 * `sendMessage(message)` (React) / `client.request(message)`:
 *
 * ```ts
 * const result = WebSocketMessageSchema.safeParse({ type: "process_receipt", data: { imageUrl } });
 * if (!result.success) throw new Error(`Invalid message: ${z.prettifyError(result.error)}`);
 * ```
 *
 * It accepts one client message (no `batch`) by the wire's rules, with one
 * difference: `id` may be left out (or `undefined`) on the requests answered
 * by id — `ping`, `auth`, `subscribe`, `unsubscribe`, `publish`,
 * `request_agent_status`, `request_system_metrics`, `subscribe_agent`,
 * `unsubscribe_agent`, `register` and commands — because the SDK adds a fresh
 * one when it is missing (the wire itself requires it: see
 * `WireMessageSchema`). An `id` that is given must be valid, and `null` is
 * refused (the SDK does not replace it). `task_progress` and `task_result`
 * still need theirs: it is the task's id, which only the agent knows. `status`
 * needs none. (`sendMessage` waits for a reply by id, so it refuses `status`,
 * `task_progress` and `task_result`, which get none; they are valid messages
 * all the same.)
 */
export const WebSocketMessageSchema = dispatcher<WebSocketMessage, WebSocketMessageInput>({
  pick: (type) => {
    if (type === "batch") return "a batch is not one message: send its messages one by one";
    if (Object.hasOwn(OUTGOING_SCHEMAS, type)) return OUTGOING_SCHEMAS[type as keyof OutgoingSchemas];
    return isValidCommandType(type) ? OutgoingCommandSchema : `unknown type \`${shown(type)}\``;
  },
  parser: (v) => {
    const type = own(v, "type");
    const sdkChoosesId = own(v, "id") === undefined && (SDK_ID_TYPES.has(String(type)) || isValidCommandType(String(type)));
    // What the SDK would send: the message with an id of its choosing.
    return parserObjection(parseMessage(sdkChoosesId ? { ...v, id: "sdk-chosen-id" } : v));
  },
});
