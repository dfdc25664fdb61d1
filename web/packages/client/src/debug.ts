// Debug logging behind one flag. Off by default; turn it on with
// `setDebug(true)`, or before the SDK loads with `globalThis.TETHER_DEBUG = true`
// (handy in a browser console or a Service Worker). Every line starts with its
// component's prefix: `[WebSocket]`, `[WebSocketProvider]`, `[WebSocketPool]`,
// `[OfflineSync]` or `[SW]`, so a console filter shows one component.

/** The prefixes in use, one per component. */
export type LogPrefix = "[WebSocket]" | "[WebSocketProvider]" | "[WebSocketPool]" | "[OfflineSync]" | "[SW]" | "[Dashboard]";

/** Where debug lines go; `console` by default, replaceable for tests. */
export type LogSink = (prefix: LogPrefix, message: string, details: readonly unknown[]) => void;

const consoleSink: LogSink = (prefix, message, details) => {
  console.debug(`${prefix} ${message}`, ...details);
};

let enabled: boolean | null = null;
let sink: LogSink = consoleSink;

/** Turns debug logging on or off for every component. */
export function setDebug(on: boolean): void {
  enabled = on;
}

/** Whether debug logging is on (`setDebug` wins over `globalThis.TETHER_DEBUG`). */
export function isDebugEnabled(): boolean {
  if (enabled !== null) return enabled;
  return (globalThis as { TETHER_DEBUG?: unknown }).TETHER_DEBUG === true;
}

/** Sends debug lines somewhere else (tests); `null` restores the console. */
export function setLogSink(next: LogSink | null): void {
  sink = next ?? consoleSink;
}

/** A logger for one component: `log("connected", url)` prints `[WebSocket] connected ws://…`. */
export interface Logger {
  (message: string, ...details: unknown[]): void;
}

/** Makes the logger of one component; it costs one flag check when off. */
export function createLogger(prefix: LogPrefix): Logger {
  return (message, ...details) => {
    if (isDebugEnabled()) sink(prefix, message, details);
  };
}
