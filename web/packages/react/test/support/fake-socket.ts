// The in-memory gateway stand-in of the React suites: `FakeSocket`, a
// `WebSocketLike` that a TetherClient or TetherPool is given as
// `WebSocketImpl` (or finds as the global `WebSocket`), so no server is
// needed; plus the fixtures the suites share.

import { TetherClient, type TetherClientOptions, type WebSocketLike } from "@tether/client";

/** A frame as JSON: what the stand-in receives and sends. */
export type Frame = Record<string, unknown>;

/** The gateway's clock in the stand-in's frames (ms since the epoch). */
export const SERVER_TIME = 1764093600000;

/** The one agent `request_agent_status` reports. */
export const AGENT = {
  name: "receipt-processor",
  status: "idle",
  replicas: 1,
  commands: ["process_receipt"],
  in_flight: 0,
  processed: 12,
  failed: 1,
  avg_latency_ms: 35.2,
  last_seen: SERVER_TIME,
};

/**
 * A minimal gateway per protocol.md: `welcome` first (unless
 * `FakeSocket.welcome` is off), then replies by id, each delivered
 * asynchronously like a real socket's.
 */
export class FakeSocket implements WebSocketLike {
  /** Every socket made since the last `reset()`, oldest first. */
  static instances: FakeSocket[] = [];
  /** Whether new sockets get their welcome (false: they stay connecting). */
  static welcome = true;
  /** How commands are answered: with an agent's `result`, or the gateway's `no_handler` error (no agent). */
  static commands: "result" | "no_handler" = "result";

  readyState = 0;
  /** The frames this socket received, in order. */
  readonly sent: Frame[] = [];
  onopen: ((ev: never) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: never) => void) | null = null;

  constructor(readonly url: string) {
    FakeSocket.instances.push(this);
    setTimeout(() => {
      if (this.readyState !== 0 || !FakeSocket.welcome) return;
      this.readyState = 1;
      this.reply({
        type: "welcome",
        data: {
          ...this.identity(),
          protocol: 1,
          heartbeat_interval_ms: 30000,
          heartbeat_timeout_ms: 10000,
          max_message_bytes: 65536,
          server_time: SERVER_TIME,
        },
      });
    }, 0);
  }

  /** Every frame of `type` sent on any socket. */
  static sentOf(type: string): Frame[] {
    return FakeSocket.instances.flatMap((s) => s.sent.filter((m) => m["type"] === type));
  }

  /** Forgets the sockets and restores the switches' defaults. */
  static reset(): void {
    FakeSocket.instances = [];
    FakeSocket.welcome = true;
    FakeSocket.commands = "result";
  }

  send(text: string): void {
    const msg = JSON.parse(text) as Frame;
    this.sent.push(msg);
    this.reply(this.answer(msg));
  }

  close(code = 1000, reason = ""): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    setTimeout(() => this.onclose?.({ code, reason }), 0);
  }

  /** Delivers a server frame asynchronously, like a real socket. */
  reply(frame: Frame): void {
    setTimeout(() => {
      if (this.readyState === 1) this.onmessage?.({ data: JSON.stringify(frame) });
    }, 0);
  }

  /** Pushes an `event` frame as the gateway would on a subscribed channel. */
  event(channel: string, seq: number, data: unknown): void {
    this.reply({ type: "event", channel, seq, epoch: "e1", ts: SERVER_TIME, data });
  }

  /** The `session` and `node` of the welcome. */
  protected identity(): { session: string; node: string } {
    return { session: "s-1", node: "gw-test" };
  }

  /** The reply to a client frame. */
  protected answer(msg: Frame): Frame {
    const id = msg["id"];
    switch (msg["type"]) {
      case "ping":
        return { type: "pong", id, ts: SERVER_TIME };
      case "request_agent_status":
        return { type: "agent_status", id, data: [AGENT] };
      case "subscribe":
        // A resubscribe after a reconnect carries `since`; this stand-in lost its history.
        return {
          type: "ack",
          id,
          data: { channel: msg["channel"], seq: 0, epoch: "e1", ...(msg["since"] === undefined ? {} : { recovered: false }) },
        };
      case "unsubscribe":
        return { type: "ack", id, data: { channel: msg["channel"] } };
      case "publish":
        return { type: "ack", id, data: { channel: msg["channel"], seq: 1, epoch: "e1" } };
      case "forbidden_cmd":
        return { type: "error", id, error: { code: "forbidden", message: "not allowed", retryable: false } };
      default:
        return this.command(msg);
    }
  }

  /** The reply to a command (any type the gateway does not answer itself); see `FakeSocket.commands`. */
  protected command(msg: Frame): Frame {
    const id = msg["id"];
    if (FakeSocket.commands === "result") return { type: "result", id, data: { ok: true } };
    return { type: "error", id, error: { code: "no_handler", message: "no agent handles it", retryable: true } };
  }
}

const clients: TetherClient[] = [];

/** A TetherClient on `FakeSocket` as client `tester` of ws://gateway.test/ws (unless `options` say otherwise); `resetFakes()` closes it. */
export function fakeClient(options: TetherClientOptions = {}): TetherClient {
  const client = new TetherClient({ url: "ws://gateway.test/ws", WebSocketImpl: FakeSocket, clientId: "tester", ...options });
  clients.push(client);
  return client;
}

/** Closes the clients `fakeClient` made and resets `FakeSocket`; for `afterEach`, after `cleanup()`. */
export function resetFakes(): void {
  for (const c of clients.splice(0)) c.close();
  FakeSocket.reset();
}
