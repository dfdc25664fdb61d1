// Vitest for @tether/service-worker: the pure parts (configuration, page
// messages, cache rules, single flight) in Node; the replay against a real
// OfflineQueue on fake-indexeddb. The worker as a whole runs in chromium in
// web/e2e.
import { defineConfig } from "vitest/config";
import { sourceConditions } from "../../vitest.shared.js";

export default defineConfig({
  ...sourceConditions,
});
