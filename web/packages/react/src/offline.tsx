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
// replays go over HTTP to `POST /api/v1/messages` (the `httpEndpoint` option,
// else this page's origin), with the client's `client_id` so that the
// gateway's deduplication sees the same principal. Without a provider, replays
// need the `httpEndpoint` option.
//
// Not here: the queue, replay rules, bounds (see offline-queue.ts and
// offline-sync.ts in @tether/client), the Service Worker.

import {
  OFFLINE_DB_NAME,
  type OfflineFrame,
  type OfflineMessage,
  type OfflineSender,
  type OfflineSync,
  type OfflineSyncOptions,
  type OfflineSyncSnapshot,
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
   * Sends `msg` with `sendFn` when online, else queues it; on a send failure
   * other than the gateway's final refusal (which is rethrown) it is queued
   * too, with the same id. Rejects when it cannot be queued (full, invalid).
   */
  readonly sendMessageWithOfflineFallback: <M extends object>(msg: M, sendFn: OfflineSendFn<M>) => Promise<void>;
}

/** The HTTP endpoint on this page's origin, or null outside a page. */
function sameOriginEndpoint(clientId: string): string | null {
  const loc = (globalThis as { location?: { protocol?: string; host?: string } }).location;
  if (loc?.host === undefined || loc.host === "") return null;
  if (loc.protocol !== "http:" && loc.protocol !== "https:") return null;
  return httpEndpointFor(`${loc.protocol}//${loc.host}/ws`, clientId);
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
  const { httpEndpoint, token } = options;

  // The HTTP replay (used whenever no WebSocket sender is registered).
  useEffect(() => {
    const endpoint = httpEndpoint ?? (client === null ? null : sameOriginEndpoint(client.clientId));
    if (endpoint === null) return undefined;
    return sync.setHttpReplay(token === undefined ? { endpoint } : { endpoint, token });
  }, [sync, client, httpEndpoint, token]);

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
