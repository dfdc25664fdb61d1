// Fails when the committed dashboard bundle (crates/gateway/dashboard, which
// the gateway embeds) is not what a fresh build of web/dashboard produces:
// builds into a temporary directory and compares every file byte for byte.
// Fix: `npm run build -w @tether/dashboard` in web/, then commit the result.

import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL("..", import.meta.url));
const committed = fileURLToPath(new URL("../../../crates/gateway/dashboard", import.meta.url));

function files(dir) {
  const out = [];
  const walk = (d) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

const fresh = mkdtempSync(join(tmpdir(), "tether-dashboard-"));
try {
  execFileSync("npx", ["vite", "build", "--logLevel", "warn"], {
    cwd: here,
    env: { ...process.env, TETHER_DASHBOARD_OUT: fresh },
    stdio: "inherit",
  });
  const want = files(fresh);
  const have = files(committed);
  const problems = [];
  for (const f of want) {
    if (!have.includes(f)) problems.push(`missing from the commit: ${f}`);
    else if (!readFileSync(join(fresh, f)).equals(readFileSync(join(committed, f)))) problems.push(`differs: ${f}`);
  }
  for (const f of have) if (!want.includes(f)) problems.push(`not produced by the build: ${f}`);
  if (problems.length > 0) {
    console.error(
      `the committed dashboard bundle in crates/gateway/dashboard is stale:\n  ${problems.join("\n  ")}\n` +
        "rebuild it with `npm run build -w @tether/dashboard` (in web/) and commit crates/gateway/dashboard",
    );
    process.exitCode = 1;
  } else {
    console.log(`dashboard bundle is reproducible (${String(want.length)} files)`);
  }
} finally {
  rmSync(fresh, { recursive: true, force: true });
}
