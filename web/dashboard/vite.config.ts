// Builds the dashboard into crates/gateway/dashboard, which the gateway embeds
// (rust-embed) and serves at `/`. The output is committed, so a machine with
// only Rust gets the dashboard; scripts/test rebuilds it into a temporary
// directory and fails when it differs (scripts/check-bundle.mjs), so the
// build must be reproducible: content-hashed names, no timestamps, no
// absolute paths, no source maps.

import { fileURLToPath } from "node:url";
import react from "@vitejs/plugin-react";
import { defaultClientConditions, defineConfig } from "vite";

/** The gateway `npm run dev` forwards to. Override: TETHER_GATEWAY. */
const GATEWAY = process.env["TETHER_GATEWAY"] ?? "http://127.0.0.1:8001";

/** Where the gateway crate embeds the bundle from. Override: TETHER_DASHBOARD_OUT. */
const OUT_DIR = process.env["TETHER_DASHBOARD_OUT"] ?? fileURLToPath(new URL("../../crates/gateway/dashboard", import.meta.url));

export default defineConfig({
  base: "/",
  plugins: [react()],
  // Workspace packages from their TypeScript sources, like the tests.
  resolve: { conditions: ["source", ...defaultClientConditions] },
  // `npm run dev`: the app's same-origin requests go to a running gateway.
  server: {
    proxy: {
      "/ws": { target: GATEWAY, ws: true },
      "/api": GATEWAY,
      "/metrics": GATEWAY,
    },
  },
  build: {
    outDir: OUT_DIR,
    emptyOutDir: true,
    sourcemap: false,
    target: "es2022",
    // One JS and one CSS file; small enough that splitting buys nothing.
    cssCodeSplit: false,
    chunkSizeWarningLimit: 600,
    rollupOptions: {
      output: { manualChunks: undefined },
      // zod's misplaced `@__PURE__` comments: dropped by Rollup, harmless.
      onwarn(warning, warn) {
        if (warning.code === "INVALID_ANNOTATION" && warning.id?.includes("node_modules") === true) return;
        warn(warning);
      },
    },
  },
});
