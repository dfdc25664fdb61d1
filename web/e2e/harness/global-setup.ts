// Vitest global setup: fails the run at once, with a message saying what to
// do, when the gateway binary or chromium is missing (a browser suite that
// silently skips would hide regressions); then builds the page and the Service
// Worker once for every test file. TETHER_E2E_SKIP=1 skips all of it.

import { buildAll } from "./build.js";
import { SKIP, missingPrerequisites } from "./paths.js";

export default async function setup(): Promise<void> {
  if (SKIP) {
    console.warn("[e2e] TETHER_E2E_SKIP=1: the browser tests are skipped");
    return;
  }
  const missing = missingPrerequisites();
  if (missing.length > 0) {
    throw new Error(
      `the browser tests cannot run:\n  - ${missing.join("\n  - ")}\n` +
        "Install what is missing, or set TETHER_E2E_SKIP=1 to skip them on purpose.",
    );
  }
  await buildAll();
}
