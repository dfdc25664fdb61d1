// @tether/react: a thin React layer over @tether/client (no connection logic here).
export {
  WebSocketProvider,
  WebSocketContext,
  useWebSocketContext,
  type WebSocketContextValue,
  type WebSocketProviderProps,
  DEFAULT_MAX_EVENTS,
} from "./provider.js";
export { WebSocketMetrics, downloadText, type WebSocketMetricsProps } from "./components/WebSocketMetrics.js";
export {
  useOfflineSync,
  useOfflineSyncController,
  type OfflineSyncReturn,
  type OfflineSendFn,
  type UseOfflineSyncOptions,
} from "./offline.js";
export { OfflineStatus, type OfflineStatusProps } from "./components/OfflineStatus.js";
export type { OfflineMessage } from "@tether/client";
export {
  WebSocketPoolProvider,
  WebSocketPoolContext,
  useWebSocketPool,
  type WebSocketPoolContextValue,
  type WebSocketPoolProviderProps,
} from "./pool-provider.js";
export { PoolMetrics } from "./components/PoolMetrics.js";
export type { PoolConfig, PoolMetricsSnapshot, BroadcastResult } from "@tether/client";
