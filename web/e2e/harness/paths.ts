// Where the browser tests find what they run: the gateway binary, chromium,
// the page sources and their build output. Environment variables override the
// defaults for machines that keep them elsewhere.

import { accessSync, constants, existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** web/e2e */
export const E2E_DIR = fileURLToPath(new URL("..", import.meta.url));
/** web */
export const WEB_DIR = join(E2E_DIR, "..");
/** The repository root (Cargo workspace). */
export const REPO_DIR = join(WEB_DIR, "..");

/** The gateway binary, built by `cargo build` (override: TETHER_E2E_GATEWAY). */
export const GATEWAY_BIN = process.env["TETHER_E2E_GATEWAY"] ?? join(REPO_DIR, "target", "debug", "tether");
/** Debian's chromium (override: TETHER_E2E_CHROMIUM). */
export const CHROMIUM = process.env["TETHER_E2E_CHROMIUM"] ?? "/usr/bin/chromium";

/** The test page's sources (a Vite root). */
export const PAGE_SRC = join(E2E_DIR, "page");
/** The built page, served by the static server; the worker script is copied in as tether-sw.js. */
export const PAGE_DIST = join(E2E_DIR, "dist", "page");
/** The Service Worker package, built with its own vite.config.ts. */
export const SW_PACKAGE = join(WEB_DIR, "packages", "service-worker");
export const SW_SCRIPT = "tether-sw.js";

/** TETHER_E2E_SKIP=1: skip the whole suite (for machines without chromium or a Rust build). */
export const SKIP = process.env["TETHER_E2E_SKIP"] === "1";

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** What is missing to run the suite, one plain-English line each; empty when all is there. */
export function missingPrerequisites(): string[] {
  const missing: string[] = [];
  if (!existsSync(GATEWAY_BIN) || !executable(GATEWAY_BIN)) {
    missing.push(`the gateway binary ${GATEWAY_BIN} is missing: run \`cargo build\` in ${REPO_DIR} (or set TETHER_E2E_GATEWAY)`);
  }
  if (!existsSync(CHROMIUM) || !executable(CHROMIUM)) {
    missing.push(`chromium ${CHROMIUM} is missing: \`apt-get install chromium\` (or set TETHER_E2E_CHROMIUM)`);
  }
  return missing;
}
