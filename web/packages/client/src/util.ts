// Small helpers several modules of the client share. Internal: not exported
// from the package.

/** `bytes` random bytes (from `crypto.getRandomValues`) as lowercase hex. */
export function randomHex(bytes = 8): string {
  const b = new Uint8Array(bytes);
  globalThis.crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** `e` as text for an error message: `Name: message` for an Error (the name alone when it has no message), else `String(e)`. */
export function errorText(e: unknown): string {
  if (e instanceof Error) return e.message === "" ? e.name : `${e.name}: ${e.message}`;
  return String(e);
}

/**
 * Calls every one of `listeners` with `args`, going over a copy (a listener
 * may unsubscribe itself or others). One that throws stops neither the others
 * nor the caller: its exception is rethrown in a microtask, so it is still
 * reported.
 */
export function notifyAll<A extends unknown[]>(listeners: Iterable<(...args: A) => void>, ...args: A): void {
  for (const l of [...listeners]) {
    try {
      l(...args);
    } catch (e) {
      queueMicrotask(() => {
        throw e;
      });
    }
  }
}

/**
 * What a gateway `error` reply of unchecked shape says: the fields that
 * `isFinalError` weighs (`code` "unknown" when missing, `retryable` undefined
 * when not a boolean) and its text, `code: message`, noting a duplicate.
 */
export function readErrorReply(reply: { error?: unknown; duplicate?: unknown }): {
  code: string;
  retryable: boolean | undefined;
  duplicate: boolean;
  text: string;
} {
  const body = (typeof reply.error === "object" && reply.error !== null ? reply.error : {}) as {
    code?: unknown;
    message?: unknown;
    retryable?: unknown;
  };
  const code = typeof body.code === "string" ? body.code : "unknown";
  const duplicate = reply.duplicate === true;
  return {
    code,
    retryable: typeof body.retryable === "boolean" ? body.retryable : undefined,
    duplicate,
    text: `${code}: ${typeof body.message === "string" ? body.message : ""}${duplicate ? " (the stored outcome of this id)" : ""}`,
  };
}
