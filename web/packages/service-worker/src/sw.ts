// The Tether Service Worker, built into one classic script (dist/tether-sw.js)
// that an app serves at its root and registers as
//   navigator.serviceWorker.register("/tether-sw.js?client_id=X&endpoint=/api/v1/messages&db=tether-offline")
// It does two things:
//   1. caches the app shell (workbox): NetworkFirst for navigations,
//      StaleWhileRevalidate for same-origin scripts and styles; never /api/ or /ws
//      (routes.ts);
//   2. replays the page's durable offline queue (the same IndexedDB database,
//      through @tether/client's OfflineQueue) to POST /api/v1/messages with
//      `replayOverHttp`, keeping every message's original id so that the
//      gateway's (principal, id) deduplication makes a replay take effect once
//      even when the page (or an earlier replay) already delivered it. Triggers:
//      the Background Sync event (tag "tether-offline-sync", registered by the
//      page after queueing), worker start and `activate` (browsers without the
//      Sync API), and a page's `{type: "tether-sync"}` message. One replay at a
//      time (replayer.ts).
// The token for an auth-on gateway is handed over with
// `postMessage({type: "tether-token", token})` and kept in memory only: a
// worker that the browser stopped and restarted has none until a page sends it
// again (a replay without it gets 401 and keeps the queue for later).
//
// Not here: deciding what to queue (the page's useOfflineSync), push
// notifications, precaching a build manifest (the shell is cached as it is
// fetched; the first controlled visit fills it).

import { createLogger, setDebug } from "@tether/client";
import { ExpirationPlugin } from "workbox-expiration";
import { registerRoute } from "workbox-routing";
import { NetworkFirst, StaleWhileRevalidate } from "workbox-strategies";
import { SYNC_TAG, parseConfig } from "./config.js";
import { RESULT_MESSAGE, parsePageMessage } from "./messages.js";
import { ASSET_CACHE, PAGE_CACHE, cacheKindFor, staleCaches } from "./routes.js";
import { type ReplayOutcome, Replayer, syncShouldRetry } from "./replayer.js";

declare const self: ServiceWorkerGlobalScope;

/** The Background Sync event (not in TypeScript's WebWorker lib). */
interface SyncEvent extends ExtendableEvent {
  readonly tag: string;
  readonly lastChance: boolean;
}

/** A workbox strategy plugin (the type lives in workbox-core, which we do not depend on directly). */
type WorkboxPlugin = NonNullable<NonNullable<ConstructorParameters<typeof NetworkFirst>[0]>["plugins"]>[number];

/** How long a navigation waits for the network before the cached shell is used. */
const NETWORK_TIMEOUT_SECONDS = 4;
/** Pages kept (distinct URLs, query included): the shell plus a few deep links. */
const MAX_PAGES = 20;
/** Scripts and styles kept: a few builds' worth of hashed files. */
const MAX_ASSETS = 100;
/** Scripts and styles unused for this long are dropped. */
const MAX_ASSET_AGE_SECONDS = 30 * 24 * 3600;

const config = parseConfig(self.location.href);
if (config.debug) setDebug(true);
const log = createLogger("[SW]");
for (const w of config.warnings) console.warn(`[SW] ${w}`);
log("starting", { endpoint: config.endpoint, db: config.dbName, clientId: config.clientId });

// ---------------------------------------------------------------------------
// App-shell cache
// ---------------------------------------------------------------------------

const origin = self.location.origin;
const scriptPath = self.location.pathname;

/**
 * Workbox's plugin classes declare optional callbacks as `X | undefined`,
 * which `exactOptionalPropertyTypes` will not assign to its own
 * `WorkboxPlugin` interface; the object is exactly what workbox expects.
 */
function expiration(options: ConstructorParameters<typeof ExpirationPlugin>[0]): WorkboxPlugin {
  return new ExpirationPlugin(options) as WorkboxPlugin;
}

registerRoute(
  ({ request }) => cacheKindFor(request, origin, scriptPath) === "page",
  new NetworkFirst({
    cacheName: PAGE_CACHE,
    networkTimeoutSeconds: NETWORK_TIMEOUT_SECONDS,
    plugins: [expiration({ maxEntries: MAX_PAGES })],
  }),
);

registerRoute(
  ({ request }) => cacheKindFor(request, origin, scriptPath) === "asset",
  new StaleWhileRevalidate({
    cacheName: ASSET_CACHE,
    plugins: [expiration({ maxEntries: MAX_ASSETS, maxAgeSeconds: MAX_ASSET_AGE_SECONDS })],
  }),
);

// ---------------------------------------------------------------------------
// Replay
// ---------------------------------------------------------------------------

const replayer = new Replayer({
  endpoint: config.endpoint,
  dbName: config.dbName,
  log,
  onResult: tellPages,
});

/** Posts a replay's outcome to every window of this origin. */
async function tellPages(outcome: ReplayOutcome): Promise<void> {
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  for (const w of windows) w.postMessage({ type: RESULT_MESSAGE, ...outcome });
}

// ---------------------------------------------------------------------------
// Lifecycle and events
// ---------------------------------------------------------------------------

self.addEventListener("install", (event) => {
  // A new worker takes over at once: the queue format is fixed, so an old
  // page and a new worker agree.
  event.waitUntil(self.skipWaiting());
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      const stale = staleCaches(await caches.keys());
      await Promise.all(stale.map((name) => caches.delete(name)));
      await self.clients.claim();
      log("activated; controlling this origin's pages", stale.length > 0 ? { deleted: stale } : "");
      await replayer.run("activate");
    })(),
  );
});

self.addEventListener("sync", (event: Event) => {
  const sync = event as SyncEvent;
  if (sync.tag !== SYNC_TAG) return;
  sync.waitUntil(
    replayer.run(`sync${sync.lastChance ? " (last chance)" : ""}`).then((outcome) => {
      // Rejecting makes the browser schedule the sync again later (with backoff).
      if (syncShouldRetry(outcome)) throw new Error(outcome.error);
    }),
  );
});

self.addEventListener("message", (event) => {
  const msg = parsePageMessage(event.data);
  if (msg === null) return;
  if (msg.type === "token") {
    replayer.token = msg.token;
    log(msg.token === null ? "token cleared" : "token received");
    return;
  }
  const port = event.ports[0];
  event.waitUntil(
    replayer.run("message").then((outcome) => {
      port?.postMessage({ type: RESULT_MESSAGE, ...outcome });
    }),
  );
});

// Worker start: the browser starts the worker for any event (a fetch, a
// navigation, a message); a queue left by a page that closed while offline is
// replayed then, in browsers that never fire `sync`.
void replayer.run("worker start");
