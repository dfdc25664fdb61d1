// useOfflineSync and <OfflineStatus/> in jsdom, on fake-indexeddb, with a
// hand-switched OnlineSource and an in-memory gateway stand-in (`FakeSocket`,
// support/fake-socket.ts) injected into a TetherClient. The guide's own
// components ("Użycie z offline support", "Offline Queue") are rendered as
// written (with types added).

import "fake-indexeddb/auto";
import { ManualOnlineSource, OfflineQueue, type OfflineSync, getOfflineSync } from "@tether/client";
import { act, cleanup, fireEvent, render, renderHook, screen, waitFor } from "@testing-library/react";
import { type ReactNode, StrictMode } from "react";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  OfflineStatus,
  type OfflineSyncReturn,
  WebSocketProvider,
  useOfflineSync,
  useWebSocketContext,
} from "../src/index";
import { FakeSocket, fakeClient, resetFakes } from "./support/fake-socket.js";

const controllers: OfflineSync[] = [];

let counter = 0;
function dbName(): string {
  counter += 1;
  return `tether-react-test-${counter}-${Math.random().toString(36).slice(2)}`;
}

/** A fetch that must not be reached (there is no network in these tests). */
const unreachable = vi.fn(() => Promise.reject(new TypeError("no network in tests")));

/** The gateway's answer to a `POST /api/v1/messages` with `init`: an ack per message. */
function acks(init?: RequestInit): Response {
  const frames = JSON.parse(String(init?.body)) as { id: string }[];
  return new Response(JSON.stringify(frames.map((f) => ({ type: "ack", id: f.id, data: {} }))));
}

/** Makes the shared controller of a fresh database with a manual network switch. */
function sharedController(online: ManualOnlineSource, extra: Parameters<typeof getOfflineSync>[0] = {}): OfflineSync {
  const sync = getOfflineSync({
    dbName: dbName(),
    online,
    serviceWorker: null,
    retryDelayMs: 0,
    fetch: unreachable as unknown as typeof fetch,
    ...extra,
  });
  controllers.push(sync);
  return sync;
}

/**
 * useWebSocketContext (`ws`) and useOfflineSync (`off`, on a fresh online
 * controller `sync`) under a WebSocketProvider of a fake client, once connected.
 */
async function renderConnected() {
  const sync = sharedController(new ManualOnlineSource(true));
  const client = fakeClient();
  const { result } = renderHook(() => ({ ws: useWebSocketContext(), off: useOfflineSync({ dbName: sync.dbName }) }), {
    wrapper: ({ children }) => <WebSocketProvider client={client}>{children}</WebSocketProvider>,
  });
  await waitFor(() => {
    expect(result.current.ws.isConnected).toBe(true);
  });
  return { sync, result };
}

afterEach(() => {
  cleanup();
  resetFakes();
  for (const s of controllers.splice(0)) s.close();
  unreachable.mockClear();
});

const GUIDE_FIELDS = [
  "cacheOfflineMessage",
  "clearOfflineQueue",
  "isOnline",
  "isSyncing",
  "lastSyncTime",
  "offlineQueue",
  "sendMessageWithOfflineFallback",
  "syncOfflineMessages",
];

// ---------------------------------------------------------------------------
// The guide's components, as written (types added)
// ---------------------------------------------------------------------------

/** "Użycie z offline support". */
function MyComponent(): ReactNode {
  const { sendMessage } = useWebSocketContext();
  const { sendMessageWithOfflineFallback, isOnline } = useOfflineSync();

  const handleSendMessage = async (message: { type: string }) => {
    await sendMessageWithOfflineFallback(message, sendMessage);
  };

  return (
    <div>
      <p>Network: {isOnline ? "Online" : "Offline"}</p>
      <button onClick={() => handleSendMessage({ type: "test" })}>Send with Offline Fallback</button>
    </div>
  );
}

/** "Offline Queue". */
function OfflineManager(): ReactNode {
  const { isOnline, offlineQueue, isSyncing, syncOfflineMessages, clearOfflineQueue } = useOfflineSync();

  return (
    <div>
      <p>Queue Size: {offlineQueue.length}</p>
      <p>{isSyncing ? "syncing" : "idle"}</p>
      <button onClick={syncOfflineMessages} disabled={!isOnline}>
        Sync Now
      </button>
      <button onClick={clearOfflineQueue}>Clear Queue</button>
    </div>
  );
}

describe("useOfflineSync", () => {
  it("returns exactly the guide's OfflineSyncReturn fields", async () => {
    const online = new ManualOnlineSource(true);
    const sync = sharedController(online);
    const { result } = renderHook(() => useOfflineSync({ dbName: sync.dbName }));
    expect(Object.keys(result.current).sort()).toEqual(GUIDE_FIELDS);
    const r: OfflineSyncReturn = result.current;
    expect(r.isOnline).toBe(true);
    expect(r.offlineQueue).toEqual([]);
    expect(r.isSyncing).toBe(false);
    expect(r.lastSyncTime).toBeNull();
    for (const f of ["cacheOfflineMessage", "syncOfflineMessages", "clearOfflineQueue", "sendMessageWithOfflineFallback"]) {
      expect(typeof (r as unknown as Record<string, unknown>)[f]).toBe("function");
    }
    await act(async () => {
      await sync.ready();
    });
  });

  it("updates isOnline and offlineQueue, and keeps the action functions stable", async () => {
    const online = new ManualOnlineSource(true);
    const sync = sharedController(online);
    const { result } = renderHook(() => useOfflineSync({ dbName: sync.dbName }));
    const first = result.current;
    act(() => {
      online.set(false);
    });
    expect(result.current.isOnline).toBe(false);
    await act(async () => {
      await result.current.cacheOfflineMessage({ type: "publish", channel: "orders", data: { n: 1 } });
    });
    expect(result.current.offlineQueue).toHaveLength(1);
    expect(result.current.offlineQueue[0]?.frame).toMatchObject({ type: "publish", channel: "orders" });
    expect(result.current.cacheOfflineMessage).toBe(first.cacheOfflineMessage);
    expect(result.current.sendMessageWithOfflineFallback).toBe(first.sendMessageWithOfflineFallback);
    await act(async () => {
      await result.current.clearOfflineQueue();
    });
    expect(result.current.offlineQueue).toHaveLength(0);
  });

  it("shares one queue between hooks of the page (and under StrictMode)", async () => {
    const online = new ManualOnlineSource(false);
    const sync = sharedController(online);
    const { result } = renderHook(
      () => ({ a: useOfflineSync({ dbName: sync.dbName }), b: useOfflineSync({ dbName: sync.dbName }) }),
      { wrapper: StrictMode },
    );
    await act(async () => {
      await result.current.a.cacheOfflineMessage({ type: "test", id: "shared-1" });
    });
    expect(result.current.b.offlineQueue.map((m) => m.id)).toEqual(["shared-1"]);
  });

  it("guide component: queues a message without an id while offline, replays it with the same id when back online", async () => {
    const online = new ManualOnlineSource(false);
    // The guide calls useOfflineSync() without options: the page's default shared controller.
    const sync = getOfflineSync({ online, serviceWorker: null, retryDelayMs: 0, fetch: unreachable as unknown as typeof fetch });
    controllers.push(sync);
    await sync.clearOfflineQueue();
    const client = fakeClient();
    render(
      <WebSocketProvider client={client}>
        <MyComponent />
        <OfflineManager />
      </WebSocketProvider>,
    );
    await waitFor(() => {
      expect(client.getSnapshot().isConnected).toBe(true);
    });
    expect(screen.getByText("Network: Offline")).toBeTruthy();
    expect((screen.getByRole("button", { name: "Sync Now" }) as HTMLButtonElement).disabled).toBe(true);

    fireEvent.click(screen.getByRole("button", { name: "Send with Offline Fallback" }));
    await waitFor(() => {
      expect(screen.getByText("Queue Size: 1")).toBeTruthy();
    });
    expect(FakeSocket.sentOf("test")).toHaveLength(0); // not sent while offline
    const queuedId = sync.getSnapshot().offlineQueue[0]?.id;
    expect(queuedId).toMatch(/^[\x20-\x7e]{1,128}$/);

    act(() => {
      online.set(true);
    });
    await waitFor(() => {
      expect(screen.getByText("Queue Size: 0")).toBeTruthy();
    });
    const sent = FakeSocket.sentOf("test");
    expect(sent).toHaveLength(1);
    expect(sent[0]?.["id"]).toBe(queuedId);
    expect(screen.getByText("Network: Online")).toBeTruthy();
    expect(unreachable).not.toHaveBeenCalled();
  });

  it("sends at once over the WebSocket when online, with an id, and queues nothing", async () => {
    const { sync, result } = await renderConnected();
    await act(async () => {
      await result.current.off.sendMessageWithOfflineFallback({ type: "process_receipt", data: { imageUrl: "a.jpg" } }, result.current.ws.sendMessage);
    });
    const sent = FakeSocket.sentOf("process_receipt");
    expect(sent).toHaveLength(1);
    expect(typeof sent[0]?.["id"]).toBe("string");
    expect(result.current.off.offlineQueue).toHaveLength(0);
    expect(await (await sync.getQueue()).size()).toBe(0);
  });

  it("rethrows the gateway's final refusal and does not queue", async () => {
    const { sync, result } = await renderConnected();
    let error: unknown;
    await act(async () => {
      error = await result.current.off
        .sendMessageWithOfflineFallback({ type: "forbidden_cmd" }, result.current.ws.sendMessage)
        .catch((e: unknown) => e);
    });
    expect((error as Error).name).toBe("GatewayError");
    expect(await (await sync.getQueue()).size()).toBe(0);
  });

  it("queues when the send fails while online (e.g. the client is closed)", async () => {
    const sync = sharedController(new ManualOnlineSource(true));
    const client = fakeClient();
    const { result } = renderHook(() => useOfflineSync({ dbName: sync.dbName }));
    client.close(); // request() now rejects with ClientClosedError
    await act(async () => {
      await result.current.sendMessageWithOfflineFallback({ type: "test", id: "keep-me" }, (frame) => client.request(frame));
    });
    expect(result.current.offlineQueue.map((m) => [m.id, m.attempts])).toEqual([["keep-me", 1]]);
  });

  it("queues durably at once while the provider's connection is down, without calling sendFn", async () => {
    FakeSocket.welcome = false;
    const sync = sharedController(new ManualOnlineSource(true));
    const client = fakeClient();
    const { result } = renderHook(() => useOfflineSync({ dbName: sync.dbName }), {
      wrapper: ({ children }) => <WebSocketProvider client={client}>{children}</WebSocketProvider>,
    });
    const sendFn = vi.fn(() => Promise.resolve());
    await act(async () => {
      await result.current.sendMessageWithOfflineFallback({ type: "test", id: "while-down" }, sendFn);
    });
    expect(sendFn).not.toHaveBeenCalled();
    expect(result.current.offlineQueue.map((m) => m.id)).toEqual(["while-down"]);
  });

  it("replays what is queued when the provider's WebSocket connects", async () => {
    const online = new ManualOnlineSource(true);
    const name = dbName();
    const earlier = await OfflineQueue.open({ dbName: name });
    await earlier.add({ type: "publish", id: "from-last-visit", channel: "orders", data: 1 });
    earlier.close();
    const sync = sharedController(online, { dbName: name });
    FakeSocket.welcome = false; // connecting, not connected
    const client = fakeClient();
    const { result } = renderHook(() => useOfflineSync({ dbName: name }), {
      wrapper: ({ children }) => <WebSocketProvider client={client}>{children}</WebSocketProvider>,
    });
    await act(async () => {
      await sync.ready();
    });
    expect(result.current.offlineQueue.map((m) => m.id)).toEqual(["from-last-visit"]);
    // Not connected: the HTTP replay to the client's gateway was tried (and failed: no network here); nothing lost.
    await waitFor(() => {
      expect(unreachable).toHaveBeenCalled();
      expect(result.current.isSyncing).toBe(false);
    });
    const firstCall = unreachable.mock.calls[0] as unknown[] | undefined;
    expect(String(firstCall?.[0])).toBe("http://gateway.test/api/v1/messages?client_id=tester");
    expect(result.current.offlineQueue).toHaveLength(1);

    // The gateway comes up: welcome on a new socket → replay over the WebSocket.
    FakeSocket.welcome = true;
    const socket = FakeSocket.instances[0];
    act(() => {
      socket?.close(1006, "");
    });
    await waitFor(
      () => {
        expect(result.current.offlineQueue).toHaveLength(0);
      },
      { timeout: 5000 },
    );
    expect(FakeSocket.sentOf("publish").map((m) => m["id"])).toContain("from-last-visit");
    expect(result.current.lastSyncTime).not.toBeNull();
  });

  it("replays over HTTP to the client's gateway (not the page's origin), with the client's id and token", async () => {
    const online = new ManualOnlineSource(true);
    const calls: { url: string; headers: Record<string, string> }[] = [];
    const fetch = vi.fn((url: string | URL | Request, init?: RequestInit) => {
      calls.push({ url: String(url), headers: { ...(init?.headers as Record<string, string>) } });
      return Promise.resolve(acks(init));
    });
    const sync = sharedController(online, { fetch: fetch as unknown as typeof globalThis.fetch });
    FakeSocket.welcome = false;
    // The guide's setup: the app on :3000, the gateway on :8001.
    let token = "tok-1";
    const client = fakeClient({ url: "ws://gateway.test:8001/ws/dashboard", getToken: () => Promise.resolve(token) });
    const { result } = renderHook(() => useOfflineSync({ dbName: sync.dbName }), {
      wrapper: ({ children }) => <WebSocketProvider client={client}>{children}</WebSocketProvider>,
    });
    await act(async () => {
      await result.current.cacheOfflineMessage({ type: "test", id: "over-http" });
      await result.current.syncOfflineMessages();
    });
    expect(calls[0]?.url).toBe("http://gateway.test:8001/api/v1/messages?client_id=tester");
    expect(calls[0]?.url.startsWith(location.origin)).toBe(false);
    expect(calls[0]?.headers["authorization"]).toBe("Bearer tok-1");
    expect(result.current.offlineQueue).toHaveLength(0);
    // The token provider is asked again for every replay.
    token = "tok-2";
    await act(async () => {
      await result.current.cacheOfflineMessage({ type: "test", id: "over-http-2" });
      await result.current.syncOfflineMessages();
    });
    expect(calls[1]?.headers["authorization"]).toBe("Bearer tok-2");
  });

  it("sets the client's client_id on an explicit httpEndpoint", async () => {
    const fetch = vi.fn((_url: string | URL | Request, init?: RequestInit) => Promise.resolve(acks(init)));
    const sync = sharedController(new ManualOnlineSource(true), { fetch: fetch as unknown as typeof globalThis.fetch });
    FakeSocket.welcome = false;
    const client = fakeClient();
    const { result } = renderHook(
      () => useOfflineSync({ dbName: sync.dbName, httpEndpoint: "https://api.test/tether/api/v1/messages?client_id=other&x=1" }),
      { wrapper: ({ children }) => <WebSocketProvider client={client}>{children}</WebSocketProvider> },
    );
    await act(async () => {
      await result.current.cacheOfflineMessage({ type: "test", id: "explicit" });
      await result.current.syncOfflineMessages();
    });
    expect(String(fetch.mock.calls[0]?.[0])).toBe("https://api.test/tether/api/v1/messages?client_id=tester&x=1");
    expect(result.current.offlineQueue).toHaveLength(0);
  });

  it("keeps the provider client's offline queue gauge current", async () => {
    const sync = sharedController(new ManualOnlineSource(false));
    const client = fakeClient();
    const { result } = renderHook(() => useOfflineSync({ dbName: sync.dbName }), {
      wrapper: ({ children }) => <WebSocketProvider client={client}>{children}</WebSocketProvider>,
    });
    await act(async () => {
      await result.current.cacheOfflineMessage({ type: "test", id: "g1" });
      await result.current.cacheOfflineMessage({ type: "test", id: "g2" });
    });
    expect(client.metrics.snapshot().offlineQueueSize).toBe(2);
    expect(client.metrics.toPrometheus()).toMatch(/^tether_client_offline_queue_size 2$/m);
    await act(async () => {
      await result.current.clearOfflineQueue();
    });
    expect(client.metrics.snapshot().offlineQueueSize).toBe(0);
  });
});

describe("<OfflineStatus/>", () => {
  it("renders its testid, the state, and a Sync now button disabled while offline", async () => {
    const online = new ManualOnlineSource(false);
    const sync = sharedController(online);
    render(<OfflineStatus options={{ dbName: sync.dbName }} />);
    const root = screen.getByTestId("offline-status");
    expect(root.tagName).toBe("SECTION");
    expect(root.getAttribute("aria-label")).toBe("Offline queue");
    expect(screen.getByTestId("offline-status-network").textContent).toBe("Offline");
    expect(screen.getByTestId("offline-status-last-sync").textContent).toBe("Never");
    expect((screen.getByRole("button", { name: "Sync now" }) as HTMLButtonElement).disabled).toBe(true);
    await act(async () => {
      await sync.cacheOfflineMessage({ type: "test", id: "s1" });
      await sync.cacheOfflineMessage({ type: "test", id: "s2" });
    });
    expect(screen.getByTestId("offline-status-queue-size").textContent).toBe("2");
    act(() => {
      online.set(true);
    });
    expect(screen.getByTestId("offline-status-network").textContent).toBe("Online");
    expect((screen.getByRole("button", { name: "Sync now" }) as HTMLButtonElement).disabled).toBe(false);
  });

  it("Clear queue empties the queue", async () => {
    const sync = sharedController(new ManualOnlineSource(false));
    render(<OfflineStatus options={{ dbName: sync.dbName }} />);
    await act(async () => {
      await sync.cacheOfflineMessage({ type: "test", id: "c1" });
    });
    expect(screen.getByTestId("offline-status-queue-size").textContent).toBe("1");
    fireEvent.click(screen.getByRole("button", { name: "Clear queue" }));
    await waitFor(() => {
      expect(screen.getByTestId("offline-status-queue-size").textContent).toBe("0");
    });
    expect(await (await sync.getQueue()).size()).toBe(0);
  });

  it("Sync now replays (here over HTTP), shows syncing, then the last sync time", async () => {
    const gate: { release: () => void } = { release: () => undefined };
    const fetch = vi.fn(
      (_url: string | URL | Request, init?: RequestInit) =>
        new Promise<Response>((resolve) => {
          gate.release = () => {
            resolve(acks(init));
          };
        }),
    );
    const sync = sharedController(new ManualOnlineSource(true), {
      httpEndpoint: "http://gw.test/api/v1/messages?client_id=me",
      fetch: fetch as unknown as typeof globalThis.fetch,
    });
    await act(async () => {
      await sync.ready();
      await sync.cacheOfflineMessage({ type: "test", id: "n1" });
    });
    render(<OfflineStatus options={{ dbName: sync.dbName }} />);
    await waitFor(() => {
      expect(screen.getByTestId("offline-status-queue-size").textContent).toBe("1");
    });
    fireEvent.click(screen.getByRole("button", { name: "Sync now" }));
    await waitFor(() => {
      expect(screen.getByTestId("offline-status-syncing").textContent).toBe("Syncing…");
    });
    act(() => {
      gate.release();
    });
    await waitFor(() => {
      expect(screen.getByTestId("offline-status-queue-size").textContent).toBe("0");
      expect(screen.getByTestId("offline-status-syncing").textContent).toBe("Idle");
    });
    expect(screen.getByTestId("offline-status-last-sync").querySelector("time")).not.toBeNull();
    expect(screen.queryByTestId("offline-status-error")).toBeNull();
  });

  it("shows the last error", async () => {
    const fetch = vi.fn(() => Promise.resolve(new Response("nope", { status: 401 })));
    const sync = sharedController(new ManualOnlineSource(true), {
      httpEndpoint: "http://gw.test/api/v1/messages",
      fetch: fetch as unknown as typeof globalThis.fetch,
    });
    render(<OfflineStatus options={{ dbName: sync.dbName }} />);
    await act(async () => {
      await sync.cacheOfflineMessage({ type: "test", id: "e1" });
      await sync.syncOfflineMessages();
    });
    expect(screen.getByTestId("offline-status-error").textContent).toMatch(/HTTP 401/);
    expect(screen.getByTestId("offline-status-queue-size").textContent).toBe("1");
  });
});
