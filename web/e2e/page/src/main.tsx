// Entry of the browser tests' page: one TetherClient made here from the query
// (so that the tests can shorten reconnect delays and the breaker's cooldown,
// which the provider's props do not expose), handed to <WebSocketProvider>,
// and the Service Worker registered when asked (?sw=1).

import { TetherClient, setDebug } from "@tether/client";
import { WebSocketProvider } from "@tether/react";
import { createRoot } from "react-dom/client";
import { App } from "./App.js";
import { readConfig, serviceWorkerUrl } from "./config.js";

const config = readConfig(location.search);
if (config.debug) setDebug(true);

const client = new TetherClient({
  url: config.wsUrl,
  clientId: config.clientId,
  // Reconnect fast and never stop: the tests break the network on purpose.
  reconnectInterval: 100,
  maxReconnectDelay: 1000,
  circuit: { failureThreshold: 1000, cooldownMs: 1000 },
  connectionTimeout: 5000,
  requestTimeout: 10_000,
  ...(config.heartbeatInterval === undefined ? {} : { heartbeatInterval: config.heartbeatInterval }),
  ...(config.heartbeatTimeout === undefined ? {} : { heartbeatTimeout: config.heartbeatTimeout }),
});

if (config.serviceWorker) {
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register(serviceWorkerUrl(config)).catch((e: unknown) => {
      console.error("[e2e] Service Worker registration failed", e);
    });
  } else {
    console.error("[e2e] no Service Worker support");
  }
}

const root = document.getElementById("root");
if (root === null) throw new Error("no #root");
createRoot(root).render(
  <WebSocketProvider client={client}>
    <App config={config} />
  </WebSocketProvider>,
);
