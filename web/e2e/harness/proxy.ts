// A TCP proxy (node:net) between the browser and the gateway, so that a
// scenario can break the network the way real networks break:
//   retarget(addr)  new connections go to a restarted gateway (new port);
//   cut()           every open connection is reset at once (both sides);
//   stall()         the open connections stop carrying bytes in both directions
//                   but stay open: no FIN, no RST, like a dead NAT entry or a
//                   pulled cable. Only a heartbeat can notice. New connections
//                   still work;
//   refuse(on)      new connections are accepted and reset at once (the
//                   network is down), until refuse(false).
// `accepted` counts every connection the browser made.

import { type AddressInfo, type Server, type Socket, createServer, connect } from "node:net";
import type { Log } from "./log.js";

interface Pair {
  readonly id: number;
  readonly client: Socket;
  readonly upstream: Socket;
  stalled: boolean;
}

export class TcpProxy {
  private target: { host: string; port: number };
  private readonly pairs = new Set<Pair>();
  private refusing = false;
  private count = 0;

  private constructor(
    private readonly server: Server,
    private readonly log: Log,
    target: string,
  ) {
    this.target = parseAddr(target);
    server.on("connection", (client) => {
      this.accept(client);
    });
  }

  /** Listens on 127.0.0.1:0 in front of `target` (`host:port`). */
  static async start(target: string, log: Log): Promise<TcpProxy> {
    const server = createServer();
    const proxy = new TcpProxy(server, log, target);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => {
        server.off("error", reject);
        resolve();
      });
    });
    log.add("[proxy]", `listening on ${proxy.addr} → ${target}`);
    return proxy;
  }

  /** `127.0.0.1:PORT` */
  get addr(): string {
    const a = this.server.address() as AddressInfo;
    return `${a.address}:${String(a.port)}`;
  }

  /** Connections accepted so far (refused ones included). */
  get accepted(): number {
    return this.count;
  }

  /** Connections currently open and forwarding (not stalled). */
  get live(): number {
    let n = 0;
    for (const p of this.pairs) if (!p.stalled) n += 1;
    return n;
  }

  /** New connections go to `addr` from now on; open ones are left alone. */
  retarget(addr: string): void {
    this.target = parseAddr(addr);
    this.log.add("[proxy]", `retargeted to ${addr}`);
  }

  /** Resets every open connection, stalled ones included. */
  cut(): void {
    this.log.add("[proxy]", `cut ${String(this.pairs.size)} connection(s)`);
    for (const p of [...this.pairs]) this.drop(p, true);
  }

  /** Stops every open connection from carrying bytes, without closing it. */
  stall(): void {
    let n = 0;
    for (const p of this.pairs) {
      if (!p.stalled) n += 1;
      p.stalled = true;
    }
    this.log.add("[proxy]", `stalled ${String(n)} connection(s)`);
  }

  /** While on, new connections are reset as soon as they are accepted. */
  refuse(on: boolean): void {
    this.refusing = on;
    this.log.add("[proxy]", on ? "refusing new connections" : "accepting new connections");
  }

  /** Closes the listener and every connection. */
  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => {
      this.server.close(() => {
        resolve();
      });
    });
  }

  private accept(client: Socket): void {
    this.count += 1;
    const id = this.count;
    if (this.refusing) {
      this.log.add("[proxy]", `#${String(id)} refused`);
      client.on("error", () => undefined);
      client.resetAndDestroy();
      return;
    }
    const { host, port } = this.target;
    const upstream = connect({ host, port });
    const pair: Pair = { id, client, upstream, stalled: false };
    this.pairs.add(pair);
    this.log.add("[proxy]", `#${String(id)} accepted → ${host}:${String(port)}`);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    // Data handlers instead of pipe(): a stalled pair keeps reading and drops
    // what it reads, so neither side sees backpressure or an end.
    client.on("data", (chunk) => {
      if (!pair.stalled) upstream.write(chunk);
    });
    upstream.on("data", (chunk) => {
      if (!pair.stalled) client.write(chunk);
    });
    const end = (side: string) => (): void => {
      if (pair.stalled || !this.pairs.has(pair)) return; // a stalled network carries no FIN either
      this.log.add("[proxy]", `#${String(id)} closed by the ${side}`);
      this.drop(pair, false);
    };
    client.on("end", end("browser"));
    upstream.on("end", end("gateway"));
    client.on("close", end("browser"));
    upstream.on("close", end("gateway"));
    client.on("error", () => undefined);
    upstream.on("error", (e) => {
      this.log.add("[proxy]", `#${String(id)} upstream error: ${e.message}`);
    });
  }

  /** Closes both sides: with an RST when `abrupt` (a cut), else as the other side did. */
  private drop(pair: Pair, abrupt: boolean): void {
    this.pairs.delete(pair);
    for (const s of [pair.client, pair.upstream]) {
      if (abrupt && !s.destroyed) s.resetAndDestroy();
      else s.destroy();
    }
  }
}

function parseAddr(addr: string): { host: string; port: number } {
  const i = addr.lastIndexOf(":");
  const port = Number(addr.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port <= 0) throw new Error(`bad address ${addr}`);
  return { host: addr.slice(0, i), port };
}
