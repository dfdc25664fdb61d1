// The page's settings, from its query string (the tests build the URL, see
// harness/env.ts `pageUrl`):
//   ws=ws://127.0.0.1:PORT/ws   the WebSocket URL (the test's TCP proxy)
//   channel=NAME                subscribe to NAME from seq 0 and list its events
//   hbi=MS, hbt=MS              heartbeat interval / timeout
//   sw=1                        register the Service Worker (/tether-sw.js)
//   send=NAME                   channel of the "send" button (default e2e-offline)
//   tag=TEXT                    put into every sent message's data
//   debug=1                     SDK debug logging ([WebSocket], [OfflineSync], …)
// The client id is kept in localStorage, so that it survives reloads as an
// app's would (the gateway deduplicates by (client_id, id)).

export interface PageConfig {
  readonly wsUrl: string;
  readonly clientId: string;
  readonly channel: string | null;
  readonly heartbeatInterval: number | undefined;
  readonly heartbeatTimeout: number | undefined;
  readonly serviceWorker: boolean;
  readonly sendChannel: string;
  readonly tag: string;
  readonly debug: boolean;
}

const CLIENT_ID_KEY = "tether-e2e-client-id";

function positiveNumber(value: string | null): number | undefined {
  if (value === null) return undefined;
  const n = Number(value);
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

function stableClientId(): string {
  const existing = localStorage.getItem(CLIENT_ID_KEY);
  if (existing !== null && existing !== "") return existing;
  const created = `e2e-page-${crypto.randomUUID()}`;
  localStorage.setItem(CLIENT_ID_KEY, created);
  return created;
}

export function readConfig(search: string): PageConfig {
  const q = new URLSearchParams(search);
  const wsUrl = q.get("ws");
  if (wsUrl === null || wsUrl === "") throw new Error("the page needs ?ws=ws://HOST:PORT/ws");
  return {
    wsUrl,
    clientId: stableClientId(),
    channel: q.get("channel"),
    heartbeatInterval: positiveNumber(q.get("hbi")),
    heartbeatTimeout: positiveNumber(q.get("hbt")),
    serviceWorker: q.get("sw") === "1",
    sendChannel: q.get("send") ?? "e2e-offline",
    tag: q.get("tag") ?? "",
    debug: q.get("debug") === "1",
  };
}

/** The worker's registration URL: its configuration travels in the query (see packages/service-worker). */
export function serviceWorkerUrl(config: PageConfig): string {
  const q = new URLSearchParams({
    client_id: config.clientId,
    endpoint: "/api/v1/messages",
    db: "tether-offline",
  });
  if (config.debug) q.set("debug", "1");
  return `/tether-sw.js?${q.toString()}`;
}
