// The dashboard: one connection (a TetherClient to this page's own gateway,
// re-made when the token changes) under a WebSocketProvider, and a shell with
// the connection badge, sign-in, theme toggle, navigation and the five views.

import { TetherClient } from "@tether/client";
import { WebSocketProvider, useWebSocketContext } from "@tether/react";
import { type ReactNode, useEffect, useMemo, useRef, useState, useSyncExternalStore } from "react";
import { ConnectionBadge } from "./components/ConnectionBadge.js";
import { SignIn } from "./components/SignIn.js";
import { type Dashboard, DashboardContext } from "./context.js";
import { initialToken, refusal, saveToken } from "./lib/auth.js";
import { CommandLog } from "./lib/commands.js";
import { ROUTES, matchRoute, navigate, usePathname } from "./lib/router.js";
import { Subscriptions } from "./lib/subscriptions.js";
import { SystemHistory } from "./lib/system-history.js";
import { useSystemFeed } from "./lib/system-feed.js";
import { useTheme } from "./lib/theme.js";
import { AgentsView } from "./views/Agents.js";
import { AnalyticsView } from "./views/Analytics.js";
import { ChannelsView } from "./views/Channels.js";
import { CommandsView } from "./views/Commands.js";
import { SystemView } from "./views/System.js";

/** This page's gateway: `ws(s)://<host>/ws/dashboard`. */
export function ownWebSocketUrl(): string {
  const { protocol, host } = window.location;
  return `${protocol === "https:" ? "wss" : "ws"}://${host}/ws/dashboard`;
}

/**
 * Commands may wait for an agent up to the gateway's `command_ttl` (default
 * 5 min) and then run up to `task_timeout` (default 60 s): the dashboard waits
 * that long for a reply before calling a request failed.
 */
export const DASHBOARD_REQUEST_TIMEOUT_MS = 6.5 * 60_000;

/**
 * The dashboard's client: reconnects for ever (a dashboard left open on a wall
 * must come back by itself), at most 10 s apart, and pauses for 15 s only
 * after 10 failures in a row.
 */
function makeClient(url: string, token: string | null): TetherClient {
  return new TetherClient({
    url,
    ...(token === null ? {} : { token }),
    maxReconnectDelay: 10_000,
    requestTimeout: DASHBOARD_REQUEST_TIMEOUT_MS,
    circuit: { failureThreshold: 10, cooldownMs: 15_000 },
  });
}

/** One sign-in: a token (or none) and a fresh object per attempt, so that the same token can be tried again. */
interface Auth {
  readonly token: string | null;
}

let clientCounter = 0;

export function App(): ReactNode {
  const [auth, setAuth] = useState<Auth>(() => ({ token: initialToken() }));
  const wsUrl = useMemo(ownWebSocketUrl, []);
  // The client and the sign-in it was made for: the shell renders only a
  // client made for the current sign-in, never the old one with a new token.
  const [current, setCurrent] = useState<{ client: TetherClient; auth: Auth; key: number } | null>(null);

  useEffect(() => {
    const client = makeClient(wsUrl, auth.token);
    clientCounter += 1;
    setCurrent({ client, auth, key: clientCounter });
    return () => {
      client.close();
    };
  }, [wsUrl, auth]);

  const changeToken = (next: string | null): void => {
    saveToken(next);
    setAuth({ token: next });
  };

  if (current === null || current.auth !== auth) return null;
  return (
    <WebSocketProvider client={current.client}>
      <Shell key={current.key} client={current.client} token={auth.token} wsUrl={wsUrl} onToken={changeToken} />
    </WebSocketProvider>
  );
}

interface ShellProps {
  readonly client: TetherClient;
  readonly token: string | null;
  readonly wsUrl: string;
  readonly onToken: (token: string | null) => void;
}

function Shell({ client, token, wsUrl, onToken }: ShellProps): ReactNode {
  const { isConnected, requestAgentStatus, requestSystemMetrics } = useWebSocketContext();
  const snapshot = useSyncExternalStore(client.subscribeState, client.getSnapshot);
  const [theme, toggleTheme] = useTheme();
  const pathname = usePathname();
  const route = matchRoute(pathname);

  const dashboard = useMemo<Dashboard>(
    () => ({
      history: new SystemHistory(),
      subscriptions: new Subscriptions(client),
      commands: new CommandLog(client),
      token,
      wsUrl,
    }),
    [client, token, wsUrl],
  );
  useEffect(
    () => () => {
      dashboard.subscriptions.close();
    },
    [dashboard],
  );
  useSystemFeed(client, dashboard.history, token);

  // The pushes on `agents` and `system` only say what changed: after every
  // (re)connect, fetch the whole picture.
  useEffect(() => {
    if (!isConnected) return;
    void requestAgentStatus().catch(() => undefined);
    void requestSystemMetrics().catch(() => undefined);
  }, [isConnected, requestAgentStatus, requestSystemMetrics]);

  // On navigation (not on load): the title says where we are, focus moves to
  // the new view so that keyboard and screen-reader users start there.
  const firstRoute = useRef(true);
  useEffect(() => {
    document.title = `${route?.title ?? "Not found"} · Tether`;
    if (firstRoute.current) {
      firstRoute.current = false;
      return;
    }
    document.getElementById("main")?.focus();
  }, [route]);

  const refused = refusal(snapshot.state, token !== null);

  return (
    <DashboardContext.Provider value={dashboard}>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <div className="brand">
          <span className="logo" aria-hidden="true">
            ◆
          </span>{" "}
          Tether
        </div>
        <ConnectionBadge />
        <div className="top-actions">
          {token !== null && (
            <button
              type="button"
              className="secondary"
              onClick={() => {
                onToken(null);
              }}
            >
              Sign out
            </button>
          )}
          <button
            type="button"
            className="secondary"
            onClick={toggleTheme}
            aria-label={`Switch to the ${theme === "dark" ? "light" : "dark"} theme`}
            data-testid="theme-toggle"
          >
            {theme === "dark" ? "☀ Light" : "☾ Dark"}
          </button>
        </div>
      </header>
      <nav className="tabs-nav" aria-label="Views">
        <ul>
          {ROUTES.map((r) => (
            <li key={r.path}>
              <a
                href={r.path}
                aria-current={route?.path === r.path ? "page" : undefined}
                onClick={(e) => {
                  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
                  e.preventDefault();
                  navigate(r.path);
                }}
              >
                {r.title}
              </a>
            </li>
          ))}
        </ul>
      </nav>
      <main id="main" tabIndex={-1} data-testid={`view-${route?.title.toLowerCase() ?? "not-found"}`}>
        {refused !== null && <SignIn refusal={refused} onToken={onToken} />}
        <h1 className="visually-hidden">{route?.title ?? "Not found"}</h1>
        {route === null && (
          <section className="panel">
            <h2>Not found</h2>
            <p>
              There is no view at <code>{pathname}</code>. Go to <a href="/">Agents</a>.
            </p>
          </section>
        )}
        {route?.path === "/" && <AgentsView />}
        {route?.path === "/system" && <SystemView />}
        {route?.path === "/channels" && <ChannelsView />}
        {route?.path === "/commands" && <CommandsView />}
        {route?.path === "/analytics" && <AnalyticsView />}
      </main>
    </DashboardContext.Provider>
  );
}
