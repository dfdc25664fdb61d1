// The ids of offline messages and the first step of taking one in: a checked
// JSON copy with an id. Shared by the queue (`prepareOfflineFrame` in
// offline-queue.ts, which then refuses what cannot be queued) and by
// `OfflineSync.sendMessageWithOfflineFallback` (offline-sync.ts, which may send
// any valid message). Internal: offline-queue.ts re-exports the public part
// (`InvalidOfflineMessageError`, `newMessageId`).

import { type ClientMessage, parseMessage } from "./protocol.js";
import { errorText, randomHex } from "./util.js";

/** The message cannot be queued: not a valid `publish` or command, not JSON, or too large. Nothing was stored. */
export class InvalidOfflineMessageError extends Error {
  override readonly name = "InvalidOfflineMessageError";
}

/**
 * A fresh message id: `m-` and a random UUID (40 printable ASCII characters).
 * Uses `crypto.randomUUID` where available (secure contexts), else 16 random
 * bytes from `crypto.getRandomValues`.
 */
export function newMessageId(): string {
  const c = globalThis.crypto as Crypto | undefined;
  if (c !== undefined && typeof c.randomUUID === "function") return `m-${c.randomUUID()}`;
  return `m-${randomHex(16)}`;
}

/**
 * A JSON copy of `message` (what `JSON.stringify` would send) with a fresh id
 * (`newMessageId`) when it has none, and the protocol's reading of it
 * (`parseMessage`). Throws `InvalidOfflineMessageError` when `message` is no
 * JSON object (naming it `subject`), cannot be serialized, or is invalid.
 */
export function copyWithId(message: object, subject: string): { copy: Record<string, unknown>; parsed: ClientMessage } {
  if (typeof message !== "object" || message === null || Array.isArray(message)) {
    throw new InvalidOfflineMessageError(`${subject} must be a JSON object like {type, id?, …}`);
  }
  let copy: Record<string, unknown>;
  try {
    copy = JSON.parse(JSON.stringify(message)) as Record<string, unknown>;
  } catch (e) {
    throw new InvalidOfflineMessageError(`the message is not serializable as JSON: ${errorText(e)}`);
  }
  if (copy["id"] === undefined || copy["id"] === null) copy["id"] = newMessageId();
  const checked = parseMessage(copy);
  if (!checked.ok) throw new InvalidOfflineMessageError(`invalid message: ${checked.error.message}`);
  return { copy, parsed: checked.message };
}
