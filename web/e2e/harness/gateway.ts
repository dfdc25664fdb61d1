// The real gateway binary, on 127.0.0.1:0 (or a given address) with a data
// directory of the scenario's: started, killed with SIGKILL (what a crash
// looks like) or stopped with SIGTERM (a graceful shutdown), started again on
// the same data directory.

import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { GATEWAY_BIN } from "./paths.js";
import type { Log } from "./log.js";

/** How long the binary may take to print its address. */
const START_TIMEOUT_MS = 20_000;

/** The test process's environment without TETHER_* (which the gateway reads as flags). */
function gatewayEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("TETHER_")) env[k] = v;
  return env;
}

export interface GatewayOptions {
  /** `--listen` (default `127.0.0.1:0`); give the old address to restart on the same port. */
  readonly listen?: string;
  /** More flags, e.g. `["--heartbeat-interval", "2s"]`. */
  readonly args?: readonly string[];
}

export class Gateway {
  private constructor(
    private readonly proc: ChildProcess,
    /** `127.0.0.1:PORT` */
    readonly addr: string,
  ) {}

  /** `http://127.0.0.1:PORT` */
  get httpUrl(): string {
    return `http://${this.addr}`;
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Starts `tether serve` and resolves with its address (the first stdout line). */
  static start(dataDir: string, log: Log, options: GatewayOptions = {}): Promise<Gateway> {
    const args = ["serve", "--listen", options.listen ?? "127.0.0.1:0", "--data-dir", dataDir, ...(options.args ?? [])];
    const proc = spawn(GATEWAY_BIN, args, {
      stdio: ["ignore", "pipe", "pipe"],
      env: gatewayEnv(),
    });
    if (proc.stdout === null || proc.stderr === null) throw new Error("the gateway has no stdout/stderr pipes");
    // Both pipes are read to the end so that the gateway never blocks on a full pipe.
    createInterface({ input: proc.stderr }).on("line", (line) => {
      log.add("[gateway]", line);
    });
    const stdout = createInterface({ input: proc.stdout });
    return new Promise<Gateway>((resolve, reject) => {
      let settled = false;
      const fail = (e: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        proc.kill("SIGKILL");
        reject(e);
      };
      const timer = setTimeout(() => {
        fail(new Error(`the gateway did not print its address within ${START_TIMEOUT_MS} ms`));
      }, START_TIMEOUT_MS);
      proc.once("error", (e) => {
        fail(new Error(`cannot start ${GATEWAY_BIN}: ${e.message}`));
      });
      proc.once("exit", (code, signal) => {
        fail(new Error(`the gateway exited before printing its address (code ${String(code)}, signal ${String(signal)})`));
      });
      stdout.on("line", (line) => {
        log.add("[gateway:stdout]", line);
        if (settled) return;
        const m = /^listening on http:\/\/(\S+)$/.exec(line);
        if (m?.[1] === undefined) {
          fail(new Error(`unexpected first line from the gateway: ${line}`));
          return;
        }
        settled = true;
        clearTimeout(timer);
        log.add("[harness]", `gateway listening on ${m[1]} (pid ${String(proc.pid)})`);
        resolve(new Gateway(proc, m[1]));
      });
    });
  }

  /** SIGKILL, resolved once the process is gone. Safe to call twice. */
  kill(): Promise<void> {
    return this.signal("SIGKILL");
  }

  /** SIGTERM (drain: 1001 to every WebSocket, flush, exit), resolved once the process is gone. */
  stop(): Promise<void> {
    return this.signal("SIGTERM");
  }

  private signal(signal: NodeJS.Signals): Promise<void> {
    return new Promise((resolve) => {
      if (!this.running) {
        resolve();
        return;
      }
      this.proc.once("exit", () => {
        resolve();
      });
      this.proc.kill(signal);
    });
  }
}
