// Vitest for the browser tests: Node runs the harness (gateway, proxy, static
// server, chromium); the page itself is built once by the global setup. Files
// run one after another (each starts its own gateway and browser) and get long
// timeouts: a scenario waits for reconnects and replays with deadlines.
import { defineConfig } from "vitest/config";
import { sourceConditions } from "../vitest.shared.js";

export default defineConfig({
  ...sourceConditions,
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["harness/global-setup.ts"],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 180_000,
    teardownTimeout: 30_000,
  },
});
