// WebSocketPoolProvider / useWebSocketPool / <PoolMetrics/> in jsdom against
// in-memory gateways (one `FakeGateway` per URL, reached through a
// `GatewaySocket`, the `FakeSocket` of support/fake-socket.ts, installed as
// the global `WebSocket` or injected through the config's `WebSocketImpl`),
// so no server is needed.

import { TetherPool } from "@tether/client";
import { act, cleanup, fireEvent, render, renderHook, screen, waitFor } from "@testing-library/react";
import { type ReactNode, StrictMode } from "react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { PoolMetrics, WebSocketPoolProvider, useWebSocketPool } from "../src/index";
import { FakeSocket, type Frame, resetFakes } from "./support/fake-socket.js";

const URL_A = "ws://localhost:8001/ws/dashboard";
const URL_B = "ws://localhost:8002/ws/dashboard";

/** A gateway stand-in per URL; its sockets are `GatewaySocket`s. */
class FakeGateway {
  readonly sockets: GatewaySocket[] = [];
  constructor(readonly name: string) {}
  /** The frames of `type` its sockets received. */
  commands(type: string): Frame[] {
    return this.sockets.flatMap((s) => s.sent.filter((m) => m["type"] === type));
  }
  open(): GatewaySocket[] {
    return this.sockets.filter((s) => s.readyState === 1);
  }
}

const gateways = new Map<string, FakeGateway>([
  [URL_A, new FakeGateway("a")],
  [URL_B, new FakeGateway("b")],
]);

function gateway(url: string): FakeGateway {
  const g = gateways.get(url);
  if (g === undefined) throw new Error(`no gateway at ${url}`);
  return g;
}

/** A `FakeSocket` to the gateway of its URL, whose name is in its welcome and in every command's result. */
class GatewaySocket extends FakeSocket {
  readonly gateway: FakeGateway;

  constructor(url: string) {
    super(url);
    this.gateway = gateway(url.split("?")[0] ?? "");
    this.gateway.sockets.push(this);
  }

  protected override identity(): { session: string; node: string } {
    return { session: `s-${this.gateway.name}`, node: this.gateway.name };
  }

  protected override command(msg: Frame): Frame {
    return { type: "result", id: msg["id"], data: { handledBy: this.gateway.name } };
  }
}

/** The guide's configuration, verbatim. */
const GUIDE_CONFIG = {
  maxConnections: 5,
  minConnections: 2,
  connectionTimeout: 10000,
  healthCheckInterval: 30000,
  loadBalancingStrategy: "health-based",
  urls: ["ws://localhost:8001/ws/dashboard", "ws://localhost:8002/ws/dashboard"],
} as const;

/** The guide's "Użycie z connection pooling" component, as written there. */
function MyComponent(): ReactNode {
  const {
    // eslint-disable-next-line @typescript-eslint/no-unused-vars
    pool,
    metrics,
    sendMessage,
    broadcastMessage,
    getConnectionCount,
  } = useWebSocketPool();

  const handleHighPriorityMessage = async () => {
    await sendMessage({ type: "urgent" }, 10); // High priority
  };

  const handleBroadcast = async () => {
    await broadcastMessage({ type: "notification" });
  };

  return (
    <div>
      <p>Active Connections: {getConnectionCount()}</p>
      <p>Healthy Connections: {metrics.healthyConnections}</p>
      <button onClick={handleHighPriorityMessage}>Send Urgent</button>
      <button onClick={handleBroadcast}>Broadcast</button>
    </div>
  );
}

afterEach(() => {
  cleanup();
  resetFakes();
  for (const g of gateways.values()) g.sockets.length = 0;
  vi.unstubAllGlobals();
});

describe("WebSocketPoolProvider", () => {
  it("runs the guide's example: counts, Send Urgent, Broadcast", async () => {
    vi.stubGlobal("WebSocket", GatewaySocket);
    // The guide's "Zaawansowana konfiguracja z pooling" props, inline as written there.
    render(
      <WebSocketPoolProvider
        config={{
          maxConnections: 5,
          minConnections: 2,
          connectionTimeout: 10000,
          healthCheckInterval: 30000,
          loadBalancingStrategy: "health-based",
          urls: ["ws://localhost:8001/ws/dashboard", "ws://localhost:8002/ws/dashboard"],
        }}
        enabled={true}
      >
        <MyComponent />
      </WebSocketPoolProvider>,
    );
    expect(screen.getByText("Healthy Connections: 0")).toBeDefined();
    await screen.findByText("Active Connections: 2");
    await screen.findByText("Healthy Connections: 2");
    expect(gateway(URL_A).open().length).toBe(1);
    expect(gateway(URL_B).open().length).toBe(1);

    fireEvent.click(screen.getByText("Send Urgent"));
    await waitFor(() => {
      expect(gateway(URL_A).commands("urgent").length + gateway(URL_B).commands("urgent").length).toBe(1);
    });

    fireEvent.click(screen.getByText("Broadcast"));
    await waitFor(() => {
      expect([gateway(URL_A), gateway(URL_B)].map((g) => g.commands("notification").length)).toEqual([1, 1]);
    });
  });

  it("sendMessage resolves with the reply; broadcastMessage with one result per connection", async () => {
    const { result } = renderHook(() => useWebSocketPool(), {
      wrapper: ({ children }) => (
        <WebSocketPoolProvider config={{ ...GUIDE_CONFIG, WebSocketImpl: GatewaySocket }}>{children}</WebSocketPoolProvider>
      ),
    });
    await waitFor(() => {
      expect(result.current.metrics.healthyConnections).toBe(2);
    });
    expect(result.current.pool).toBeInstanceOf(TetherPool);
    expect(result.current.getConnectionCount()).toBe(2);
    await expect(result.current.sendMessage({ type: "process_receipt", data: { imageUrl: "x.jpg" } })).resolves.toMatchObject({
      type: "result",
    });
    const results = await result.current.broadcastMessage({ type: "publish", channel: "news", data: 1 });
    expect(results.map((r) => [r.url, r.status])).toEqual([
      [URL_A, "fulfilled"],
      [URL_B, "fulfilled"],
    ]);
    await waitFor(() => {
      expect(result.current.metrics.totalRequests).toBe(3);
    });
  });

  it("keeps one pool across re-renders with an equal inline config, and makes a new one when it changes", async () => {
    const seen: (TetherPool | null)[] = [];
    function Probe(): ReactNode {
      seen.push(useWebSocketPool().pool);
      return null;
    }
    const { rerender } = render(
      <WebSocketPoolProvider config={{ ...GUIDE_CONFIG, WebSocketImpl: GatewaySocket }}>
        <Probe />
      </WebSocketPoolProvider>,
    );
    await waitFor(() => {
      expect(gateway(URL_A).open().length + gateway(URL_B).open().length).toBe(2);
    });
    rerender(
      <WebSocketPoolProvider config={{ ...GUIDE_CONFIG, WebSocketImpl: GatewaySocket }}>
        <Probe />
      </WebSocketPoolProvider>,
    );
    const first = seen[0];
    expect(new Set(seen).size).toBe(1);
    expect(gateway(URL_A).sockets.length + gateway(URL_B).sockets.length).toBe(2);

    rerender(
      <WebSocketPoolProvider config={{ ...GUIDE_CONFIG, minConnections: 1, WebSocketImpl: GatewaySocket }}>
        <Probe />
      </WebSocketPoolProvider>,
    );
    await waitFor(() => {
      expect(seen[seen.length - 1]).not.toBe(first);
    });
    expect(first?.isClosed).toBe(true);
    expect(seen[seen.length - 1]?.config.minConnections).toBe(1);
  });

  it("with enabled={false} has no pool, zero metrics, and refuses to send", async () => {
    const { result } = renderHook(() => useWebSocketPool(), {
      wrapper: ({ children }) => (
        <WebSocketPoolProvider config={{ ...GUIDE_CONFIG, WebSocketImpl: GatewaySocket }} enabled={false}>
          {children}
        </WebSocketPoolProvider>
      ),
    });
    expect(result.current.pool).toBeNull();
    expect(result.current.metrics).toMatchObject({ healthyConnections: 0, totalConnections: 0, totalRequests: 0 });
    expect(result.current.getConnectionCount()).toBe(0);
    await expect(result.current.sendMessage({ type: "urgent" })).rejects.toThrow(/pool is disabled/);
    await expect(result.current.broadcastMessage({ type: "notification" })).rejects.toThrow(/pool is disabled/);
    expect(gateway(URL_A).sockets.length + gateway(URL_B).sockets.length).toBe(0);
  });

  it("closes its pool on unmount, and a StrictMode double mount still connects", async () => {
    vi.stubGlobal("WebSocket", GatewaySocket);
    const { unmount } = render(
      <StrictMode>
        <WebSocketPoolProvider config={GUIDE_CONFIG}>
          <MyComponent />
        </WebSocketPoolProvider>
      </StrictMode>,
    );
    await screen.findByText("Healthy Connections: 2");
    unmount();
    await waitFor(() => {
      expect(gateway(URL_A).open().length + gateway(URL_B).open().length).toBe(0);
    });
  });

  it("starts an injected pool and leaves closing it to the caller", async () => {
    const pool = new TetherPool({ ...GUIDE_CONFIG, WebSocketImpl: GatewaySocket });
    const { unmount } = render(
      <WebSocketPoolProvider pool={pool}>
        <MyComponent />
      </WebSocketPoolProvider>,
    );
    await screen.findByText("Active Connections: 2");
    unmount();
    expect(pool.isClosed).toBe(false);
    pool.close();
  });
});

describe("useWebSocketPool", () => {
  it("throws a plain-English error outside a provider", () => {
    const spy = vi.spyOn(console, "error").mockImplementation(() => undefined);
    try {
      expect(() => renderHook(() => useWebSocketPool())).toThrow("useWebSocketPool must be used inside <WebSocketPoolProvider>");
    } finally {
      spy.mockRestore();
    }
  });
});

describe("<PoolMetrics/>", () => {
  it("shows connection counts, strategy, requests and one row per connection", async () => {
    render(
      <WebSocketPoolProvider config={{ ...GUIDE_CONFIG, WebSocketImpl: GatewaySocket }}>
        <PoolMetrics />
      </WebSocketPoolProvider>,
    );
    const panel = screen.getByTestId("pool-metrics");
    await waitFor(() => {
      expect(screen.getByTestId("pool-healthy-connections").textContent).toBe("2");
    });
    expect(screen.getByTestId("pool-total-connections").textContent).toBe("2");
    expect(screen.getByTestId("pool-strategy").textContent).toBe("health-based");
    expect(screen.getByTestId("pool-queued").textContent).toBe("0 / 1024");
    const rows = screen.getAllByTestId("pool-connection");
    expect(rows.map((r) => r.children[1]?.textContent)).toEqual([URL_A, URL_B]);
    expect(rows.map((r) => r.children[2]?.textContent)).toEqual(["connected", "connected"]);
    expect(panel.querySelector("table caption")?.textContent).toBe("Connections");
  });

  it("updates the request count after a send", async () => {
    function SendOnce(): ReactNode {
      const { sendMessage, metrics } = useWebSocketPool();
      return (
        <button
          disabled={metrics.healthyConnections === 0}
          onClick={() => {
            void sendMessage({ type: "urgent" });
          }}
        >
          send
        </button>
      );
    }
    render(
      <WebSocketPoolProvider config={{ ...GUIDE_CONFIG, WebSocketImpl: GatewaySocket }}>
        <SendOnce />
        <PoolMetrics />
      </WebSocketPoolProvider>,
    );
    await waitFor(() => {
      expect((screen.getByText("send") as HTMLButtonElement).disabled).toBe(false);
    });
    act(() => {
      fireEvent.click(screen.getByText("send"));
    });
    await waitFor(() => {
      expect(screen.getByTestId("pool-requests").textContent).toBe("1 (0)");
    });
  });

  it("says so when disabled or outside a provider, without throwing", () => {
    const { unmount } = render(
      <WebSocketPoolProvider config={GUIDE_CONFIG} enabled={false}>
        <PoolMetrics />
      </WebSocketPoolProvider>,
    );
    expect(screen.getByText("The connection pool is disabled.")).toBeDefined();
    expect(screen.getByTestId("pool-healthy-connections").textContent).toBe("0");
    unmount();
    render(<PoolMetrics />);
    expect(screen.getByTestId("pool-metrics").textContent).toContain("No connection pool here");
  });
});
