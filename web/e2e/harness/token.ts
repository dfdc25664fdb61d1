// Tokens for the auth scenarios, signed by the binary's own `tether token`.

import { execFileSync } from "node:child_process";
import { GATEWAY_BIN } from "./paths.js";

/** An HS256 token for `sub` signed with `secret`; `extra` are more `tether token` flags (e.g. `--role`). */
export function makeToken(secret: string, sub: string, extra: readonly string[]): string {
  return execFileSync(GATEWAY_BIN, ["token", "--secret", secret, "--sub", sub, ...extra], { encoding: "utf8" }).trim();
}
