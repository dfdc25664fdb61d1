// `WebSocketPoolProvider` and `useWebSocketPool`: the React face of a
// `TetherPool`, with the prop and field names of the dashboard guide
// (`config`, `enabled`; `pool`, `metrics`, `sendMessage`, `broadcastMessage`,
// `getConnectionCount`) so that existing components keep working. Metrics come
// from the pool's store through `useSyncExternalStore`.
//
// Not here: choosing connections, health checks, queues (all in
// @tether/client's TetherPool). This file only wires the pool's lifecycle to
// React's: one pool per distinct configuration, started on mount and closed on
// unmount (StrictMode's double mount gets a fresh pool).

import {
  type BroadcastResult,
  EMPTY_POOL_METRICS,
  type PoolMetricsSnapshot,
  type RequestFrame,
  type ServerMessage,
  TetherPool,
  type TetherPoolOptions,
} from "@tether/client";
import { type ReactNode, createContext, useCallback, useContext, useEffect, useMemo, useRef, useState, useSyncExternalStore } from "react";

/** Props: the guide's `config` and `enabled`, or an injected `pool`. */
export interface WebSocketPoolProviderProps {
  /**
   * The pool configuration (the guide's `PoolConfig` plus client options such
   * as `token` or `clientId`). Usually an inline literal: the pool is made
   * again only when its JSON changes (functions such as `getToken` count by
   * presence, and the latest one is always used).
   */
  config?: TetherPoolOptions;
  /** When false there is no pool: `pool` is null, `metrics` all zeros, sends reject (default true). */
  enabled?: boolean;
  /** A pool made by the caller. The provider starts it but does not close it; `config` is then ignored. */
  pool?: TetherPool;
  children?: ReactNode;
}

/** What `useWebSocketPool()` returns. */
export interface WebSocketPoolContextValue {
  /** The pool, or null when `enabled` is false. */
  readonly pool: TetherPool | null;
  /** The pool's metrics (`healthyConnections`, `totalConnections`, …); all zeros when disabled. */
  readonly metrics: PoolMetricsSnapshot;
  /**
   * Sends one request through one connection (an `id` is added when missing);
   * higher `priority` waits ahead in the queue while nothing is connected
   * (default 0). Resolves with the reply frame.
   */
  readonly sendMessage: (message: RequestFrame, priority?: number) => Promise<ServerMessage>;
  /** Sends to every healthy connection; resolves with one settled result per connection. */
  readonly broadcastMessage: (message: RequestFrame) => Promise<BroadcastResult[]>;
  /** Connections with an open socket now (0 when disabled). */
  readonly getConnectionCount: () => number;
}

/**
 * The context itself, for components that work with or without a provider
 * (`useContext(WebSocketPoolContext)` is null outside one). Apps use the hook.
 */
export const WebSocketPoolContext = createContext<WebSocketPoolContextValue | null>(null);

/** The provider's value; throws when there is no `<WebSocketPoolProvider>` above. */
export function useWebSocketPool(): WebSocketPoolContextValue {
  const value = useContext(WebSocketPoolContext);
  if (value === null) throw new Error("useWebSocketPool must be used inside <WebSocketPoolProvider>");
  return value;
}

const noStore = {
  subscribe: (): (() => void) => () => undefined,
  getSnapshot: (): PoolMetricsSnapshot => EMPTY_POOL_METRICS,
};

function disabledError(): Error {
  return new Error("the WebSocket pool is disabled (<WebSocketPoolProvider enabled={false}>): nothing was sent");
}

/** The part of a config that decides whether a new pool is needed. */
function configKey(config: TetherPoolOptions | undefined): string {
  return JSON.stringify(config ?? null, (_key, value: unknown) => (typeof value === "function" ? "[function]" : value));
}

export function WebSocketPoolProvider(props: WebSocketPoolProviderProps): ReactNode {
  const enabled = props.enabled ?? true;
  const injected = props.pool;
  const key = configKey(props.config);
  const configRef = useRef(props.config);
  configRef.current = props.config;

  // The latest `getToken`, so that a new function identity does not make a new pool.
  const getTokenRef = useRef(props.config?.getToken);
  useEffect(() => {
    getTokenRef.current = props.config?.getToken;
  }, [props.config?.getToken]);

  const create = useCallback((): TetherPool => {
    const config = configRef.current;
    if (config === undefined) throw new Error("WebSocketPoolProvider needs `config` (or `pool`)");
    const options: TetherPoolOptions = { ...config };
    if (config.getToken !== undefined) options.getToken = async () => (await getTokenRef.current?.()) ?? null;
    return new TetherPool(options);
  }, []);

  // The provider's own pool. Made during render (the constructor validates and
  // does no I/O) so that its store exists at once; replaced in the effect when
  // it was closed (StrictMode's second mount, a config change, re-enabling).
  const [owned, setOwned] = useState<TetherPool | null>(() => (enabled && injected === undefined ? create() : null));
  const ownedRef = useRef(owned);

  useEffect(() => {
    if (!enabled) return undefined;
    if (injected !== undefined) {
      injected.start();
      return undefined;
    }
    let p = ownedRef.current;
    if (p === null || p.isClosed) {
      p = create();
      ownedRef.current = p;
      setOwned(p);
    }
    const mine = p;
    mine.start();
    return () => {
      mine.close();
    };
  }, [enabled, injected, key, create]);

  const pool = enabled ? (injected ?? owned ?? ownedRef.current) : null;
  const store = pool ?? noStore;
  const metrics = useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);

  const sendMessage = useCallback(
    (message: RequestFrame, priority?: number): Promise<ServerMessage> =>
      pool === null ? Promise.reject(disabledError()) : pool.send(message, priority),
    [pool],
  );
  const broadcastMessage = useCallback(
    (message: RequestFrame): Promise<BroadcastResult[]> => (pool === null ? Promise.reject(disabledError()) : pool.broadcast(message)),
    [pool],
  );
  const getConnectionCount = useCallback((): number => pool?.getConnectionCount() ?? 0, [pool]);

  const value = useMemo<WebSocketPoolContextValue>(
    () => ({ pool, metrics, sendMessage, broadcastMessage, getConnectionCount }),
    [pool, metrics, sendMessage, broadcastMessage, getConnectionCount],
  );
  return <WebSocketPoolContext.Provider value={value}>{props.children}</WebSocketPoolContext.Provider>;
}
