// `useOfflineSync`: the guide's offline hook over @tether/client's shared
// `OfflineSync` controller (one per database in a page, read through
// `useSyncExternalStore`), returning exactly the guide's `OfflineSyncReturn`
// fields so that existing components work as written, e.g.
// `await sendMessageWithOfflineFallback(message, sendMessage)` with a message
// that has no id.
//
// Inside a `<WebSocketProvider>`, while its client is connected, replays go
// through the client (`client.request(frame)`: the gateway's reply settles each
// message) and every (re)connect triggers one; while it is not connected,
// replays go over HTTP to `POST /api/v1/messages` of the client's gateway
// (`httpEndpointFor(client.currentUrl, client.clientId)`: the app and the
// gateway may well be on different origins), or to the `httpEndpoint` option
// with its `client_id` set to the client's, so that the gateway's
// deduplication sees the same principal; the HTTP replay authenticates with
// the `token` option, else with the client's (`client.accessToken()`). From
// another origin the browser sends that POST only when the gateway allows it:
// the gateway answers CORS on `/api/v1/*` for any origin, or for those of its
// `--allowed-origin` list; for a refused origin the attempt fails as a network
// error and the messages wait, in order, for the WebSocket replay. The provider client's
// `tether_client_offline_queue_size` gauge follows the queue. Without a
// provider, replays need the `httpEndpoint` option.
//
// Not here: the queue, replay rules, bounds (see offline-queue.ts and
// offline-sync.ts in @tether/client), the Service Worker.

import {
  type HttpReplayConfig,
  OFFLINE_DB_NAME,
  type OfflineFrame,
  type OfflineMessage,
  type OfflineSender,
  type OfflineSync,
  type OfflineSyncOptions,
  type OfflineSyncSnapshot,
  type TetherClient,
  getOfflineSync,
  httpEndpointFor,
} from "@tether/client";
import { useCallback, useContext, useEffect, useMemo, useSyncExternalStore } from "react";
import { WebSocketContext } from "./provider.js";

/**
 * Options of `useOfflineSync`: the controller's (`dbName`, `maxMessages`,
 * `maxBytes`, `online`, `httpEndpoint`, `token`, …). The first hook of a page
 * to use a `dbName` creates the shared controller with its options; later
 * hooks share it, and only their `httpEndpoint` / `token` still apply.
 */
export type UseOfflineSyncOptions = OfflineSyncOptions;

/**
 * The function given to `sendMessageWithOfflineFallback`: it receives the
 * message with its `id` (assigned when missing) and settles when the gateway
 * answered, e.g. `sendMessage` of `useWebSocketContext()`.
 */
export type OfflineSendFn<M extends object> = (frame: M & { readonly id: string }) => unknown;

/** What `useOfflineSync()` returns: the guide's `OfflineSyncReturn`. */
export interface OfflineSyncReturn {
  /** Whether the device has a network (`navigator.onLine` and its events). */
  readonly isOnline: boolean;
  /** The messages waiting to be sent, oldest first. */
  readonly offlineQueue: readonly OfflineMessage[];
  /** A replay is running. */
  readonly isSyncing: boolean;
  /** When the last replay completed (ms since the epoch), or null. */
  readonly lastSyncTime: number | null;
  /**
   * Queues a `publish` or command (an `id` is added when missing) for the next
   * replay. Rejects for an invalid message or a full queue (nothing stored).
   */
  readonly cacheOfflineMessage: (msg: object) => Promise<void>;
  /** Replays the queue now (joins a running replay); never rejects. Offline, nothing is sent. */
  readonly syncOfflineMessages: () => Promise<void>;
  /** Empties the queue. */
  readonly clearOfflineQueue: () => Promise<void>;
  /**
   * Sends `msg` with `sendFn` when online, else queues it; while older
   * messages are queued (or being replayed) it is queued behind them and a
   * replay is started, so that it never overtakes them. On a send failure
   * other than the gateway's final refusal (a non-retryable or duplicate
   * error, or `no_handler` / `timeout` for a command: rethrown) it is queued
   * too, with the same id. Rejects when it cannot be queued (full, invalid);
   * a message that is neither a `publish` nor a command rejects with its own
   * send error.
   */
  readonly sendMessageWithOfflineFallback: <M extends object>(msg: M, sendFn: OfflineSendFn<M>) => Promise<void>;
}

/** `endpoint` (absolute or relative) with its `client_id` query parameter set to `clientId`. */
function withClientId(endpoint: string, clientId: string): string {
  const hashAt = endpoint.indexOf("#");
  const hash = hashAt < 0 ? "" : endpoint.slice(hashAt);
  const rest = hashAt < 0 ? endpoint : endpoint.slice(0, hashAt);
  const queryAt = rest.indexOf("?");
  const path = queryAt < 0 ? rest : rest.slice(0, queryAt);
  const params = new URLSearchParams(queryAt < 0 ? "" : rest.slice(queryAt + 1));
  params.set("client_id", clientId);
  return `${path}?${params.toString()}${hash}`;
}

/**
 * The HTTP replay's endpoint: with a provider client, `explicit` with its
 * `client_id` set to the client's, else `POST /api/v1/messages` of the
 * client's gateway; without one, `explicit` as given (null: no HTTP replay).
 */
function replayEndpoint(explicit: string | undefined, client: TetherClient | null, currentUrl: string | null): string | null {
  if (client === null) return explicit ?? null;
  if (explicit !== undefined) return withClientId(explicit, client.clientId);
  if (currentUrl === null) return null;
  try {
    return httpEndpointFor(currentUrl, client.clientId);
  } catch {
    return null; // not a ws/wss/http(s) URL: no HTTP replay
  }
}

/**
 * The shared controller and its snapshot, for components that need more than
 * the guide's fields (e.g. `lastError`, `<OfflineStatus/>`). Wires the nearest
 * `<WebSocketProvider>` as described in this file's header.
 */
export function useOfflineSyncController(options: UseOfflineSyncOptions = {}): {
  readonly sync: OfflineSync;
  readonly snapshot: OfflineSyncSnapshot;
} {
  const dbName = options.queue?.dbName ?? options.dbName ?? OFFLINE_DB_NAME;
  // Shared per database: every hook of the page (and StrictMode's double
  // render) gets the same controller, made with the first caller's options.
  // Keyed by dbName only, on purpose: later options do not make a new one.
  const memo = useMemo(() => getOfflineSync(options), [dbName]);
  // A closed controller (someone called close()) is replaced by a fresh shared one.
  const sync = memo.isClosed ? getOfflineSync(options) : memo;
  const snapshot = useSyncExternalStore(sync.subscribe, sync.getSnapshot, sync.getSnapshot);

  const ctx = useContext(WebSocketContext);
  const client = ctx?.client ?? null;
  const isConnected = ctx?.isConnected ?? false;
  // Read on every render (the provider re-renders on each connection change),
  // so that the HTTP replay follows the client to another of its URLs.
  const currentUrl = client?.currentUrl ?? null;
  const { httpEndpoint, token } = options;

  // The HTTP replay (used whenever no WebSocket sender is registered).
  useEffect(() => {
    const endpoint = replayEndpoint(httpEndpoint, client, currentUrl);
    if (endpoint === null) return undefined;
    const config: HttpReplayConfig =
      token !== undefined
        ? { endpoint, token }
        : client !== null
          ? { endpoint, token: () => client.accessToken() }
          : { endpoint };
    return sync.setHttpReplay(config);
  }, [sync, client, currentUrl, httpEndpoint, token]);

  // The provider client's offline queue gauge (`tether_client_offline_queue_size`).
  const queued = snapshot.offlineQueue.length;
  useEffect(() => {
    client?.metrics.setOfflineQueueSize(queued);
  }, [client, queued]);

  // The WebSocket sender while connected, and a replay on every (re)connect.
  useEffect(() => {
    if (client === null || !isConnected) return undefined;
    const withdraw = sync.setSender((frame: OfflineFrame) => client.request(frame));
    sync.notifyConnected();
    return withdraw;
  }, [sync, client, isConnected]);

  return { sync, snapshot };
}

/**
 * The guide's offline hook. Works with or without a `<WebSocketProvider>`
 * above (see the file header for what the provider adds).
 */
export function useOfflineSync(options: UseOfflineSyncOptions = {}): OfflineSyncReturn {
  const { sync, snapshot } = useOfflineSyncController(options);
  const client = useContext(WebSocketContext)?.client ?? null;

  const cacheOfflineMessage = useCallback(
    async (msg: object): Promise<void> => {
      await sync.cacheOfflineMessage(msg);
    },
    [sync],
  );
  const syncOfflineMessages = useCallback(async (): Promise<void> => {
    await sync.syncOfflineMessages();
  }, [sync]);
  const clearOfflineQueue = useCallback((): Promise<void> => sync.clearOfflineQueue(), [sync]);
  const sendMessageWithOfflineFallback = useCallback(
    async <M extends object>(msg: M, sendFn: OfflineSendFn<M>): Promise<void> => {
      // While the provider's connection is down, a send would wait in memory
      // (lost on a reload) until it returns: queue durably at once instead;
      // the replay on reconnect (or over HTTP) sends it with the same id.
      if (client !== null && !client.getSnapshot().isConnected) {
        await sync.cacheOfflineMessage(msg);
        return;
      }
      await sync.sendMessageWithOfflineFallback(msg, sendFn as unknown as OfflineSender);
    },
    [sync, client],
  );

  return useMemo(
    () => ({
      isOnline: snapshot.isOnline,
      offlineQueue: snapshot.offlineQueue,
      isSyncing: snapshot.isSyncing,
      lastSyncTime: snapshot.lastSyncTime,
      cacheOfflineMessage,
      syncOfflineMessages,
      clearOfflineQueue,
      sendMessageWithOfflineFallback,
    }),
    [snapshot, cacheOfflineMessage, syncOfflineMessages, clearOfflineQueue, sendMessageWithOfflineFallback],
  );
}
