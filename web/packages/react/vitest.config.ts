// Vitest for @tether/react: components render in jsdom; no gateway is needed
// (the tests inject an in-memory WebSocket).
import { defineConfig } from "vitest/config";
import { sourceConditions } from "../../vitest.shared.js";

export default defineConfig({
  ...sourceConditions,
  test: {
    environment: "jsdom",
  },
});
