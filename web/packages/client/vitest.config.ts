// Vitest for @tether/client: Node environment; connection tests start the
// real gateway binary (target/debug/tether).
import { defineConfig } from "vitest/config";
import { sourceConditions } from "../../vitest.shared.js";

export default defineConfig({
  ...sourceConditions,
});
