// Where the dashboard's access token comes from and what to say when the
// gateway refuses one. The token is taken from `?access_token=` (then removed
// from the address bar, so it is not bookmarked or shared by accident) or from
// the sign-in field, and kept in sessionStorage: it lasts as long as the tab
// and never reaches other tabs or disk.

import type { State } from "@tether/client";

/** The sessionStorage key of the token. */
export const TOKEN_KEY = "tether.dashboard.token";

/** Splits `href` into the `access_token` query value and the URL without it. */
export function takeTokenFromUrl(href: string): { token: string | null; cleanHref: string } {
  const url = new URL(href);
  const token = url.searchParams.get("access_token");
  if (token === null) return { token: null, cleanHref: href };
  url.searchParams.delete("access_token");
  return { token: token.trim() === "" ? null : token.trim(), cleanHref: url.toString() };
}

function storage(): Storage | null {
  try {
    return globalThis.sessionStorage;
  } catch {
    return null; // storage disabled: the token lives in memory only
  }
}

/** The token to start with: the URL's (kept, and removed from the address bar), else the stored one. */
export function initialToken(): string | null {
  const { token, cleanHref } = takeTokenFromUrl(window.location.href);
  if (token !== null) {
    saveToken(token);
    window.history.replaceState(window.history.state, "", cleanHref);
    return token;
  }
  return storedToken();
}

/** The token kept for this tab, or null. */
export function storedToken(): string | null {
  try {
    return storage()?.getItem(TOKEN_KEY) ?? null;
  } catch {
    return null;
  }
}

/** Keeps `token` for this tab, or forgets it (null). */
export function saveToken(token: string | null): void {
  const s = storage();
  if (s === null) return;
  try {
    if (token === null) s.removeItem(TOKEN_KEY);
    else s.setItem(TOKEN_KEY, token);
  } catch {
    // full or disabled: the token still works for this page, it is just not kept
  }
}

/** Why the gateway refused us, in plain words, or null when the state is not a refusal. */
export interface Refusal {
  readonly code: 4001 | 4003 | 1008;
  readonly title: string;
  readonly detail: string;
}

/**
 * A refusal after a close with 4001 (bad or missing token), 4003 (the
 * principal may not connect) or 1008 (policy violation): the client does not
 * reconnect by itself after these. (An origin outside the allowlist is
 * refused with HTTP 403 before any WebSocket exists; a browser only sees the
 * connection fail, so that shows as reconnecting.)
 */
export function refusal(state: State, hasToken: boolean): Refusal | null {
  if (state.kind !== "closed") return null;
  const reason = state.reason === "" ? "no reason given" : state.reason;
  switch (state.code) {
    case 4001:
      return {
        code: 4001,
        title: hasToken ? "The gateway refused this token" : "This gateway requires sign-in",
        detail: hasToken
          ? `Close code 4001 (${reason}): the token is invalid or has expired. Paste a new one to reconnect.`
          : `Close code 4001 (${reason}): paste an access token, or open the dashboard with ?access_token=….`,
      };
    case 4003:
      return {
        code: 4003,
        title: "This principal may not connect",
        detail: `Close code 4003 (${reason}): the token is valid but its role or subject is not allowed here. Sign in with another token.`,
      };
    case 1008:
      return {
        code: 1008,
        title: "The gateway refused this connection",
        detail: `Close code 1008 (${reason}): the gateway closed the connection for a policy violation. Check the gateway's log; sign in again to retry.`,
      };
    default:
      return null;
  }
}
