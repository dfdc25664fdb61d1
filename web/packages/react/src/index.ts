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
