// `<OfflineStatus/>`: the offline queue at a glance (network state, queued
// messages, replay in progress, last replay time, last error) with "Sync now"
// (disabled while offline) and "Clear queue" buttons. Reads the page's shared
// offline controller through `useOfflineSyncController`, so it shows the same
// queue as every `useOfflineSync()`; works with or without a
// `<WebSocketProvider>` above. Plain semantic HTML for the app to style.
//
// Not here: any queue or replay logic (see @tether/client's offline-sync.ts).

import { type ReactNode, useCallback } from "react";
import { type UseOfflineSyncOptions, useOfflineSyncController } from "../offline.js";

export interface OfflineStatusProps {
  /** Options of the shared controller (see `useOfflineSync`); usually none. */
  options?: UseOfflineSyncOptions;
  /** The heading (default "Offline queue"). */
  title?: string;
}

function formatTime(ms: number): string {
  return new Date(ms).toLocaleString();
}

/** The offline queue's state and its two actions; the root has `data-testid="offline-status"`. */
export function OfflineStatus({ options, title = "Offline queue" }: OfflineStatusProps): ReactNode {
  const { sync, snapshot } = useOfflineSyncController(options);
  const { isOnline, offlineQueue, isSyncing, lastSyncTime, lastError } = snapshot;

  const syncNow = useCallback(() => {
    void sync.syncOfflineMessages(); // never rejects; failures show in lastError
  }, [sync]);
  const clear = useCallback(() => {
    sync.clearOfflineQueue().catch(() => undefined); // the failure shows in lastError
  }, [sync]);

  return (
    <section data-testid="offline-status" aria-label={title}>
      <h2>{title}</h2>
      <dl>
        <dt>Network</dt>
        <dd data-testid="offline-status-network" aria-live="polite">
          {isOnline ? "Online" : "Offline"}
        </dd>
        <dt>Queued messages</dt>
        <dd data-testid="offline-status-queue-size">{offlineQueue.length}</dd>
        <dt>Sync</dt>
        <dd data-testid="offline-status-syncing" aria-busy={isSyncing}>
          {isSyncing ? "Syncing…" : "Idle"}
        </dd>
        <dt>Last sync</dt>
        <dd data-testid="offline-status-last-sync">
          {lastSyncTime === null ? "Never" : <time dateTime={new Date(lastSyncTime).toISOString()}>{formatTime(lastSyncTime)}</time>}
        </dd>
        {lastError !== null && (
          <>
            <dt>Last error</dt>
            <dd data-testid="offline-status-error" role="alert">
              {lastError}
            </dd>
          </>
        )}
      </dl>
      <button type="button" onClick={syncNow} disabled={!isOnline} title={isOnline ? undefined : "Offline: nothing can be sent"}>
        Sync now
      </button>
      <button type="button" onClick={clear}>
        Clear queue
      </button>
    </section>
  );
}
