// WebSocketProvider / useWebSocketContext in jsdom against an in-memory
// gateway stand-in (`FakeSocket`, support/fake-socket.ts) injected through TetherClient's
// `WebSocketImpl` option (or the global `WebSocket`), so no server is needed.

import { type LogPrefix, setDebug, setLogSink } from "@tether/client";
import { act, cleanup, render, renderHook, screen, waitFor } from "@testing-library/react";
import { StrictMode } from "react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { WebSocketMetrics, WebSocketProvider, useWebSocketContext } from "../src/index";
import { AGENT, FakeSocket, fakeClient, resetFakes } from "./support/fake-socket.js";

/** Shows the context fields that the tests read. */
function Status(): React.ReactNode {
  const { isConnected, agents, error } = useWebSocketContext();
  return (
    <div>
      <span data-testid="connected">{String(isConnected)}</span>
      <span data-testid="agents">{agents.map((a) => `${a.name}:${a.status}`).join(",")}</span>
      <span data-testid="error">{error ?? ""}</span>
    </div>
  );
}

beforeEach(() => {
  // No agent behind this gateway: commands get `no_handler`.
  FakeSocket.commands = "no_handler";
});

afterEach(() => {
  cleanup();
  resetFakes();
  vi.unstubAllGlobals();
});

describe("WebSocketProvider", () => {
  it("reports isConnected once the welcome arrives", async () => {
    const client = fakeClient();
    render(
      <WebSocketProvider client={client}>
        <Status />
      </WebSocketProvider>,
    );
    expect(screen.getByTestId("connected").textContent).toBe("false");
    await waitFor(() => {
      expect(screen.getByTestId("connected").textContent).toBe("true");
    });
    expect(screen.getByTestId("error").textContent).toBe("");
  });

  it("fills agents from requestAgentStatus()", async () => {
    const client = fakeClient();
    const { result } = renderHook(() => useWebSocketContext(), {
      wrapper: ({ children }) => <WebSocketProvider client={client}>{children}</WebSocketProvider>,
    });
    await waitFor(() => {
      expect(result.current.isConnected).toBe(true);
    });
    expect(result.current.agents).toEqual([]);
    let reply: unknown;
    await act(async () => {
      reply = await result.current.requestAgentStatus();
    });
    expect(reply).toEqual([AGENT]);
    expect(result.current.agents).toEqual([AGENT]);
    const types = FakeSocket.instances[0]?.sent.map((m) => m["type"]);
    expect(types).toContain("request_agent_status");
  });

  it("keeps agents current from the agents channel and subscribes agent:<name>", async () => {
    const client = fakeClient();
    const { result } = renderHook(() => useWebSocketContext(), {
      wrapper: ({ children }) => <WebSocketProvider client={client}>{children}</WebSocketProvider>,
    });
    await waitFor(() => {
      expect(result.current.isConnected).toBe(true);
    });
    const socket = FakeSocket.instances[0];
    if (socket === undefined) throw new Error("no socket");
    await waitFor(() => {
      expect(socket.sent.some((m) => m["type"] === "subscribe" && m["channel"] === "agents")).toBe(true);
    });
    act(() => {
      socket.event("agents", 1, [{ ...AGENT, status: "busy" }]);
    });
    await waitFor(() => {
      expect(result.current.agents.map((a) => a.status)).toEqual(["busy"]);
    });

    act(() => {
      result.current.subscribeToAgent("receipt-processor");
    });
    const subscribed = socket.sent.find((m) => m["type"] === "subscribe" && m["channel"] === "agent:receipt-processor");
    expect(subscribed).toBeDefined();
    act(() => {
      result.current.unsubscribeFromAgent("receipt-processor");
    });
    const unsubscribed = socket.sent.find(
      (m) => m["type"] === "unsubscribe" && m["channel"] === "agent:receipt-processor",
    );
    expect(unsubscribed).toBeDefined();
  });

  it("sendMessage resolves with the reply and rejects on a gateway error", async () => {
    const client = fakeClient();
    const { result } = renderHook(() => useWebSocketContext(), {
      wrapper: ({ children }) => <WebSocketProvider client={client}>{children}</WebSocketProvider>,
    });
    await waitFor(() => {
      expect(result.current.isConnected).toBe(true);
    });
    await expect(result.current.sendMessage({ type: "ping" })).resolves.toMatchObject({ type: "pong" });
    await expect(
      result.current.sendMessage({ type: "process_receipt", data: { imageUrl: "x.jpg" } }),
    ).rejects.toMatchObject({ name: "GatewayError", code: "no_handler" });
  });

  it("creates its own client from url, starts it on mount and closes it on unmount", async () => {
    vi.stubGlobal("WebSocket", FakeSocket);
    const { unmount } = render(
      <WebSocketProvider url="ws://gateway.test/ws" reconnectInterval={5000} heartbeatInterval={30000}>
        <Status />
      </WebSocketProvider>,
    );
    await waitFor(() => {
      expect(screen.getByTestId("connected").textContent).toBe("true");
    });
    const socket = FakeSocket.instances[0];
    expect(socket?.url).toMatch(/^ws:\/\/gateway\.test\/ws\?client_id=/);
    unmount();
    expect(socket?.readyState).toBe(3);
  });
});

describe("WebSocketProvider: the guide's extra fields", () => {
  it("keeps recent events, oldest first, at most maxEvents", async () => {
    const client = fakeClient();
    const { result } = renderHook(() => useWebSocketContext(), {
      wrapper: ({ children }) => (
        <WebSocketProvider client={client} maxEvents={2}>
          {children}
        </WebSocketProvider>
      ),
    });
    await waitFor(() => {
      expect(result.current.isConnected).toBe(true);
    });
    expect(result.current.events).toEqual([]);
    expect(result.current.reconnectAttempts).toBe(0);
    const socket = FakeSocket.instances[0];
    if (socket === undefined) throw new Error("no socket");
    await waitFor(() => {
      expect(socket.sent.some((m) => m["type"] === "subscribe" && m["channel"] === "agents")).toBe(true);
    });
    act(() => {
      socket.event("agents", 1, [AGENT]);
      socket.event("agents", 2, [AGENT]);
      socket.event("agents", 3, [{ ...AGENT, status: "busy" }]);
    });
    await waitFor(() => {
      expect(result.current.events.map((e) => e.seq)).toEqual([2, 3]);
    });
    expect(result.current.events[1]?.channel).toBe("agents");
  });

  it("refetches the agents after a reconnect whose recovery failed", async () => {
    const client = fakeClient({ reconnectInterval: 1 });
    const { result } = renderHook(() => useWebSocketContext(), {
      wrapper: ({ children }) => <WebSocketProvider client={client}>{children}</WebSocketProvider>,
    });
    await waitFor(() => {
      expect(result.current.isConnected).toBe(true);
    });
    const first = FakeSocket.instances[0];
    if (first === undefined) throw new Error("no socket");
    await waitFor(() => {
      expect(first.sent.some((m) => m["type"] === "subscribe" && m["channel"] === "agents")).toBe(true);
    });
    act(() => {
      first.event("agents", 1, [{ ...AGENT, status: "busy" }]);
    });
    await waitFor(() => {
      expect(result.current.agents.map((a) => a.status)).toEqual(["busy"]);
    });
    act(() => {
      first.close(1006, "network");
    });
    await waitFor(() => {
      expect(FakeSocket.instances.length).toBe(2);
    });
    const second = FakeSocket.instances[1];
    await waitFor(() => {
      expect(second?.sent.some((m) => m["type"] === "request_agent_status")).toBe(true);
    });
    await waitFor(() => {
      expect(result.current.agents.map((a) => a.status)).toEqual(["idle"]);
    });
  });

  it("starts from empty state when given a different client", async () => {
    let current = fakeClient();
    const { result, rerender } = renderHook(() => useWebSocketContext(), {
      wrapper: ({ children }) => <WebSocketProvider client={current}>{children}</WebSocketProvider>,
    });
    await waitFor(() => {
      expect(result.current.isConnected).toBe(true);
    });
    await act(async () => {
      await result.current.requestAgentStatus();
    });
    expect(result.current.agents).toHaveLength(1);
    current = fakeClient();
    rerender();
    expect(result.current.client).toBe(current);
    expect(result.current.agents).toEqual([]);
  });

  it("connects to the page's own /ws/dashboard when given no url", async () => {
    vi.stubGlobal("WebSocket", FakeSocket);
    render(
      <WebSocketProvider>
        <Status />
      </WebSocketProvider>,
    );
    await waitFor(() => {
      expect(screen.getByTestId("connected").textContent).toBe("true");
    });
    expect(FakeSocket.instances[0]?.url).toMatch(new RegExp(`^ws://${location.host}/ws/dashboard\\?client_id=`));
  });

  it("logs with the [WebSocketProvider] prefix only when debug is on", async () => {
    const lines: string[] = [];
    setLogSink((prefix: LogPrefix, message: string) => {
      lines.push(`${prefix} ${message}`);
    });
    try {
      vi.stubGlobal("WebSocket", FakeSocket);
      const { unmount } = render(
        <WebSocketProvider url="ws://gateway.test/ws">
          <Status />
        </WebSocketProvider>,
      );
      await waitFor(() => {
        expect(screen.getByTestId("connected").textContent).toBe("true");
      });
      unmount();
      expect(lines).toEqual([]);
      setDebug(true);
      render(
        <WebSocketProvider url="ws://gateway.test/ws">
          <Status />
        </WebSocketProvider>,
      );
      await waitFor(() => {
        expect(lines.some((l) => l.startsWith("[WebSocketProvider] connection connected"))).toBe(true);
      });
      expect(lines.some((l) => l.startsWith("[WebSocket] connecting to ws://gateway.test/ws"))).toBe(true);
    } finally {
      setDebug(false);
      setLogSink(null);
    }
  });
});

describe("WebSocketMetrics", () => {
  it("renders under its test id and downloads the client's metrics as websocket_metrics.prom", async () => {
    const client = fakeClient();
    render(
      <WebSocketProvider client={client}>
        <WebSocketMetrics refreshInterval={100} />
      </WebSocketProvider>,
    );
    const panel = screen.getByTestId("websocket-metrics");
    await waitFor(() => {
      expect(screen.getByTestId("websocket-status").textContent).toBe("Connected");
    });
    const blobs: Blob[] = [];
    const downloads: string[] = [];
    vi.stubGlobal("URL", Object.assign(URL, {
      createObjectURL: (b: Blob) => {
        blobs.push(b);
        return "blob:metrics";
      },
      revokeObjectURL: () => undefined,
    }));
    const click = vi.spyOn(HTMLAnchorElement.prototype, "click").mockImplementation(function (this: HTMLAnchorElement) {
      downloads.push(this.download);
    });
    try {
      act(() => {
        screen.getByRole("button", { name: "Download Prometheus metrics" }).click();
      });
      expect(downloads).toEqual(["websocket_metrics.prom"]);
      const text = await blobs[0]?.text();
      expect(text).toContain("# TYPE tether_client_connect_attempts_total counter\ntether_client_connect_attempts_total 1\n");
      expect(text).toContain("tether_client_connected 1\n");
      expect(panel.textContent).toContain("Reconnect attempts");
    } finally {
      click.mockRestore();
    }
  });
});

describe("WebSocketProvider under StrictMode", () => {
  it("reconnects with a fresh client after the double mount", async () => {
    vi.stubGlobal("WebSocket", FakeSocket);
    render(
      <StrictMode>
        <WebSocketProvider url="ws://gateway.test/ws">
          <Status />
        </WebSocketProvider>
      </StrictMode>,
    );
    await waitFor(() => {
      expect(screen.getByTestId("connected").textContent).toBe("true");
    });
  });
});

describe("useWebSocketContext", () => {
  it("throws a plain-English error outside a provider", () => {
    // React logs the render error; keep the test output readable.
    const spy = vi.spyOn(console, "error").mockImplementation(() => undefined);
    try {
      expect(() => renderHook(() => useWebSocketContext())).toThrow(
        "useWebSocketContext must be used inside <WebSocketProvider>",
      );
    } finally {
      spy.mockRestore();
    }
  });
});
