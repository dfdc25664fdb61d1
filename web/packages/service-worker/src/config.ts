// The Service Worker's configuration, read once from its own script URL
// (`/tether-sw.js?client_id=X&endpoint=/api/v1/messages&db=tether-offline&debug=1`),
// so that an app configures the worker where it registers it and nothing else
// has to be deployed. Pure functions (no worker globals) so that they are unit
// tested in Node.
//
// Not here: the token. It is secret and short-lived, so it never goes into a
// URL (which browsers keep in the registration, logs and DevTools); pages hand
// it over with `postMessage({type: "tether-token", token})` (see messages.ts).

import { BACKGROUND_SYNC_TAG, OFFLINE_DB_NAME, isValidPrincipal } from "@tether/client";

/** The HTTP route the queue is replayed to, relative to the worker's origin. */
export const DEFAULT_ENDPOINT = "/api/v1/messages";

/** The IndexedDB database shared with the page's `OfflineQueue` ("tether-offline"). */
export const DEFAULT_DB_NAME = OFFLINE_DB_NAME;

/** The Background Sync tag the page's `OfflineSync` registers after queueing ("tether-offline-sync"). */
export const SYNC_TAG = BACKGROUND_SYNC_TAG;

export interface SwConfig {
  /**
   * The principal the queued messages were sent as (with auth off the gateway
   * deduplicates by `(client_id, id)`, so a replay must use the page's
   * `client_id`). Null when absent or invalid.
   */
  readonly clientId: string | null;
  /** Absolute URL the queue is POSTed to, `client_id` already in its query when known. */
  readonly endpoint: string;
  /** IndexedDB database name of the queue. */
  readonly dbName: string;
  /** Debug logging (`[SW]` lines) on. */
  readonly debug: boolean;
  /** What was wrong with the query (each ignored in favour of the default); empty when all was fine. */
  readonly warnings: readonly string[];
}

const TRUE_VALUES = new Set(["1", "true", "yes", "on"]);

/**
 * Reads the configuration from the worker script's URL (`self.location.href`).
 * Never throws: a bad value is replaced by its default and reported in `warnings`.
 */
export function parseConfig(scriptUrl: string): SwConfig {
  const url = new URL(scriptUrl);
  const q = url.searchParams;
  const warnings: string[] = [];

  let clientId: string | null = q.get("client_id");
  if (clientId !== null && !isValidPrincipal(clientId)) {
    warnings.push("client_id must be 1 to 128 printable ASCII characters; replaying without one (as `anonymous`)");
    clientId = null;
  }

  let endpointUrl = new URL(DEFAULT_ENDPOINT, url);
  const rawEndpoint = q.get("endpoint");
  if (rawEndpoint !== null && rawEndpoint !== "") {
    let candidate: URL | null = null;
    try {
      candidate = new URL(rawEndpoint, url);
    } catch {
      candidate = null;
    }
    if (candidate === null || (candidate.protocol !== "http:" && candidate.protocol !== "https:")) {
      warnings.push(`endpoint ${JSON.stringify(rawEndpoint)} is not an http(s) URL; using ${DEFAULT_ENDPOINT}`);
    } else {
      endpointUrl = candidate;
    }
  }
  // The page's client_id always wins (the page's HTTP replay does the same),
  // so that page and worker replay as one principal and deduplicate.
  if (clientId !== null) {
    endpointUrl.searchParams.set("client_id", clientId);
  }

  let dbName = DEFAULT_DB_NAME;
  const rawDb = q.get("db");
  if (rawDb !== null) {
    if (rawDb.trim() === "") warnings.push(`db must not be empty; using ${DEFAULT_DB_NAME}`);
    else dbName = rawDb;
  }

  const debug = TRUE_VALUES.has((q.get("debug") ?? "").toLowerCase());
  return { clientId, endpoint: endpointUrl.href, dbName, debug, warnings };
}
