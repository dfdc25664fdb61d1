// Channels: follow any channel (optionally from its retained history) and see
// its events with seq and time, with a marker wherever recovery replayed
// events or could not; publish a test event and see its ack.

import { type PublishAck, isValidChannel } from "@tether/client";
import { useWebSocketContext } from "@tether/react";
import { type FormEvent, type ReactNode, useId, useState, useSyncExternalStore } from "react";
import { ChannelLogView } from "../components/ChannelLogView.js";
import { JsonField, parseJson } from "../components/JsonField.js";
import { useDashboard } from "../context.js";

const CHANNEL_HINT = "Letters, digits and _ : . - (1 to 128 characters).";

type PublishState =
  | { readonly kind: "idle" }
  | { readonly kind: "sending" }
  | { readonly kind: "acked"; readonly ack: PublishAck }
  | { readonly kind: "failed"; readonly message: string };

/** A GatewayError's message already starts with its code. */
function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export function ChannelsView(): ReactNode {
  const { client } = useWebSocketContext();
  const { subscriptions } = useDashboard();
  const followed = useSyncExternalStore(subscriptions.subscribe, subscriptions.getSnapshot);
  const channels = followed.filter((f) => f.owner === "channels");
  const id = useId();

  const [name, setName] = useState("");
  const [history, setHistory] = useState(true);
  const [subscribeError, setSubscribeError] = useState<string | null>(null);
  const [selected, setSelected] = useState<string | null>(null);
  const current = channels.find((c) => c.channel === selected) ?? channels[channels.length - 1] ?? null;

  const [pubChannel, setPubChannel] = useState("");
  const [pubData, setPubData] = useState('{"hello": "world"}');
  const [publish, setPublish] = useState<PublishState>({ kind: "idle" });
  const parsed = parseJson(pubData);
  const pubTarget = pubChannel.trim() === "" ? (current?.channel ?? "") : pubChannel.trim();

  const onSubscribe = (e: FormEvent): void => {
    e.preventDefault();
    const channel = name.trim();
    if (!isValidChannel(channel)) {
      setSubscribeError(`"${channel}" is not a valid channel name. ${CHANNEL_HINT}`);
      return;
    }
    try {
      if (subscriptions.get(channel)?.owner === "agents") {
        setSubscribeError(`${channel} is already followed on the Agents view; stop following it there first.`);
        return;
      }
      subscriptions.follow(channel, history, "channels");
      setSubscribeError(null);
      setSelected(channel);
      setName("");
    } catch (err) {
      setSubscribeError(errorText(err));
    }
  };

  const onPublish = (e: FormEvent): void => {
    e.preventDefault();
    if (!parsed.ok) return;
    if (!isValidChannel(pubTarget)) {
      setPublish({ kind: "failed", message: `"${pubTarget}" is not a valid channel name. ${CHANNEL_HINT}` });
      return;
    }
    setPublish({ kind: "sending" });
    client.publish(pubTarget, parsed.value).then(
      (ack) => {
        setPublish({ kind: "acked", ack });
      },
      (err: unknown) => {
        setPublish({ kind: "failed", message: errorText(err) });
      },
    );
  };

  return (
    <>
      <div className="columns">
        <section className="panel" aria-labelledby={`${id}-sub`}>
          <h2 id={`${id}-sub`}>Subscribe</h2>
          <form onSubmit={onSubscribe} className="stack">
            <div className="field">
              <label htmlFor={`${id}-name`}>Channel</label>
              <input
                id={`${id}-name`}
                value={name}
                placeholder="orders"
                autoComplete="off"
                spellCheck={false}
                aria-describedby={`${id}-name-hint`}
                onChange={(e) => {
                  setName(e.target.value);
                }}
              />
              <p id={`${id}-name-hint`} className="hint">
                {CHANNEL_HINT}
              </p>
            </div>
            <label className="check">
              <input
                type="checkbox"
                checked={history}
                onChange={(e) => {
                  setHistory(e.target.checked);
                }}
              />
              Replay the retained history first
            </label>
            <button type="submit" disabled={name.trim() === ""}>
              Subscribe
            </button>
            {subscribeError !== null && (
              <p className="error" role="alert">
                {subscribeError}
              </p>
            )}
          </form>
        </section>
        <section className="panel" aria-labelledby={`${id}-pub`}>
          <h2 id={`${id}-pub`}>Publish a test event</h2>
          <form onSubmit={onPublish} className="stack">
            <div className="field">
              <label htmlFor={`${id}-pubch`}>Channel</label>
              <input
                id={`${id}-pubch`}
                value={pubChannel}
                placeholder={current?.channel ?? "orders"}
                autoComplete="off"
                spellCheck={false}
                onChange={(e) => {
                  setPubChannel(e.target.value);
                }}
              />
            </div>
            <JsonField label="Event data (JSON)" value={pubData} onChange={setPubData} error={parsed.ok ? null : parsed.error} testId="publish-data" />
            <button type="submit" disabled={!parsed.ok || pubTarget === "" || publish.kind === "sending"}>
              Publish{pubTarget === "" ? "" : ` to ${pubTarget}`}
            </button>
            <p data-testid="publish-result" data-state={publish.kind} aria-live="polite">
              {publish.kind === "sending" && "Waiting for the durable ack…"}
              {publish.kind === "acked" &&
                `Acked: ${publish.ack.channel} seq ${String(publish.ack.seq)} (epoch ${publish.ack.epoch})${publish.ack.duplicate === true ? ", duplicate" : ""}.`}
              {publish.kind === "failed" && <span className="error">Not published: {publish.message}</span>}
            </p>
          </form>
        </section>
      </div>
      <section className="panel" aria-labelledby={`${id}-events`}>
        <header className="panel-head">
          <h2 id={`${id}-events`}>Events</h2>
          {current !== null && (
            <button
              type="button"
              className="secondary"
              onClick={() => {
                subscriptions.unfollow(current.channel);
              }}
            >
              Unsubscribe from {current.channel}
            </button>
          )}
        </header>
        {channels.length > 1 && (
          <div className="tabs" role="group" aria-label="Subscribed channels">
            {channels.map((c) => (
              <button
                key={c.channel}
                type="button"
                className="tab"
                aria-pressed={c.channel === current?.channel}
                onClick={() => {
                  setSelected(c.channel);
                }}
              >
                {c.channel}
              </button>
            ))}
          </div>
        )}
        {current === null ? (
          <p className="muted">Subscribe to a channel to see its events here.</p>
        ) : (
          <div data-testid="channel-events" data-channel={current.channel}>
            <ChannelLogView log={current.log} label={`Events of ${current.channel}`} empty={`No events on ${current.channel} yet.`} />
          </div>
        )}
      </section>
    </>
  );
}
