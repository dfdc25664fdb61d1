// Vitest for @tether/react: components render in jsdom; no gateway is needed
// (the tests inject an in-memory WebSocket).
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    environment: "jsdom",
  },
});
