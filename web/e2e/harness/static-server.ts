// The page's origin (node:http on 127.0.0.1:0): serves the built page and the
// worker script at the root, and forwards /api/* to the current gateway, so
// that the Service Worker replays to its own origin as an app's would (the
// gateway sends no CORS headers). `offline = true` makes it reset every
// request: Chromium's offline emulation does not reliably cover a Service
// Worker's own fetches, so this makes "offline" true for the worker too.

import { readFile } from "node:fs/promises";
import { type IncomingMessage, type Server, type ServerResponse, createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import { extname, join, normalize, sep } from "node:path";
import type { Log } from "./log.js";

const TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".svg": "image/svg+xml",
  ".ico": "image/x-icon",
};

export class StaticServer {
  /** While true, every request is reset (the network is down). */
  offline = false;
  /** Requests answered, by path (for assertions about what hit the network). */
  readonly hits = new Map<string, number>();

  private constructor(
    private readonly server: Server,
    private readonly root: string,
    private readonly gateway: () => string,
    private readonly log: Log,
  ) {
    server.on("request", (req, res) => {
      this.handle(req, res);
    });
  }

  /** Serves `root`; `/api/*` goes to `gateway()` (`host:port`, read per request). */
  static async start(root: string, gateway: () => string, log: Log): Promise<StaticServer> {
    const server = createServer();
    const s = new StaticServer(server, root, gateway, log);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => {
        server.off("error", reject);
        resolve();
      });
    });
    log.add("[static]", `serving ${root} at ${s.origin}`);
    return s;
  }

  /** `http://127.0.0.1:PORT` */
  get origin(): string {
    const a = this.server.address() as AddressInfo;
    return `http://${a.address}:${String(a.port)}`;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => {
      this.server.close(() => {
        resolve();
      });
    });
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://localhost");
    // No keep-alive: each request gets a fresh connection, so `offline` takes
    // effect at once and closing the server never waits for idle sockets.
    res.shouldKeepAlive = false;
    if (this.offline) {
      this.log.add("[static]", `offline: reset ${req.method ?? "?"} ${url.pathname}`);
      req.socket.resetAndDestroy();
      return;
    }
    this.hits.set(url.pathname, (this.hits.get(url.pathname) ?? 0) + 1);
    if (url.pathname.startsWith("/api/")) {
      this.forward(req, res, url);
      return;
    }
    void this.serveFile(res, url.pathname);
  }

  private forward(req: IncomingMessage, res: ServerResponse, url: URL): void {
    const target = this.gateway();
    const i = target.lastIndexOf(":");
    const upstream = request(
      {
        host: target.slice(0, i),
        port: Number(target.slice(i + 1)),
        method: req.method ?? "GET",
        path: `${url.pathname}${url.search}`,
        headers: { ...req.headers, host: target },
      },
      (up) => {
        this.log.add("[static]", `${req.method ?? "?"} ${url.pathname}${url.search} → ${String(up.statusCode)}`);
        const headers = { ...up.headers };
        delete headers.connection;
        delete headers["keep-alive"];
        res.writeHead(up.statusCode ?? 502, headers);
        up.pipe(res);
      },
    );
    upstream.on("error", (e) => {
      this.log.add("[static]", `${req.method ?? "?"} ${url.pathname}: gateway unreachable: ${e.message}`);
      if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
      res.end(`gateway unreachable: ${e.message}`);
    });
    req.pipe(upstream);
  }

  private async serveFile(res: ServerResponse, pathname: string): Promise<void> {
    const rel = pathname === "/" ? "index.html" : decodeURIComponent(pathname).replace(/^\/+/, "");
    const file = normalize(join(this.root, rel));
    if (!file.startsWith(this.root.endsWith(sep) ? this.root : this.root + sep)) {
      res.writeHead(403).end();
      return;
    }
    try {
      const body = await readFile(file);
      res.writeHead(200, {
        "content-type": TYPES[extname(file)] ?? "application/octet-stream",
        // Always revalidated, so the only offline copy is the worker's cache.
        "cache-control": "no-cache",
      });
      res.end(body);
    } catch {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found");
    }
  }
}
