// Builds src/sw.ts into ONE self-contained classic script, dist/tether-sw.js
// (an IIFE: no `import`, so it registers without `{type: "module"}` and works
// in every browser with Service Workers). @tether/client resolves to its
// TypeScript sources (the "source" condition), so it need not be built first.
import { fileURLToPath } from "node:url";
import { defaultClientConditions, defineConfig } from "vite";

const root = fileURLToPath(new URL(".", import.meta.url));

export default defineConfig({
  root,
  // No public dir and no index.html: a library-mode build of one entry.
  publicDir: false,
  resolve: { conditions: ["source", ...defaultClientConditions] },
  // Workbox checks process.env.NODE_ENV for its development logging; library
  // mode does not replace it, so it is defined here (production: quiet, small).
  define: { "process.env.NODE_ENV": JSON.stringify("production") },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2020",
    sourcemap: true,
    rollupOptions: {
      // zod ships `@__PURE__` comments in positions Rollup cannot use; it drops
      // them (harmlessly) and says so on every build.
      onwarn(warning, warn) {
        if (warning.code === "INVALID_ANNOTATION" && warning.id?.includes("node_modules") === true) return;
        warn(warning);
      },
    },
    lib: {
      entry: fileURLToPath(new URL("src/sw.ts", import.meta.url)),
      formats: ["iife"],
      name: "TetherServiceWorker",
      fileName: () => "tether-sw.js",
    },
  },
});
