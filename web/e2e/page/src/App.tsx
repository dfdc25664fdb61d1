// What the tests read: connection state and counters, the events of the
// subscribed channel with their seqs, the offline queue (OfflineStatus and its
// size), the Service Worker's state, and a button that sends with the offline
// fallback. Every value is in an element with a data-testid.

import type { SubscriptionItem, Transition } from "@tether/client";
import { OfflineStatus, useOfflineSync, useWebSocketContext } from "@tether/react";
import { type ReactNode, useEffect, useRef, useState } from "react";
import type { PageConfig } from "./config.js";

interface ReceivedEvent {
  readonly seq: number;
  readonly epoch: string;
  readonly data: unknown;
}

/** Connection state; connects/disconnects counted from the client's transitions (none is missed). */
function Connection(): ReactNode {
  const { isConnected, error, client } = useWebSocketContext();
  const [counts, setCounts] = useState({ connects: 0, disconnects: 0, lastLoss: "" });
  useEffect(
    () =>
      client.onTransition((t: Transition) => {
        if (t.new.kind === "connected" && t.old.kind !== "connected") {
          setCounts((c) => ({ ...c, connects: c.connects + 1 }));
        } else if (t.old.kind === "connected" && t.new.kind !== "connected") {
          setCounts((c) => ({ ...c, disconnects: c.disconnects + 1, lastLoss: t.reason }));
        }
      }),
    [client],
  );
  return (
    <section>
      <h2>Connection</h2>
      <p>
        connected: <span data-testid="connected">{String(isConnected)}</span>, connects:{" "}
        <span data-testid="connects">{counts.connects}</span>, disconnects:{" "}
        <span data-testid="disconnects">{counts.disconnects}</span>
      </p>
      <p>
        error: <span data-testid="error">{error ?? ""}</span>, last loss:{" "}
        <span data-testid="last-loss">{counts.lastLoss}</span>
      </p>
      <p>
        client id: <span data-testid="client-id">{client.clientId}</span>
      </p>
    </section>
  );
}

/** Subscribes to `channel` from seq 0 (everything retained) and lists every delivered event. */
function Events({ channel }: { channel: string }): ReactNode {
  const { client } = useWebSocketContext();
  const [events, setEvents] = useState<readonly ReceivedEvent[]>([]);
  const [recoveries, setRecoveries] = useState<readonly boolean[]>([]);
  useEffect(
    () =>
      client.subscribe(
        channel,
        (item: SubscriptionItem) => {
          if (item.kind === "event") {
            const { seq, epoch, data } = item.event;
            setEvents((list) => [...list, { seq, epoch, data }]);
          } else if (item.kind === "recovered") {
            setRecoveries((list) => [...list, item.ok]);
          } else {
            console.error("[e2e] subscription refused", item.error.message);
          }
        },
        { seq: 0 },
      ),
    [client, channel],
  );
  return (
    <section>
      <h2>
        Events on <span data-testid="channel">{channel}</span>
      </h2>
      <p>
        subscribed: <span data-testid="subscribed">{String(recoveries.length > 0)}</span>, recoveries:{" "}
        <span data-testid="recoveries">{recoveries.map(String).join(",")}</span>
      </p>
      <ol>
        {events.map((e, i) => (
          <li key={i} data-testid="event" data-seq={e.seq} data-epoch={e.epoch}>
            {e.seq}: {JSON.stringify(e.data)}
          </li>
        ))}
      </ol>
    </section>
  );
}

/** The offline queue, and a button that publishes with the offline fallback. */
function Offline({ config }: { config: PageConfig }): ReactNode {
  const { sendMessage } = useWebSocketContext();
  const offline = useOfflineSync();
  const [sent, setSent] = useState<readonly { id: string; status: string }[]>([]);
  const counter = useRef(0);

  const send = (): void => {
    // Unique across reloads: the tests count messages by these ids in history.
    counter.current += 1;
    const id = `e2e-${crypto.randomUUID()}`;
    const frame = { type: "publish", id, channel: config.sendChannel, data: { id, n: counter.current, tag: config.tag } };
    // Resolves once the message was sent (online) or queued (offline); the
    // queue size tells which.
    offline.sendMessageWithOfflineFallback(frame, sendMessage).then(
      () => {
        setSent((list) => [...list, { id, status: "done" }]);
      },
      (e: unknown) => {
        setSent((list) => [...list, { id, status: `failed: ${String(e)}` }]);
      },
    );
  };

  return (
    <section>
      <h2>Offline</h2>
      <OfflineStatus />
      <p>
        online: <span data-testid="is-online">{String(offline.isOnline)}</span>, queued:{" "}
        <span data-testid="queue-size">{offline.offlineQueue.length}</span>, syncing:{" "}
        <span data-testid="is-syncing">{String(offline.isSyncing)}</span>
      </p>
      <button type="button" data-testid="send" onClick={send}>
        Send with offline fallback
      </button>
      <ul>
        {sent.map((s) => (
          <li key={s.id} data-testid="sent" data-id={s.id} data-status={s.status}>
            {s.id}: {s.status}
          </li>
        ))}
      </ul>
    </section>
  );
}

/** "none" | "unsupported" | "registered" | "controlled" (a worker serves this page's fetches). */
function ServiceWorkerState(): ReactNode {
  const [state, setState] = useState("none");
  useEffect(() => {
    if (!("serviceWorker" in navigator)) {
      setState("unsupported");
      return undefined;
    }
    const sw = navigator.serviceWorker;
    const update = (): void => {
      if (sw.controller !== null) {
        setState("controlled");
        return;
      }
      void sw.getRegistration().then((r) => {
        if (sw.controller === null) setState(r === undefined ? "none" : "registered");
      });
    };
    update();
    sw.addEventListener("controllerchange", update);
    const timer = setInterval(update, 250);
    return () => {
      sw.removeEventListener("controllerchange", update);
      clearInterval(timer);
    };
  }, []);
  return (
    <p>
      service worker: <span data-testid="sw-state">{state}</span>
    </p>
  );
}

export function App({ config }: { config: PageConfig }): ReactNode {
  return (
    <main>
      <h1>Tether e2e</h1>
      <Connection />
      <ServiceWorkerState />
      {config.channel === null ? null : <Events channel={config.channel} />}
      <Offline config={config} />
    </main>
  );
}
