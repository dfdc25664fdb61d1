// Builds what the browser loads: the Service Worker (its package's own Vite
// config, one classic script) and the test page (a small React app), into
// web/e2e/dist/page. Workspace packages resolve to their TypeScript sources
// (the "source" condition), so no package needs building first.

import { copyFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import react from "@vitejs/plugin-react";
import { build, defaultClientConditions } from "vite";
import { PAGE_DIST, PAGE_SRC, SW_PACKAGE, SW_SCRIPT } from "./paths.js";

/** Builds the worker, then the page, and copies the worker to the page's root. */
export async function buildAll(): Promise<void> {
  await build({
    configFile: join(SW_PACKAGE, "vite.config.ts"),
    logLevel: "warn",
  });
  const sw = join(SW_PACKAGE, "dist", SW_SCRIPT);
  if (!existsSync(sw)) throw new Error(`the Service Worker build did not produce ${sw}`);

  await build({
    configFile: false,
    root: PAGE_SRC,
    base: "/",
    logLevel: "warn",
    plugins: [react()],
    resolve: { conditions: ["source", ...defaultClientConditions] },
    build: {
      outDir: PAGE_DIST,
      emptyOutDir: true,
      // Readable stack traces when a scenario fails.
      minify: false,
      sourcemap: true,
      rollupOptions: {
        // zod's misplaced `@__PURE__` comments: dropped by Rollup, harmless.
        onwarn(warning, warn) {
          if (warning.code === "INVALID_ANNOTATION" && warning.id?.includes("node_modules") === true) return;
          warn(warning);
        },
      },
    },
  });
  copyFileSync(sw, join(PAGE_DIST, SW_SCRIPT));
}
