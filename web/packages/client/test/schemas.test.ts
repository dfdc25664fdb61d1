// The zod schemas of client messages (src/schemas.ts) against the golden
// vectors (crates/protocol/tests/vectors/, see its README.md) and against the
// hand-written parser they mirror, plus the guide's examples and a few
// targeted rejections.

import { describe, expect, expectTypeOf, it } from "vitest";
import { z } from "zod";
import { MAX_JSON_DEPTH, parseFrame, parseMessage } from "../src/protocol.js";
import {
  ClientFrameSchema,
  ClientMessageSchema,
  CommandMessageSchema,
  RegisterMessageSchema,
  StatusMessageSchema,
  SubscribeMessageSchema,
  TaskErrorMessageSchema,
  WebSocketMessageSchema,
  WireMessageSchema,
  isProtocolMessage,
  messageSchemaFor,
  type CommandMessage,
  type WebSocketMessageInput,
  type WireFrame,
  type WireMessage,
} from "../src/schemas.js";
import { type JsonObject, invalidCases, isJsonObject, jsonEq, validCases } from "./support/vectors.js";

/** The value of a frame's text, or undefined when JSON.parse refuses it. */
function decode(text: string): { value: unknown } | undefined {
  try {
    return { value: JSON.parse(text) as unknown };
  } catch {
    return undefined;
  }
}

function issuesOf(r: { success: boolean; error?: z.ZodError }): string {
  return r.error === undefined ? "" : z.prettifyError(r.error);
}

/** The wire type of a value, when it has a string one. */
function typeOf(v: unknown): string | undefined {
  const t = isJsonObject(v) ? v["type"] : undefined;
  return typeof t === "string" ? t : undefined;
}

/** The per-type schema alone (no JSON rules, no cross-check with the parser). */
function fieldsVerdict(v: unknown): boolean | undefined {
  const t = typeOf(v);
  const schema = t === undefined ? undefined : messageSchemaFor(t);
  return schema?.safeParse(v).success;
}

/** What the SDK would put on the wire for a message handed to sendMessage. */
function withSdkId(v: unknown): unknown {
  if (!isJsonObject(v) || v["id"] !== undefined) return v;
  const t = typeOf(v);
  if (t === undefined || ["status", "task_progress", "task_result", "batch"].includes(t)) return v;
  return { ...v, id: "sdk-1" };
}

/** A parsed WireMessage in the vectors' `expect` form (README). */
function normalize(msg: WireMessage): Record<string, unknown> {
  if (!isProtocolMessage(msg)) {
    expectTypeOf(msg).toEqualTypeOf<CommandMessage>();
    return { type: msg.type, id: msg.id, command: true, data: msg.data ?? null };
  }
  const m = msg;
  const out: Record<string, unknown> = { type: m.type, id: m.id ?? null, command: false };
  switch (m.type) {
    case "auth":
      out["token"] = m.data.token;
      break;
    case "subscribe":
      out["channel"] = m.channel;
      out["since"] = m.since == null ? null : { seq: m.since.seq, epoch: m.since.epoch ?? null };
      break;
    case "unsubscribe":
      out["channel"] = m.channel;
      break;
    case "publish":
      out["channel"] = m.channel;
      out["data"] = m.data ?? null;
      break;
    case "subscribe_agent":
    case "unsubscribe_agent":
      out["name"] = m.data.name;
      break;
    case "register":
      out["name"] = m.data.name;
      out["commands"] = m.data.commands;
      out["concurrency"] = m.data.concurrency ?? 1;
      break;
    case "status":
      out["status"] = m.data.status;
      out["detail"] = m.data.detail ?? null;
      break;
    case "task_progress":
      out["data"] = m.data ?? null;
      break;
    case "task_result":
      if (m.error == null) out["data"] = m.data ?? null;
      else out["agent_error"] = m.error;
      break;
    case "ping":
    case "request_agent_status":
    case "request_system_metrics":
      break;
    default:
      expectTypeOf(m).toBeNever();
  }
  return out;
}

/** Differences between a parsed message and its `expect` object. */
function mismatches(m: WireMessage, want: JsonObject): string[] {
  const got = normalize(m);
  const failures: string[] = [];
  if (got["command"] !== (want["command"] ?? false)) failures.push(`command: got ${String(got["command"])}`);
  for (const [key, value] of Object.entries(want)) {
    if (key === "command") continue;
    if (!Object.hasOwn(got, key)) failures.push(`\`${key}\` is not a field of the parsed ${m.type}`);
    else if (!jsonEq(got[key], value)) failures.push(`\`${key}\`: expected ${JSON.stringify(value)}, got ${JSON.stringify(got[key])}`);
  }
  return failures;
}

describe("client-valid.json", () => {
  it.each(validCases)("$name", (c) => {
    const decoded = decode(c.frame);
    expect(decoded, "a valid frame is valid JSON").toBeDefined();
    const value = decoded?.value;
    const frame = ClientFrameSchema.safeParse(value);
    expect(frame.success, `ClientFrameSchema: ${issuesOf(frame)}`).toBe(true);
    expect(fieldsVerdict(value), "the per-type schema alone").toBe(true);

    const wantBatch = c.expect["batch"];
    if (Array.isArray(wantBatch)) {
      expect(frame.data?.type).toBe("batch");
      expect(ClientMessageSchema.safeParse(value).success, "a batch is not a single message").toBe(false);
      const entries = isJsonObject(value) && Array.isArray(value["data"]) ? value["data"] : [];
      expect(entries.length).toBe(wantBatch.length);
      entries.forEach((entry, i) => {
        const want = wantBatch[i];
        const r = ClientMessageSchema.safeParse(entry);
        const wantValid = isJsonObject(want) && want["error"] === undefined;
        expect(r.success, `batch entry ${i}: ${issuesOf(r)}`).toBe(wantValid);
        expect(r.success, `batch entry ${i}: parseMessage agrees`).toBe(parseMessage(entry).ok);
        if (fieldsVerdict(entry) !== undefined) expect(fieldsVerdict(entry), `batch entry ${i}, fields only`).toBe(wantValid);
        if (r.success && isJsonObject(want)) expect(mismatches(r.data, want), `batch entry ${i}`).toEqual([]);
      });
      return;
    }

    for (const [name, schema] of [
      ["ClientMessageSchema", ClientMessageSchema],
      ["WireMessageSchema", WireMessageSchema],
      ["WebSocketMessageSchema", WebSocketMessageSchema],
    ] as const) {
      const r = schema.safeParse(value);
      expect(r.success, `${name}: ${issuesOf(r)}`).toBe(true);
    }
    const r = ClientMessageSchema.safeParse(value);
    if (r.success) expect(mismatches(r.data, c.expect)).toEqual([]);
  });
});

const jsonInvalid = invalidCases.filter((c) => decode(c.frame) !== undefined);

describe("client-invalid.json", () => {
  it("leaves out only frames that are not JSON", () => {
    const skipped = invalidCases.filter((c) => decode(c.frame) === undefined).map((c) => c.name);
    expect(skipped).toEqual(["not JSON", "empty frame", "truncated JSON", "trailing garbage after the object"]);
    expect(jsonInvalid.length).toBe(invalidCases.length - 4);
  });

  it.each(jsonInvalid)("$name", (c) => {
    const value = decode(c.frame)?.value;
    const frame = ClientFrameSchema.safeParse(value);
    expect(frame.success, "ClientFrameSchema accepted it").toBe(false);
    expect(frame.error?.issues.length ?? 0).toBeGreaterThan(0);
    expect(ClientMessageSchema.safeParse(value).success, "ClientMessageSchema accepted it").toBe(false);
    // The per-type schema alone refuses it too (when the type picks one).
    const fields = fieldsVerdict(value);
    if (fields !== undefined) expect(fields, "the per-type schema alone accepted it").toBe(false);
    // WebSocketMessageSchema: refused unless the SDK's id is all it lacks.
    const ws = WebSocketMessageSchema.safeParse(value);
    const sdkValid = typeOf(value) !== "batch" && parseMessage(withSdkId(value)).ok;
    expect(ws.success, `WebSocketMessageSchema: ${issuesOf(ws)}`).toBe(sdkValid);
  });

  it("WebSocketMessageSchema accepts exactly the missing-id requests", () => {
    const accepted = jsonInvalid.filter((c) => WebSocketMessageSchema.safeParse(decode(c.frame)?.value).success);
    expect(accepted.map((c) => c.name).sort()).toEqual(
      [
        "missing id on ping",
        "missing id on auth",
        "missing id on subscribe",
        "missing id on unsubscribe",
        "missing id on publish",
        "missing id on request_agent_status",
        "missing id on request_system_metrics",
        "missing id on subscribe_agent",
        "missing id on unsubscribe_agent",
        "missing id on register",
        "missing id on process_receipt",
      ].sort(),
    );
  });
});

describe("the guide's examples (WebSocketMessageSchema)", () => {
  const examples: WebSocketMessageInput[] = [
    { type: "process_receipt", data: { imageUrl: "https://example.com/receipt.png" } },
    { type: "test" },
    { type: "urgent" },
    { type: "notification" },
  ];

  it.each(examples)("$type passes without an id", (m) => {
    const r = WebSocketMessageSchema.safeParse(m);
    expect(r.success, issuesOf(r)).toBe(true);
    expect(r.data).toEqual(m);
  });

  it.each(examples)("$type needs an id on the wire", (m) => {
    const r = WireMessageSchema.safeParse(m);
    expect(r.success).toBe(false);
    expect(r.error?.issues.map((i) => i.path)).toEqual([["id"]]);
    expect(r.error?.issues[0]?.message).toBe("a command needs an `id`");
    expect(WireMessageSchema.safeParse({ ...m, id: "c-1" }).success).toBe(true);
  });

  it("a command parses as CommandMessageSchema, data included", () => {
    const r = CommandMessageSchema.safeParse({ type: "process_receipt", id: "9", data: { imageUrl: "x" } });
    expect(r.data).toEqual({ type: "process_receipt", id: "9", data: { imageUrl: "x" } });
  });
});

/** The issues of a refused value as [path, message] pairs. */
function refusal(schema: z.ZodType, value: unknown): [string, string][] {
  const r = schema.safeParse(value);
  expect(r.success, "expected a refusal").toBe(false);
  return (r.error?.issues ?? []).map((i) => [i.path.map(String).join("."), i.message]);
}

describe("targeted rejections", () => {
  it("a bad channel is reported at `channel`", () => {
    expect(refusal(ClientMessageSchema, { type: "subscribe", id: "1", channel: "has space" })).toEqual([
      ["channel", "bad channel name `has space`: use 1 to 128 of A-Z a-z 0-9 _ : . - (or inbox:<principal>)"],
    ]);
    expect(refusal(SubscribeMessageSchema, { type: "subscribe", id: "1" })).toEqual([["channel", "missing `channel`: a string"]]);
  });

  it("since.seq must be a non-negative integer", () => {
    for (const seq of [-1, 4.5, "41", -0]) {
      expect(refusal(ClientMessageSchema, { type: "subscribe", id: "1", channel: "o", since: { seq } })).toEqual([
        ["since.seq", "`since.seq` must be a non-negative integer"],
      ]);
    }
  });

  it("a bad command type in register is reported at its index", () => {
    const issues = refusal(ClientMessageSchema, {
      type: "register",
      id: "r1",
      data: { name: "a", commands: ["process_receipt", "Process", "event"], concurrency: 0 },
    });
    expect(issues.map(([path]) => path)).toEqual(["data.commands.1", "data.commands.2", "data.concurrency"]);
    expect(issues[0]?.[1]).toContain("is not a command type");
  });

  it("a bad status word, a bad id and a bad type", () => {
    expect(refusal(ClientMessageSchema, { type: "status", data: { status: "sleeping" } })).toEqual([
      ["data.status", "`status` needs `data.status`: idle, busy or error"],
    ]);
    expect(refusal(ClientMessageSchema, { type: "ping", id: "a\tb" })).toEqual([
      ["id", "`id` must be a string of 1 to 128 printable ASCII characters"],
    ]);
    expect(refusal(ClientMessageSchema, { type: "Nope", id: 7 })).toEqual([
      ["type", "unknown type `Nope`"],
      ["id", "`id` must be a string of 1 to 128 printable ASCII characters"],
    ]);
    expect(refusal(ClientMessageSchema, { type: "welcome", id: "w" })).toEqual([["type", "unknown type `welcome`"]]);
    expect(refusal(ClientMessageSchema, [])).toEqual([["", "a message must be a JSON object"]]);
  });

  it("task_result's error needs a code; subscribe_agent needs a name", () => {
    expect(refusal(ClientMessageSchema, { type: "task_result", id: "t-1", error: { message: "boom" } })).toEqual([
      ["error.code", "`error` needs `code`: a non-empty string"],
    ]);
    expect(refusal(ClientMessageSchema, { type: "subscribe_agent", id: "g", data: { name: "n".repeat(123) } })).toEqual([
      ["data.name", `\`${"n".repeat(64)}…\` is not a valid agent name: 1 to 122 of A-Z a-z 0-9 _ : . -`],
    ]);
  });

  it("batches: bounds at `data`, a nested batch at its index", () => {
    expect(refusal(ClientFrameSchema, { type: "batch", data: [] })).toEqual([
      ["data", "batch needs `data`: an array of 1 to 100 messages"],
    ]);
    expect(refusal(ClientFrameSchema, { type: "batch", data: [{ type: "ping", id: "1" }, { type: "batch", data: [] }] })).toEqual([
      ["data.1", "batches may not be nested"],
    ]);
    expect(refusal(WebSocketMessageSchema, { type: "batch", data: [{ type: "ping" }] })).toEqual([
      ["type", "a batch is not one message: send its messages one by one"],
    ]);
  });

  it("WebSocketMessageSchema: a given id must be valid; null is not replaced; task ids are required", () => {
    expect(refusal(WebSocketMessageSchema, { type: "ping", id: null }).map(([p]) => p)).toEqual(["id"]);
    expect(refusal(WebSocketMessageSchema, { type: "process_receipt", id: "" }).map(([p]) => p)).toEqual(["id"]);
    expect(refusal(WebSocketMessageSchema, { type: "task_result", data: {} })).toEqual([
      ["id", "`task_result` (the task's id) needs an `id`"],
    ]);
    expect(WebSocketMessageSchema.safeParse({ type: "ping", id: undefined }).success).toBe(true);
    expect(WebSocketMessageSchema.safeParse({ type: "status", data: { status: "idle" } }).success).toBe(true);
  });
});

describe("JSON as the gateway reads it", () => {
  /** `{"type":"publish",…,"data":[[…[]…]]}` with the whole frame nested `levels` deep. */
  function nested(levels: number): string {
    const inner = levels - 1; // the frame object itself is one level
    return `{"type":"publish","id":"p","channel":"c","data":${"[".repeat(inner)}${"]".repeat(inner)}}`;
  }

  it("nesting: 127 levels pass, 128 do not, as in parseFrame", () => {
    for (const levels of [MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1]) {
      const text = nested(levels);
      const value: unknown = JSON.parse(text);
      const ok = levels <= MAX_JSON_DEPTH;
      expect(parseFrame(text).ok).toBe(ok);
      expect(ClientFrameSchema.safeParse(value).success, `${levels} levels`).toBe(ok);
      expect(ClientMessageSchema.safeParse(value).success, `${levels} levels`).toBe(ok);
    }
  });

  it("lone surrogates are refused, as in parseFrame; pairs pass", () => {
    const lone = '{"type":"publish","id":"p","channel":"c","data":{"s":"\\ud800"}}';
    expect(parseFrame(lone).ok).toBe(false);
    expect(refusal(ClientFrameSchema, JSON.parse(lone))).toEqual([
      ["data.s", "a string with a lone UTF-16 surrogate is not valid JSON for the gateway"],
    ]);
    const pair = '{"type":"publish","id":"p","channel":"c","data":{"s":"\\ud83d\\ude00"}}';
    expect(parseFrame(pair).ok).toBe(true);
    expect(ClientFrameSchema.safeParse(JSON.parse(pair)).success).toBe(true);
  });

  it("values JSON.stringify would drop, change or refuse", () => {
    const publish = (data: unknown): unknown => ({ type: "publish", id: "p", channel: "c", data });
    expect(refusal(ClientMessageSchema, publish({ n: Number.NaN }))).toEqual([["data.n", "NaN is not a JSON number"]]);
    expect(refusal(ClientMessageSchema, publish([1, undefined]))).toEqual([["data.1", "a undefined is not a JSON value"]]);
    expect(refusal(ClientMessageSchema, publish({ f: () => 1 }))).toEqual([["data.f", "a function is not a JSON value"]]);
    expect(refusal(ClientMessageSchema, publish({ at: new Date(0) }))).toEqual([["data.at", "a Date is not a plain JSON object"]]);
    const cyclic: Record<string, unknown> = {};
    cyclic["self"] = cyclic;
    expect(refusal(ClientMessageSchema, publish(cyclic))).toEqual([
      ["data.self", "a circular reference cannot be sent as JSON"],
    ]);
    // An undefined property is left out by JSON.stringify, as if absent.
    expect(ClientMessageSchema.safeParse(publish({ a: 1, b: undefined })).success).toBe(true);
  });
});

describe("readings the schemas share with the parser", () => {
  it("serde's tagged form of a status word passes and reads as the word", () => {
    const value = { type: "status", data: { status: { busy: null } } };
    expect(parseMessage(value).ok).toBe(true);
    expect(StatusMessageSchema.safeParse(value).data?.data.status).toBe("busy");
    expect(ClientMessageSchema.safeParse({ type: "status", data: { status: { busy: null, x: 1 } } }).success).toBe(false);
  });

  it("an agent error's non-string message reads as empty; unknown fields are stripped", () => {
    const r = TaskErrorMessageSchema.safeParse({ type: "task_result", id: "t", error: { code: "x", message: 5 }, extra: 1 });
    expect(r.data).toEqual({ type: "task_result", id: "t", error: { code: "x", message: "" } });
    expect(parseMessage({ type: "task_result", id: "t", error: { code: "x", message: 5 } }).ok).toBe(true);
  });

  it("concurrency absent or null, at most 10000, and integer", () => {
    const reg = (concurrency: unknown): unknown => ({ type: "register", id: "r", data: { name: "a", commands: ["x"], concurrency } });
    for (const c of [undefined, null, 1, 10000, 10001, 2.5, "4"]) {
      expect(RegisterMessageSchema.safeParse(reg(c)).success, `concurrency ${String(c)}`).toBe(parseMessage(reg(c)).ok);
    }
  });
});

describe("types", () => {
  it("infers the wire shapes", () => {
    expectTypeOf<Extract<WireMessage, { type: "subscribe" }>["channel"]>().toEqualTypeOf<string>();
    expectTypeOf<Extract<WireMessage, { type: "status" }>["data"]["status"]>().toEqualTypeOf<"idle" | "busy" | "error">();
    expectTypeOf<Extract<WireFrame, { type: "batch" }>["data"]>().toEqualTypeOf<unknown[]>();
    expectTypeOf(WebSocketMessageSchema.parse).returns.toEqualTypeOf<z.output<typeof WebSocketMessageSchema>>();
    // A command needs no id when handed to the SDK.
    expectTypeOf<{ type: "process_receipt"; data: { imageUrl: string } }>().toExtend<WebSocketMessageInput>();
  });
});
