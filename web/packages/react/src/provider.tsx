// `WebSocketProvider` and `useWebSocketContext`: the React face of a
// `TetherClient`, with the prop and field names of the dashboard guide so that
// existing components keep working. Connection state comes from the client's
// store through `useSyncExternalStore`; `agents` and `systemMetrics` are kept
// from the `agents` / `system` channels and from request replies.
//
// Not here: reconnecting, heartbeats, queues, replay; all of that lives in
// @tether/client. This file only wires the client's lifecycle to React's.

import {
  type AgentStatusEntry,
  AgentStatusEntrySchema,
  type Event,
  type ConnectionSnapshot,
  type RequestFrame,
  type ServerMessage,
  type State,
  type SubscriptionItem,
  type SystemMetrics,
  SystemMetricsSchema,
  TetherClient,
  type TetherClientOptions,
  agentChannel,
  createLogger,
} from "@tether/client";
import {
  type ReactNode,
  createContext,
  useCallback,
  useContext,
  useEffect,
  useMemo,
  useRef,
  useState,
  useSyncExternalStore,
} from "react";

/**
 * The guide's props plus the client's connection options. Give `url`, `urls`
 * or `client`; with none of them, a page connects to its own origin's
 * `/ws/dashboard` (ws:// or wss:// after the page's scheme).
 */
export interface WebSocketProviderProps {
  /** The gateway's WebSocket URL, e.g. `ws://localhost:8001/ws/dashboard`. */
  url?: string;
  /** Several URLs, tried in turn. */
  urls?: readonly string[];
  /** Reconnect after a lost connection (default true). */
  autoReconnect?: boolean;
  /** Base reconnect delay in ms (default 1000). */
  reconnectInterval?: number;
  /** Give up after this many reconnect delays (default: never). */
  maxReconnectAttempts?: number;
  /** Ping after this many ms without sending (default 30000). */
  heartbeatInterval?: number;
  /** No pong within this many ms: the connection is dead (default 10000). */
  heartbeatTimeout?: number;
  /** A fixed access token. */
  token?: string;
  /** Asked before every connect; wins over `token`. Its identity may change without reconnecting. */
  getToken?: () => Promise<string | null | undefined>;
  /** A stable principal for deduplication across reconnects (default: kept in localStorage). */
  clientId?: string;
  /** How many recent events `events` keeps, newest last (default 100). */
  maxEvents?: number;
  /**
   * A client made by the caller. The provider starts it but does not close it
   * (the caller owns it); the options above are then ignored.
   */
  client?: TetherClient;
  children?: ReactNode;
}

/** What `useWebSocketContext()` returns. */
export interface WebSocketContextValue {
  /** True once the gateway's `welcome` arrived, until the connection is lost. */
  readonly isConnected: boolean;
  /** Why the connection is not up, or null. */
  readonly error: string | null;
  /** Connection attempts since the connection was lost (0 while connected). */
  readonly reconnectAttempts: number;
  /** The agents' status, from the `agents` channel and `requestAgentStatus()`. */
  readonly agents: readonly AgentStatusEntry[];
  /** The latest metrics, from the `system` channel and `requestSystemMetrics()`; null before the first. */
  readonly systemMetrics: SystemMetrics | null;
  /**
   * Recent events of the provider's subscriptions (`agents`, `system`, each
   * `subscribeToAgent` channel), oldest first, at most `maxEvents`: when full,
   * the oldest is dropped.
   */
  readonly events: readonly Event[];
  /** Sends a command or publish frame (an `id` is added when missing); resolves with the reply frame. */
  readonly sendMessage: (message: RequestFrame) => Promise<ServerMessage>;
  /**
   * Fetches the agents' status into `agents`. Callers who await it see its
   * failure; a fire-and-forget call's failure is not reported as unhandled.
   */
  readonly requestAgentStatus: () => Promise<AgentStatusEntry[]>;
  /** Fetches the metrics into `systemMetrics`; failures as for `requestAgentStatus`. */
  readonly requestSystemMetrics: () => Promise<SystemMetrics>;
  /** Subscribes to `agent:<name>` (status changes update `agents`); a second call is a no-op. */
  readonly subscribeToAgent: (name: string) => void;
  /** Undoes `subscribeToAgent(name)`. */
  readonly unsubscribeFromAgent: (name: string) => void;
  /** The underlying client, for everything else (publish, subscribe, command, …). */
  readonly client: TetherClient;
  /** The full connection state. */
  readonly state: State;
}

/**
 * The context itself, for bindings that work with or without a provider
 * (`useContext(WebSocketContext)` is null outside one). Apps use the hook.
 */
export const WebSocketContext = createContext<WebSocketContextValue | null>(null);

/** The provider's value; throws when there is no `<WebSocketProvider>` above. */
export function useWebSocketContext(): WebSocketContextValue {
  const value = useContext(WebSocketContext);
  if (value === null) throw new Error("useWebSocketContext must be used inside <WebSocketProvider>");
  return value;
}

const AgentListSchema = AgentStatusEntrySchema.array();
const log = createLogger("[WebSocketProvider]");

/** Default number of recent events kept in `events`. */
export const DEFAULT_MAX_EVENTS = 100;

/** A distinct key per client, so that a new client starts with empty `agents`/`events`. */
const clientKeys = new WeakMap<TetherClient, number>();
let nextClientKey = 0;
function clientKey(client: TetherClient): number {
  let key = clientKeys.get(client);
  if (key === undefined) {
    key = ++nextClientKey;
    clientKeys.set(client, key);
  }
  return key;
}

/** `ws(s)://<this page's host>/ws/dashboard`, or null outside a page. */
function sameOriginUrl(): string | null {
  const loc = (globalThis as { location?: { protocol: string; host: string } }).location;
  if (loc === undefined || loc.host === "") return null;
  return `${loc.protocol === "https:" ? "wss" : "ws"}://${loc.host}/ws/dashboard`;
}

/** Replaces (or adds) the entry with `entry.name`, keeping the order. */
function upsertAgent(agents: readonly AgentStatusEntry[], entry: AgentStatusEntry): AgentStatusEntry[] {
  const i = agents.findIndex((a) => a.name === entry.name);
  if (i < 0) return [...agents, entry];
  const next = [...agents];
  next[i] = entry;
  return next;
}

/** Marks `p` handled so that a fire-and-forget call cannot raise an unhandled rejection; returns `p`. */
function handled<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

export function WebSocketProvider(props: WebSocketProviderProps): ReactNode {
  const injected = props.client;

  // The latest `getToken`, so that a new function identity does not reconnect.
  const getTokenRef = useRef(props.getToken);
  useEffect(() => {
    getTokenRef.current = props.getToken;
  }, [props.getToken]);
  const hasGetToken = props.getToken !== undefined;

  // What a new client is made from; a change makes a new client.
  const optionsKey = JSON.stringify([
    props.url ?? null,
    props.urls ?? null,
    props.autoReconnect ?? null,
    props.reconnectInterval ?? null,
    props.maxReconnectAttempts ?? null,
    props.heartbeatInterval ?? null,
    props.heartbeatTimeout ?? null,
    props.token ?? null,
    props.clientId ?? null,
    hasGetToken,
  ]);
  const optionsRef = useRef({ props, hasGetToken });
  optionsRef.current = { props, hasGetToken };

  const create = useCallback((): TetherClient => {
    const { props: p, hasGetToken: withGetToken } = optionsRef.current;
    const options: TetherClientOptions = {};
    if (p.url !== undefined) options.url = p.url;
    if (p.urls !== undefined) options.urls = p.urls;
    if (p.url === undefined && p.urls === undefined) {
      const own = sameOriginUrl();
      if (own === null) throw new Error("WebSocketProvider needs `url`, `urls` or `client` outside a browser page");
      options.url = own;
    }
    if (p.autoReconnect !== undefined) options.autoReconnect = p.autoReconnect;
    if (p.reconnectInterval !== undefined) options.reconnectInterval = p.reconnectInterval;
    if (p.maxReconnectAttempts !== undefined) options.maxReconnectAttempts = p.maxReconnectAttempts;
    if (p.heartbeatInterval !== undefined) options.heartbeatInterval = p.heartbeatInterval;
    if (p.heartbeatTimeout !== undefined) options.heartbeatTimeout = p.heartbeatTimeout;
    if (p.token !== undefined) options.token = p.token;
    if (p.clientId !== undefined) options.clientId = p.clientId;
    if (withGetToken) options.getToken = async () => (await getTokenRef.current?.()) ?? null;
    log("creating a client", options.url ?? options.urls);
    return new TetherClient(options);
  }, []);

  // The provider's own client. Made during render (the constructor does no
  // I/O) so that the store exists at once; replaced in the effect when it was
  // closed (StrictMode's second mount) or the options changed.
  const [owned, setOwned] = useState<TetherClient | null>(() => (injected === undefined ? create() : null));
  const ownedRef = useRef(owned);

  useEffect(() => {
    if (injected !== undefined) {
      injected.start();
      return undefined;
    }
    let c = ownedRef.current;
    if (c === null || c.state.kind === "closed") {
      c = create();
      ownedRef.current = c;
      setOwned(c);
    }
    const mine = c;
    mine.start();
    return () => {
      mine.close();
    };
  }, [injected, optionsKey, create]);

  const client = injected ?? owned ?? ownedRef.current;
  if (client === null) throw new Error("WebSocketProvider needs `url`, `urls` or `client`");
  return (
    <ClientProvider key={clientKey(client)} client={client} maxEvents={props.maxEvents ?? DEFAULT_MAX_EVENTS}>
      {props.children}
    </ClientProvider>
  );
}

/** The context for one client; keyed by client, so a new client starts from empty state. */
function ClientProvider({
  client,
  maxEvents,
  children,
}: {
  client: TetherClient;
  maxEvents: number;
  children?: ReactNode;
}): ReactNode {
  const snapshot: ConnectionSnapshot = useSyncExternalStore(client.subscribeState, client.getSnapshot);
  const [agents, setAgents] = useState<readonly AgentStatusEntry[]>([]);
  const [systemMetrics, setSystemMetrics] = useState<SystemMetrics | null>(null);
  const [events, setEvents] = useState<readonly Event[]>([]);
  const agentSubs = useRef(new Map<string, () => void>());
  const maxEventsRef = useRef(maxEvents);
  maxEventsRef.current = maxEvents;

  /** Appends to `events`, dropping the oldest beyond `maxEvents`. */
  const remember = useCallback((event: Event) => {
    setEvents((list) => {
      const max = Math.max(0, maxEventsRef.current);
      const next = [...list, event];
      return next.length > max ? next.slice(next.length - max) : next;
    });
  }, []);

  useEffect(() => {
    log(`connection ${snapshot.state.kind}`, snapshot.error ?? "");
  }, [snapshot]);

  useEffect(() => {
    // After `recovered: false` pushes were missed: fetch the current state.
    const refetch = (fetch: () => Promise<unknown>): void => {
      fetch().catch((e: unknown) => {
        log("refetch after a gap failed", e);
      });
    };
    const offAgents = client.subscribe("agents", (item: SubscriptionItem) => {
      if (item.kind === "recovered" && !item.ok) {
        refetch(() => client.requestAgentStatus().then(setAgents));
      }
      if (item.kind !== "event") return;
      remember(item.event);
      const parsed = AgentListSchema.safeParse(item.event.data);
      if (parsed.success) setAgents(parsed.data);
    });
    const offSystem = client.subscribe("system", (item: SubscriptionItem) => {
      if (item.kind === "recovered" && !item.ok) {
        refetch(() => client.requestSystemMetrics().then(setSystemMetrics));
      }
      if (item.kind !== "event") return;
      remember(item.event);
      const parsed = SystemMetricsSchema.safeParse(item.event.data);
      if (parsed.success) setSystemMetrics(parsed.data);
    });
    const subs = agentSubs.current;
    return () => {
      offAgents();
      offSystem();
      for (const off of subs.values()) off();
      subs.clear();
    };
  }, [client, remember]);

  const sendMessage = useCallback((message: RequestFrame) => client.request(message), [client]);

  const requestAgentStatus = useCallback(
    () =>
      handled(
        client.requestAgentStatus().then((list) => {
          setAgents(list);
          return list;
        }),
      ),
    [client],
  );

  const requestSystemMetrics = useCallback(
    () =>
      handled(
        client.requestSystemMetrics().then((metrics) => {
          setSystemMetrics(metrics);
          return metrics;
        }),
      ),
    [client],
  );

  const subscribeToAgent = useCallback(
    (name: string) => {
      if (agentSubs.current.has(name)) return;
      const off = client.subscribe(agentChannel(name), (item: SubscriptionItem) => {
        if (item.kind !== "event") return;
        remember(item.event);
        const data = item.event.data as { kind?: unknown } | null;
        if (data === null || typeof data !== "object" || data.kind !== "status") return;
        const parsed = AgentStatusEntrySchema.safeParse(data);
        if (parsed.success) setAgents((list) => upsertAgent(list, parsed.data));
      });
      agentSubs.current.set(name, off);
    },
    [client, remember],
  );

  const unsubscribeFromAgent = useCallback((name: string) => {
    const off = agentSubs.current.get(name);
    if (off === undefined) return;
    agentSubs.current.delete(name);
    off();
  }, []);

  const value = useMemo<WebSocketContextValue>(
    () => ({
      isConnected: snapshot.isConnected,
      error: snapshot.error,
      reconnectAttempts: snapshot.reconnectAttempts,
      agents,
      systemMetrics,
      events,
      sendMessage,
      requestAgentStatus,
      requestSystemMetrics,
      subscribeToAgent,
      unsubscribeFromAgent,
      client,
      state: snapshot.state,
    }),
    [snapshot, agents, systemMetrics, events, sendMessage, requestAgentStatus, requestSystemMetrics, subscribeToAgent, unsubscribeFromAgent, client],
  );

  return <WebSocketContext.Provider value={value}>{children}</WebSocketContext.Provider>;
}
