// A tiny history-API router: five views, no nesting, no parameters, so a
// router library would be more code than it saves. The gateway serves
// index.html for exactly these paths (crates/gateway/src/http/dashboard.rs).

import { useSyncExternalStore } from "react";

export interface Route {
  readonly path: string;
  readonly title: string;
}

/** The views, in navigation order. Keep in step with the gateway's DASHBOARD_ROUTES. */
export const ROUTES: readonly Route[] = [
  { path: "/", title: "Agents" },
  { path: "/system", title: "System" },
  { path: "/channels", title: "Channels" },
  { path: "/commands", title: "Commands" },
  { path: "/analytics", title: "Analytics" },
];

/** The route for exactly `pathname` (as the gateway serves exactly these paths), or null. */
export function matchRoute(pathname: string): Route | null {
  return ROUTES.find((r) => r.path === pathname) ?? null;
}

const listeners = new Set<() => void>();

function subscribe(listener: () => void): () => void {
  listeners.add(listener);
  window.addEventListener("popstate", listener);
  return () => {
    listeners.delete(listener);
    window.removeEventListener("popstate", listener);
  };
}

function pathname(): string {
  return window.location.pathname;
}

/** The current pathname, re-rendering on navigation. */
export function usePathname(): string {
  return useSyncExternalStore(subscribe, pathname, () => "/");
}

/** Goes to `path` without a reload (keeps the query string, e.g. a debug flag). */
export function navigate(path: string): void {
  if (path === window.location.pathname) return;
  window.history.pushState(null, "", `${path}${window.location.search}`);
  for (const l of listeners) l();
}
