// @tether/react: a thin React layer over @tether/client (no connection logic here).
export {
  WebSocketProvider,
  WebSocketContext,
  useWebSocketContext,
  type WebSocketContextValue,
  type WebSocketProviderProps,
} from "./provider.js";
