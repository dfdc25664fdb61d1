// The messages pages send the worker with `postMessage`, and the ones it sends
// back. Parsing is pure so that it is unit tested; sw.ts acts on the result.
//
// Page → worker:
//   {type: "tether-sync"}                 replay the queue now (one replay at a time)
//   {type: "tether-token", token: string} use this bearer token for replays (memory only)
//   {type: "tether-token", token: null}   forget the token
// Worker → page (to the sender's MessagePort when one was transferred, and
// to every window client after each replay):
//   {type: "tether-sync-result", sent, rejected, remaining, error?}
//   (`remaining` is null when the replay failed before it could count the
//   queue, e.g. IndexedDB could not be opened; see replayer.ts)

/** A page's request, or null for anything else (ignored: other code may message the worker). */
export type PageMessage = { readonly type: "sync" } | { readonly type: "token"; readonly token: string | null };

export const SYNC_MESSAGE = "tether-sync";
export const TOKEN_MESSAGE = "tether-token";
export const RESULT_MESSAGE = "tether-sync-result";

/** Reads `event.data` of a `message` event. */
export function parsePageMessage(data: unknown): PageMessage | null {
  if (typeof data !== "object" || data === null) return null;
  const { type, token } = data as { type?: unknown; token?: unknown };
  if (type === SYNC_MESSAGE) return { type: "sync" };
  if (type === TOKEN_MESSAGE) {
    if (token === null || token === undefined || token === "") return { type: "token", token: null };
    if (typeof token === "string") return { type: "token", token };
  }
  return null;
}
