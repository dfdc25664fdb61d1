// @tether/react: a thin React layer over @tether/client (no connection logic here).
export {
  WebSocketProvider,
  useWebSocketContext,
  type WebSocketContextValue,
  type WebSocketProviderProps,
} from "./provider";
