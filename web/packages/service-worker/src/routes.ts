// Which requests the app-shell cache handles, as a pure function of the
// request so that the rules are unit tested without a worker. sw.ts registers
// the workbox strategies for the two kinds:
//   "page"  navigations → NetworkFirst: fresh when online, the cached shell offline;
//   "asset" same-origin scripts and styles → StaleWhileRevalidate: instant from
//           cache, refreshed in the background (Vite's hashed names change per build).
// Never cached: anything under /api/ (live data and the replay route itself),
// the WebSocket endpoints /ws and /ws/*, the worker script, non-GET requests,
// and other origins.

export type CacheKind = "page" | "asset";

/** The parts of a `Request` the rules read. */
export interface RequestInfo {
  readonly url: string;
  readonly method: string;
  readonly mode: string;
  readonly destination: string;
}

/** Cache names; the version suffix changes when the cache format does (old ones are deleted on activate). */
export const PAGE_CACHE = "tether-pages-v1";
export const ASSET_CACHE = "tether-assets-v1";
export const CACHE_PREFIX = "tether-";
export const CURRENT_CACHES: readonly string[] = [PAGE_CACHE, ASSET_CACHE];

/** Paths that are never served from or stored in a cache. */
export function isUncachedPath(pathname: string): boolean {
  return pathname.startsWith("/api/") || pathname === "/api" || pathname === "/ws" || pathname.startsWith("/ws/");
}

/**
 * The cache strategy for a request, or null to leave it to the network.
 * `origin` is the worker's origin, `scriptPath` its own script's path.
 */
export function cacheKindFor(request: RequestInfo, origin: string, scriptPath: string): CacheKind | null {
  if (request.method !== "GET") return null;
  let url: URL;
  try {
    url = new URL(request.url);
  } catch {
    return null;
  }
  if (url.origin !== origin) return null;
  if (isUncachedPath(url.pathname) || url.pathname === scriptPath) return null;
  if (request.mode === "navigate") return "page";
  if (request.destination === "script" || request.destination === "style") return "asset";
  return null;
}

/** The caches an `activate` deletes: ours (by prefix) from older versions. */
export function staleCaches(names: readonly string[]): string[] {
  return names.filter((n) => n.startsWith(CACHE_PREFIX) && !CURRENT_CACHES.includes(n));
}
