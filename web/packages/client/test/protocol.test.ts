// The golden protocol vectors (crates/protocol/tests/vectors/, described in its
// README.md) checked against the TypeScript implementation, exactly as the Rust
// crate checks them in crates/protocol/tests/vectors.rs, plus the validator
// unit tests of crates/protocol/src/validate.rs.

import { describe, expect, it } from "vitest";
import {
  CLIENT_TYPES,
  CLOSE_CODES,
  CloseCode,
  ERROR_CODES,
  MAX_AGENT_NAME_LEN,
  MAX_BATCH,
  PROTOCOL_VERSION,
  SERVER_TYPES,
  agentChannel,
  authFrame,
  batchFrame,
  commandFrame,
  encodeMessage,
  isCloseCode,
  isValidAgentName,
  isValidChannel,
  isValidCommandType,
  isValidId,
  messageId,
  messageType,
  parseFrame,
  parseMessage,
  parseServerFrame,
  patternMatches,
  pingFrame,
  publishFrame,
  reconnectAdvice,
  registerFrame,
  retryable,
  statusFrame,
  subscribeFrame,
  taskErrorFrame,
  taskResultFrame,
  type ClientMessage,
  type FrameError,
  type MessageResult,
} from "../src/protocol";
import {
  type InvalidCase,
  type Json,
  type JsonObject,
  type ServerCase,
  type ValidCase,
  codes,
  invalidCases,
  isJsonObject,
  jsonEq,
  serverCases,
  validCases,
} from "./support/vectors.js";

const show = (v: unknown): string => JSON.stringify(v);

function assertUniqueNames(file: string, names: string[]): void {
  const seen = new Set<string>();
  for (const name of names) {
    expect(name.trim(), `${file}: a case has an empty name`).not.toBe("");
    expect(seen.has(name), `${file}: duplicate case name \`${name}\``).toBe(false);
    seen.add(name);
  }
}

/** A parsed client message as the language-neutral `expect` object describes it (README). */
function normalize(msg: ClientMessage): Record<string, Json> {
  const m: Record<string, Json> = {
    type: messageType(msg),
    id: messageId(msg),
    command: msg.type === "command",
  };
  switch (msg.type) {
    case "ping":
    case "request_agent_status":
    case "request_system_metrics":
      break;
    case "auth":
      m["token"] = msg.token;
      break;
    case "subscribe":
      m["channel"] = msg.channel;
      m["since"] = msg.since === null ? null : { seq: msg.since.seq, epoch: msg.since.epoch };
      break;
    case "unsubscribe":
      m["channel"] = msg.channel;
      break;
    case "publish":
      m["channel"] = msg.channel;
      m["data"] = msg.data as Json;
      break;
    case "subscribe_agent":
    case "unsubscribe_agent":
      m["name"] = msg.name;
      break;
    case "register":
      m["name"] = msg.name;
      m["commands"] = msg.commands;
      m["concurrency"] = msg.concurrency;
      break;
    case "status":
      m["status"] = msg.state;
      m["detail"] = msg.detail;
      break;
    case "task_progress":
    case "command":
      m["data"] = msg.data as Json;
      break;
    case "task_result":
      if (msg.outcome.ok) m["data"] = msg.outcome.data as Json;
      else m["agent_error"] = { code: msg.outcome.error.code, message: msg.outcome.error.message };
      break;
  }
  return m;
}

/** Compares one parsed message with its `expect` object; `what` names the case (and batch item). */
function checkMessage(what: string, want: JsonObject, msg: ClientMessage): string[] {
  const failures: string[] = [];
  for (const key of ["type", "id"]) {
    if (!Object.hasOwn(want, key)) failures.push(`${what}: \`expect\` lacks \`${key}\``);
  }
  const got = normalize(msg);
  let wantCommand = false;
  const c = want["command"];
  if (c !== undefined) {
    if (typeof c === "boolean") wantCommand = c;
    else failures.push(`${what}: \`expect.command\` must be a boolean, not ${show(c)}`);
  }
  if (got["command"] !== wantCommand) {
    failures.push(`${what}: expected command=${wantCommand}, parsed as ${show(msg)}`);
  }
  for (const [key, value] of Object.entries(want)) {
    if (key === "command") continue;
    if (!Object.hasOwn(got, key)) {
      failures.push(`${what}: \`expect.${key}\` is not a field of a \`${messageType(msg)}\` message (parsed ${show(msg)})`);
    } else if (!jsonEq(got[key], value)) {
      failures.push(`${what}: \`${key}\` expected ${show(value)}, parsed ${show(got[key])} (message ${show(msg)})`);
    }
  }
  return failures;
}

function checkBatch(name: string, want: JsonObject, items: MessageResult[], seenTypes: Set<string>): string[] {
  const failures: string[] = [];
  if (want["type"] !== "batch" || want["id"] !== null) {
    failures.push(`${name}: parsed as a batch; \`expect\` needs "type":"batch" and "id":null`);
  }
  const extra = Object.keys(want).find((k) => !["type", "id", "batch"].includes(k));
  if (extra !== undefined) failures.push(`${name}: \`expect.${extra}\` does not apply to a batch`);
  const wantItems = want["batch"];
  if (!Array.isArray(wantItems)) {
    failures.push(`${name}: parsed as a batch but \`expect.batch\` is missing`);
    return failures;
  }
  if (wantItems.length !== items.length) {
    failures.push(`${name}: batch has ${items.length} items, expected ${wantItems.length}`);
    return failures;
  }
  wantItems.forEach((w, i) => {
    const what = `${name} [batch item ${i}]`;
    const have = items[i];
    if (!isJsonObject(w) || have === undefined) {
      failures.push(`${what}: expected item must be an object`);
      return;
    }
    const wantError = w["error"];
    if (wantError !== undefined) {
      if (have.ok) {
        failures.push(`${what}: expected an error, parsed ${show(have.message)}`);
        return;
      }
      if (wantError !== "bad_request") failures.push(`${what}: \`error\` must be "bad_request"`);
      const wantId = w["id"] ?? null;
      if (have.error.id !== wantId) {
        failures.push(`${what}: error id expected ${show(wantId)}, got ${show(have.error.id)} (${have.error.message})`);
      }
    } else if (!have.ok) {
      failures.push(`${what}: expected a message, got error ${show(have.error)}`);
    } else {
      seenTypes.add(messageType(have.message));
      failures.push(...checkMessage(what, w, have.message));
    }
  });
  return failures;
}

function expectIsBatch(want: JsonObject): boolean {
  return Object.hasOwn(want, "batch") || want["type"] === "batch";
}

/** Checks one valid case; returns its failures, recording what it saw. */
function checkValidCase(c: ValidCase, seenTypes: Set<string>, counts: { commands: number }): string[] {
  const r = parseFrame(c.frame);
  if (!r.ok) return [`${c.name}: expected a valid frame, got error ${show(r.error)}`];
  if (r.frame.kind === "single") {
    const msg = r.frame.message;
    if (expectIsBatch(c.expect)) return [`${c.name}: expected a batch, parsed ${show(msg)}`];
    seenTypes.add(messageType(msg));
    if (msg.type === "command") counts.commands++;
    return checkMessage(c.name, c.expect, msg);
  }
  seenTypes.add("batch");
  return checkBatch(c.name, c.expect, r.frame.items, seenTypes);
}

/** Checks one invalid case; returns its failures. */
function checkInvalidCase(c: InvalidCase): string[] {
  const failures: string[] = [];
  if (c.error.code !== "bad_request") {
    failures.push(`${c.name}: a malformed frame is always bad_request, not ${c.error.code}`);
  }
  const r = parseFrame(c.frame);
  if (r.ok) {
    failures.push(`${c.name}: expected an error, parsed ${show(r.frame)}`);
  } else if (r.error.id !== c.error.id) {
    failures.push(`${c.name}: error id expected ${show(c.error.id)}, got ${show(r.error.id)} (${r.error.message})`);
  } else if (r.error.message.trim() === "") {
    failures.push(`${c.name}: the error has no message`);
  }
  return failures;
}

/** Checks one server case; returns its failures. */
function checkServerCase(c: ServerCase): string[] {
  const ty = c.frame["type"];
  if (typeof ty !== "string") return [`${c.name}: frame has no string \`type\``];
  const text = JSON.stringify(c.frame);
  const r = parseServerFrame(text);
  if (!r.ok) return [`${c.name}: does not parse as a server frame: ${r.error}`];
  const failures: string[] = [];
  if (r.message.type !== ty) failures.push(`${c.name}: parsed as type ${r.message.type}, expected ${ty}`);
  const back: unknown = JSON.parse(JSON.stringify(r.message));
  if (!jsonEq(back, c.frame)) {
    failures.push(`${c.name}: re-serialized as ${show(back)}\n    expected ${show(c.frame)}`);
  }
  // A server frame is never a valid client message.
  const asClient = parseFrame(text);
  if (asClient.ok) failures.push(`${c.name}: a server frame parsed as a client frame: ${show(asClient.frame)}`);
  return failures;
}

describe("client-valid.json", () => {
  it("has at least 40 uniquely named cases", () => {
    expect(validCases.length).toBeGreaterThanOrEqual(40);
    assertUniqueNames("client-valid.json", validCases.map((c) => c.name));
  });

  it.each(validCases)("$name", (c) => {
    expect(checkValidCase(c, new Set(), { commands: 0 })).toEqual([]);
  });

  it("covers every client type and at least 3 commands", () => {
    const seen = new Set<string>();
    const counts = { commands: 0 };
    for (const c of validCases) checkValidCase(c, seen, counts);
    for (const ty of CLIENT_TYPES) expect(seen.has(ty), `client-valid.json has no valid \`${ty}\` message`).toBe(true);
    expect(counts.commands, "client-valid.json commands").toBeGreaterThanOrEqual(3);
  });
});

describe("client-invalid.json", () => {
  it("has at least 80 uniquely named cases", () => {
    expect(invalidCases.length).toBeGreaterThanOrEqual(80);
    assertUniqueNames("client-invalid.json", invalidCases.map((c) => c.name));
  });

  it.each(invalidCases)("$name", (c) => {
    expect(checkInvalidCase(c)).toEqual([]);
  });

  it("mixes errors with and without an id", () => {
    const echoed = invalidCases.filter((c) => {
      const r = parseFrame(c.frame);
      return !r.ok && r.error.id !== null;
    }).length;
    expect(echoed, `${echoed} of ${invalidCases.length} echo an id`).toBeGreaterThanOrEqual(20);
    expect(echoed).toBeLessThan(invalidCases.length);
  });
});

describe("server.json", () => {
  it("has at least 25 uniquely named cases covering every server type", () => {
    expect(serverCases.length).toBeGreaterThanOrEqual(25);
    assertUniqueNames("server.json", serverCases.map((c) => c.name));
    const seen = new Set(serverCases.map((c) => c.frame["type"]));
    for (const ty of SERVER_TYPES) expect(seen.has(ty), `server.json has no \`${ty}\` frame`).toBe(true);
  });

  it.each(serverCases)("$name", (c) => {
    expect(checkServerCase(c)).toEqual([]);
  });
});

describe("codes.json", () => {
  it("error codes match ErrorCode and retryable()", () => {
    expect(codes.error_codes.length, "codes.json must list the 9 error codes").toBe(9);
    expect(ERROR_CODES.map((code) => ({ code, retryable: retryable(code) }))).toEqual(codes.error_codes);
  });

  it("close codes match CloseCode", () => {
    expect(codes.close_codes.length, "codes.json must list the 7 close codes").toBe(7);
    expect(CLOSE_CODES.map((c) => ({ code: c.code, name: c.name }))).toEqual(codes.close_codes);
    for (const c of codes.close_codes) expect(isCloseCode(c.code), `close code ${c.code} (${c.name})`).toBe(true);
    expect(isCloseCode(1000)).toBe(false);
  });

  it("reconnect advice follows the protocol's table", () => {
    expect(reconnectAdvice(CloseCode.GoingAway)).toBe("reconnect");
    expect(reconnectAdvice(CloseCode.HeartbeatTimeout)).toBe("reconnect");
    expect(reconnectAdvice(CloseCode.TryAgainLater)).toBe("backoff");
    expect(reconnectAdvice(CloseCode.RateLimited)).toBe("backoff");
    expect(reconnectAdvice(CloseCode.MessageTooBig)).toBe("after-fix");
    expect(reconnectAdvice(CloseCode.Unauthorized)).toBe("after-fix");
    expect(reconnectAdvice(CloseCode.Forbidden)).toBe("never");
  });

  it("retryable is exactly the listed codes", () => {
    expect(ERROR_CODES.filter(retryable)).toEqual(["rate_limited", "no_handler", "timeout", "overloaded", "internal"]);
    expect(retryable("unreadable")).toBe(false);
  });
});

// Unit tests of validate.rs.
describe("validators", () => {
  it("ids", () => {
    expect(isValidId("a")).toBe(true);
    expect(isValidId("x".repeat(128))).toBe(true);
    expect(isValidId("x".repeat(129))).toBe(false);
    expect(isValidId("")).toBe(false);
    expect(isValidId("tab\there")).toBe(false);
    expect(isValidId("zażółć")).toBe(false);
  });

  it("channels", () => {
    expect(isValidChannel("orders")).toBe(true);
    expect(isValidChannel("orders:eu-1.v2_x")).toBe(true);
    expect(isValidChannel("c".repeat(128))).toBe(true);
    expect(isValidChannel("c".repeat(129))).toBe(false);
    expect(isValidChannel("")).toBe(false);
    expect(isValidChannel("has space")).toBe(false);
    expect(isValidChannel("a/b")).toBe(false);
    expect(isValidChannel("inbox:alice@example.com")).toBe(true);
    expect(isValidChannel("inbox:tab\there")).toBe(false);
    expect(isValidChannel("agentx:a@b")).toBe(false);
  });

  it("command types", () => {
    expect(isValidCommandType("process_receipt")).toBe(true);
    expect(isValidCommandType("a")).toBe(true);
    expect(isValidCommandType("orders.v2:resize-x")).toBe(true);
    expect(isValidCommandType("Process")).toBe(false);
    expect(isValidCommandType("1abc")).toBe(false);
    expect(isValidCommandType(`a${"b".repeat(64)}`)).toBe(false);
    expect(isValidCommandType("event")).toBe(false);
    expect(isValidCommandType("publish")).toBe(false);
  });

  it("agent names fit their channel", () => {
    const longest = "n".repeat(MAX_AGENT_NAME_LEN);
    expect(isValidAgentName(longest)).toBe(true);
    expect(isValidChannel(agentChannel(longest))).toBe(true);
    expect(isValidAgentName(`${longest}n`)).toBe(false);
  });

  it("globs", () => {
    expect(patternMatches("orders:*", "orders:eu")).toBe(true);
    expect(patternMatches("orders:*", "orders:")).toBe(true);
    expect(patternMatches("orders:*", "order")).toBe(false);
    expect(patternMatches("*", "")).toBe(true);
    expect(patternMatches("a?c", "abc")).toBe(true);
    expect(patternMatches("a?c", "ac")).toBe(false);
    expect(patternMatches("*:x*y", "a:b:xzzy")).toBe(true);
    expect(patternMatches("*:x*y", "a:b:xzz")).toBe(false);
    expect(patternMatches("exact", "exact")).toBe(true);
  });
});

// Unit tests of client.rs, and the gateway parser's (serde_json's) limits.
describe("parseFrame", () => {
  const one = (text: string): { ok: true; message: ClientMessage } | { ok: false; error: FrameError } => {
    const r = parseFrame(text);
    if (!r.ok) return r;
    if (r.frame.kind !== "single") throw new Error("unexpected batch");
    return { ok: true, message: r.frame.message };
  };
  const errorId = (text: string): string | null | "parsed" => {
    const r = parseFrame(text);
    return r.ok ? "parsed" : r.error.id;
  };

  it("error echoes valid id only", () => {
    expect(errorId('{"id":"x1","type":"subscribe","channel":"a b"}')).toBe("x1");
    expect(errorId(`{"id":"${"i".repeat(129)}","type":"ping"}`)).toBe(null);
  });

  it("commands are other valid types", () => {
    expect(one('{"type":"process_receipt","id":"9","data":{"u":1}}')).toEqual({
      ok: true,
      message: { type: "command", id: "9", command: "process_receipt", data: { u: 1 } },
    });
    expect(one('{"type":"event","id":"9"}').ok).toBe(false);
    expect(one('{"type":"Nope","id":"9"}').ok).toBe(false);
  });

  it("batch bounds", () => {
    expect(parseFrame('{"type":"batch","data":[]}').ok).toBe(false);
    expect(parseFrame('{"type":"batch","data":[{"type":"batch","data":[{"type":"ping","id":"1"}]}]}').ok).toBe(false);
    const r = parseFrame('{"type":"batch","data":[{"type":"ping","id":"1"},{"type":"ping"}]}');
    expect(r.ok && r.frame.kind === "batch" && r.frame.items.map((i) => i.ok)).toEqual([true, false]);
  });

  it("rejects what serde_json rejects", () => {
    const publish = (data: string): string => `{"type":"publish","id":"a","channel":"x","data":${data}}`;
    expect(errorId(String.raw`{"type":"ping","id":"a\ud800"}`)).toBe(null);
    expect(errorId(publish(String.raw`"\udc00"`))).toBe(null);
    expect(errorId(publish(String.raw`"\ud83d\ude00"`))).toBe("parsed");
    // Nesting: 127 levels in all are fine, 128 are not.
    expect(errorId(publish("[".repeat(126) + "]".repeat(126)))).toBe("parsed");
    expect(errorId(publish("[".repeat(127) + "]".repeat(127)))).toBe(null);
    expect(errorId(publish("1e400"))).toBe(null);
    expect(errorId(publish("1e-400"))).toBe("parsed");
    expect(errorId('{"type":"subscribe","id":"1","channel":"x","since":{"seq":-0}}')).toBe("1");
    expect(errorId('{"type":"ping","id":"1","type":"batch"}')).toBe(null);
  });

  it("reads agent states like serde", () => {
    expect(one('{"type":"status","data":{"status":{"idle":null}}}')).toEqual({
      ok: true,
      message: { type: "status", state: "idle", detail: null },
    });
    expect(one('{"type":"status","data":{"status":{"idle":1}}}').ok).toBe(false);
  });

  it("task_result error message defaults to empty for non-strings", () => {
    expect(one('{"type":"task_result","id":"t","error":{"code":"x","message":5}}')).toEqual({
      ok: true,
      message: { type: "task_result", id: "t", outcome: { ok: false, error: { code: "x", message: "" } } },
    });
  });

  it("parseMessage rejects non-objects with id null", () => {
    expect(parseMessage(5)).toEqual({ ok: false, error: { id: null, message: "message must be a JSON object" } });
  });
});

describe("builders", () => {
  const roundTrip = (text: string): ClientMessage => {
    const r = parseFrame(text);
    if (!r.ok || r.frame.kind !== "single") throw new Error(`${text} does not parse: ${show(r)}`);
    return r.frame.message;
  };

  it("build frames that parse back to the same message", () => {
    expect(roundTrip(pingFrame("p1"))).toEqual({ type: "ping", id: "p1" });
    expect(roundTrip(authFrame("a1", "tok"))).toEqual({ type: "auth", id: "a1", token: "tok" });
    expect(roundTrip(subscribeFrame("1", "orders"))).toEqual({ type: "subscribe", id: "1", channel: "orders", since: null });
    expect(roundTrip(subscribeFrame("1", "orders", { seq: 41, epoch: "e7" }))).toEqual({
      type: "subscribe",
      id: "1",
      channel: "orders",
      since: { seq: 41, epoch: "e7" },
    });
    expect(subscribeFrame("1", "orders", { seq: 0 })).toBe('{"type":"subscribe","id":"1","channel":"orders","since":{"seq":0}}');
    expect(roundTrip(publishFrame("3", "orders", { a: 1 }))).toEqual({ type: "publish", id: "3", channel: "orders", data: { a: 1 } });
    expect(roundTrip(commandFrame("9", "process_receipt", { u: 1 }))).toEqual({
      type: "command",
      id: "9",
      command: "process_receipt",
      data: { u: 1 },
    });
    expect(roundTrip(registerFrame("r1", "rp", ["process_receipt"]))).toEqual({
      type: "register",
      id: "r1",
      name: "rp",
      commands: ["process_receipt"],
      concurrency: 1,
    });
    expect(roundTrip(statusFrame("busy", "warming"))).toEqual({ type: "status", state: "busy", detail: "warming" });
    expect(roundTrip(taskResultFrame("t-1", 5))).toEqual({ type: "task_result", id: "t-1", outcome: { ok: true, data: 5 } });
    expect(roundTrip(taskErrorFrame("t-1", "bad", "m"))).toEqual({
      type: "task_result",
      id: "t-1",
      outcome: { ok: false, error: { code: "bad", message: "m" } },
    });
  });

  it("encodeMessage inverts parsing for every valid vector", () => {
    for (const c of validCases) {
      const r = parseFrame(c.frame);
      if (!r.ok || r.frame.kind !== "single") continue;
      expect(roundTrip(encodeMessage(r.frame.message)), c.name).toEqual(r.frame.message);
    }
  });

  it("batchFrame bounds", () => {
    const ping: ClientMessage = { type: "ping", id: "p" };
    expect(() => batchFrame([])).toThrow(RangeError);
    expect(() => batchFrame(Array.from({ length: MAX_BATCH + 1 }, () => ping))).toThrow(RangeError);
    const r = parseFrame(batchFrame([ping, ping]));
    expect(r.ok && r.frame.kind === "batch" && r.frame.items.length).toBe(2);
  });

  it("protocol version", () => {
    expect(PROTOCOL_VERSION).toBe(1);
  });
});
