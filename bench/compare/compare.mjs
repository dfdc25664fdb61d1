// bench/compare: Tether side by side with what a user would otherwise pick,
// on this machine, with the same load generator (`tether bench`):
//
//   - tether:  `tether serve` with its default durable store (a fresh data dir per run);
//   - node-ws: a broadcast server on npm `ws` (bench/compare/node-ws);
//   - sockudo: the Pusher-protocol server (`cargo install sockudo --locked`,
//     cached outside the repository; its API rate limiter off).
//
// Every run starts the server afresh pinned to one core (`taskset -c 0`) and
// the load generator on the other (`taskset -c 1`), repeats each workload
// --runs times (default 3) and keeps the median. The results go to
// docs/benchmarks.md between the `compare:begin` and `compare:end` markers
// (or only to stdout with --no-write), with the machine and the commands.
//
//   node bench/compare/compare.mjs [--smoke] [--runs N] [--servers tether,node-ws,sockudo]
//                                  [--workloads fanout-1000,...] [--no-write]
//
// --smoke: tether and node-ws only, tiny workloads, one run, debug binary,
// nothing written: what scripts/test runs to keep this script working.

import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, homedir, tmpdir, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = join(HERE, "..", "..");
const DOC = join(REPO, "docs", "benchmarks.md");
const SOCKUDO_VERSION = "5.2.0";
const SOCKUDO_ROOT = process.env.SOCKUDO_ROOT ?? join(homedir(), ".cache", "tether-bench", "sockudo");
const PUSHER = { id: "tether-bench", key: "tether-bench-key", secret: "tether-bench-secret" };

// ---------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------

const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : fallback;
};
const SMOKE = flag("--smoke");
/** Re-render the report from a saved run (`--from FILE`) instead of running. */
const FROM = option("--from", null);
/** Where each full run saves its raw results (for --from). */
const SAVED = join(REPO, "target", "compare-results.json");
const WRITE = !SMOKE && !flag("--no-write");
const RUNS = Number(option("--runs", SMOKE ? "1" : "3"));
const SERVERS = option("--servers", SMOKE ? "tether,node-ws" : "tether,node-ws,sockudo").split(",");
const TETHER_BIN = process.env.TETHER_BIN ?? join(REPO, "target", SMOKE ? "debug" : "release", "tether");

/** The workloads: `tether bench` arguments, and the figure each is judged by. */
const WORKLOADS = SMOKE
  ? [
      { id: "fanout-smoke", label: "fan-out, 20 subscribers, as fast as possible", bench: ["fanout", "--subscribers", "20", "--duration", "1s"] },
      { id: "latency-smoke", label: "20 subscribers × 20 msg/s", bench: ["fanout", "--subscribers", "20", "--rate", "20", "--duration", "1s"] },
      { id: "idle-smoke", label: "50 idle connections", bench: ["connections", "--connections", "50", "--hold", "1s"] },
    ]
  : [
      { id: "fanout-1000", label: "fan-out, 1,000 subscribers, 100-byte payloads, as fast as possible", bench: ["fanout", "--subscribers", "1000", "--duration", "10s"] },
      { id: "fanout-5000", label: "fan-out, 5,000 subscribers, 100-byte payloads, as fast as possible", bench: ["fanout", "--subscribers", "5000", "--duration", "10s"] },
      { id: "latency-1000x10", label: "1,000 subscribers × 10 msg/s", bench: ["fanout", "--subscribers", "1000", "--rate", "10", "--duration", "10s"] },
      { id: "idle-19000", label: "19,000 idle connections", bench: ["connections", "--connections", "19000", "--hold", "5s"] },
      { id: "publish-16", label: "durable publishes, 16 publishers", bench: ["publish", "--publishers", "16", "--duration", "10s"], only: ["tether"] },
    ];
const ONLY = option("--workloads", null)?.split(",");

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

const taskset = (() => {
  try {
    execFileSync("taskset", ["-c", "0", "true"]);
    return cpus().length >= 2;
  } catch {
    return false;
  }
})();

/** `cmd args` pinned to `core` when taskset is there and the machine has two cores. */
function pinned(core, cmd, cmdArgs) {
  return taskset ? ["taskset", ["-c", String(core), cmd, ...cmdArgs]] : [cmd, cmdArgs];
}

/**
 * Starts a server and resolves once `ready(line)` returns its URL for a line
 * of its output, or (with `options.port`) once that port accepts connections.
 */
function startServer(name, cmd, cmdArgs, ready, options = {}) {
  const [c, a] = pinned(0, cmd, cmdArgs);
  const proc = spawn(c, a, { stdio: ["ignore", "pipe", "pipe"], ...options });
  const lines = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`${name} did not start within 60 s:\n${lines.slice(-20).join("\n")}`));
    }, 60_000);
    const onLine = (line) => {
      lines.push(line);
      if (lines.length > 200) lines.shift();
      const m = ready(line);
      if (m !== null && m !== undefined) {
        clearTimeout(timer);
        resolve({ proc, url: m, lines });
      }
    };
    createInterface({ input: proc.stdout }).on("line", onLine);
    createInterface({ input: proc.stderr }).on("line", onLine);
    if (options.port !== undefined) {
      waitForPort(options.port).then(
        () => {
          clearTimeout(timer);
          resolve({ proc, url: `ws://127.0.0.1:${String(options.port)}`, lines });
        },
        () => undefined,
      );
    }
    proc.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${String(code)}) before it was ready:\n${lines.slice(-20).join("\n")}`));
    });
  });
}

function stop(server) {
  return new Promise((resolve) => {
    if (server.proc.exitCode !== null || server.proc.signalCode !== null) return resolve();
    const kill = setTimeout(() => server.proc.kill("SIGKILL"), 10_000);
    server.proc.once("exit", () => {
      clearTimeout(kill);
      resolve();
    });
    server.proc.kill("SIGTERM");
  });
}

/** The pid of the server itself (taskset execs it, so it is the spawned pid). */
const pidOf = (server) => server.proc.pid;

function freePort() {
  return new Promise((resolve) => {
    import("node:net").then(({ createServer }) => {
      const s = createServer();
      s.listen(0, "127.0.0.1", () => {
        const { port } = s.address();
        s.close(() => resolve(port));
      });
    });
  });
}

// ---------------------------------------------------------------------------
// The servers
// ---------------------------------------------------------------------------

const SERVER_DEFS = {
  tether: {
    title: "Tether",
    protocol: "tether",
    prepare() {
      // Always (a no-op when up to date), so that a stale binary is never measured.
      if (process.env.TETHER_BIN === undefined) {
        execFileSync("cargo", ["build", "--locked", ...(SMOKE ? [] : ["--release"]), "-p", "tether"], { cwd: REPO, stdio: "inherit" });
      }
    },
    async start() {
      const dir = mkdtempSync(join(tmpdir(), "tether-compare-"));
      const server = await startServer(
        "tether",
        TETHER_BIN,
        ["serve", "--listen", "127.0.0.1:0", "--data-dir", dir, "--rate-limit", "1000000", "--rate-burst", "1000000", "--max-connections-per-ip", "100000"],
        (line) => /^listening on http:\/\/(\S+)$/.exec(line)?.[1]?.replace(/^/, "ws://").concat("/ws"),
        { env: { ...process.env, RUST_LOG: "warn" } },
      );
      server.cleanup = () => rmSync(dir, { recursive: true, force: true });
      return server;
    },
    command: () => `tether serve --data-dir <fresh dir> --rate-limit 1000000 --rate-burst 1000000`,
  },
  "node-ws": {
    title: "Node ws",
    protocol: "broadcast",
    prepare() {
      if (!existsSync(join(HERE, "node-ws", "node_modules", "ws"))) {
        execFileSync("npm", ["ci", "--no-audit", "--no-fund"], { cwd: join(HERE, "node-ws"), stdio: "inherit" });
      }
    },
    start() {
      return startServer("node-ws", process.execPath, [join(HERE, "node-ws", "server.mjs"), "0"], (line) => /^listening on (ws:\/\/\S+)$/.exec(line)?.[1]);
    },
    command: () => `node bench/compare/node-ws/server.mjs (ws ${readWsVersion()})`,
  },
  sockudo: {
    title: "sockudo",
    protocol: "pusher",
    prepare() {
      if (existsSync(sockudoBin())) return;
      console.error(`[compare] building sockudo ${SOCKUDO_VERSION} into ${SOCKUDO_ROOT} (about 30 min on 2 cores; needs protobuf-compiler)`);
      execFileSync("cargo", ["install", "sockudo", "--locked", "--version", SOCKUDO_VERSION, "--root", SOCKUDO_ROOT], { stdio: "inherit" });
    },
    async start() {
      const dir = mkdtempSync(join(tmpdir(), "sockudo-compare-"));
      const port = await freePort();
      const config = {
        host: "127.0.0.1",
        port,
        debug: false,
        metrics: { enabled: false },
        rate_limiter: { enabled: false },
        app_manager: {
          driver: "memory",
          array: {
            apps: [
              {
                id: PUSHER.id,
                key: PUSHER.key,
                secret: PUSHER.secret,
                enabled: true,
                policy: { limits: { max_connections: 1000000, max_client_events_per_second: 100000, max_backend_events_per_second: null } },
              },
            ],
          },
        },
      };
      const file = join(dir, "config.json");
      writeFileSync(file, JSON.stringify(config, null, 2));
      const server = await startServer("sockudo", sockudoBin(), ["--config", file], () => null, {
        cwd: dir,
        env: { ...process.env, RUST_LOG: "warn" },
        port,
      });
      server.cleanup = () => rmSync(dir, { recursive: true, force: true });
      return server;
    },
    command: () => `sockudo ${SOCKUDO_VERSION} --config <metrics off, rate_limiter off, one app>`,
  },
};

function sockudoBin() {
  return process.env.SOCKUDO_BIN ?? join(SOCKUDO_ROOT, "bin", "sockudo");
}

function readWsVersion() {
  try {
    return JSON.parse(readFileSync(join(HERE, "node-ws", "node_modules", "ws", "package.json"), "utf8")).version;
  } catch {
    return "?";
  }
}

async function waitForPort(port) {
  const { connect } = await import("node:net");
  for (let i = 0; i < 600; i++) {
    const ok = await new Promise((resolve) => {
      const s = connect(port, "127.0.0.1", () => {
        s.end();
        resolve(true);
      });
      s.on("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listens on 127.0.0.1:${String(port)}`);
}

// ---------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------

/** One `tether bench … --json` run against `server`; resolves with its JSON line. */
function bench(def, server, workload) {
  const benchArgs = [...workload.bench, "--url", server.url, "--server-pid", String(pidOf(server)), "--json"];
  if (def.protocol !== "tether") benchArgs.push("--protocol", def.protocol);
  if (def.protocol === "pusher") benchArgs.push("--pusher-app-id", PUSHER.id, "--pusher-key", PUSHER.key, "--pusher-secret", PUSHER.secret);
  const [c, a] = pinned(1, TETHER_BIN, ["bench", ...benchArgs]);
  const out = execFileSync(c, a, { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], maxBuffer: 16 << 20, timeout: 600_000 });
  const line = out.trim().split("\n").pop() ?? "";
  return JSON.parse(line);
}

/** The figures a report is judged by. */
function figures(r) {
  const f = {};
  if (r.deliveries_per_s !== undefined) f.deliveries_per_s = r.deliveries_per_s;
  if (r.acks_per_s !== undefined && r.scenario === "publish") f.acks_per_s = r.acks_per_s;
  if (r.latency_us !== undefined) {
    f.p50_ms = r.latency_us.p50 / 1000;
    f.p99_ms = r.latency_us.p99 / 1000;
  }
  if (r.server_cpu?.us_per_delivery != null) f.cpu_us_per_delivery = r.server_cpu.us_per_delivery;
  if (r.server_cpu?.us_per_ping != null) f.cpu_us_per_ping = r.server_cpu.us_per_ping;
  if (r.server_rss?.held_per_connection_bytes !== undefined) f.kib_per_connection = r.server_rss.held_per_connection_bytes / 1024;
  if (r.scenario === "connections") {
    f.opened = r.opened;
    f.failed = r.failed;
  }
  f.lost = r.lost ?? 0;
  f.duplicates = r.duplicates ?? 0;
  return f;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function main() {
  if (FROM !== null) {
    const saved = JSON.parse(readFileSync(FROM, "utf8"));
    const markdown = render(WORKLOADS.filter((w) => saved.results[w.id] !== undefined), saved.servers, saved.results, saved.machine, saved.date);
    console.log(markdown);
    if (WRITE) writeDoc(markdown);
    return;
  }
  const servers = SERVERS.filter((s) => SERVER_DEFS[s] !== undefined);
  for (const s of SERVERS) if (SERVER_DEFS[s] === undefined) throw new Error(`unknown server ${s} (tether, node-ws, sockudo)`);
  for (const s of servers) SERVER_DEFS[s].prepare();
  const workloads = WORKLOADS.filter((w) => ONLY === null || ONLY === undefined || ONLY.includes(w.id));
  const results = {}; // results[workload][server] = { runs: [figures], median: figures }
  for (const w of workloads) {
    results[w.id] = {};
    for (const s of servers) {
      if (w.only !== undefined && !w.only.includes(s)) continue;
      const def = SERVER_DEFS[s];
      const runs = [];
      for (let i = 1; i <= RUNS; i++) {
        const server = await def.start();
        try {
          await new Promise((r) => setTimeout(r, 500)); // let it settle
          const r = bench(def, server, w);
          const f = figures(r);
          runs.push(f);
          console.error(`[compare] ${w.id} ${s} run ${String(i)}: ${JSON.stringify(f)}`);
        } finally {
          await stop(server);
          server.cleanup?.();
        }
      }
      const med = {};
      for (const k of Object.keys(runs[0] ?? {})) med[k] = median(runs.map((f) => f[k]));
      med.lost = Math.max(...runs.map((f) => f.lost));
      med.duplicates = Math.max(...runs.map((f) => f.duplicates));
      results[w.id][s] = { runs, median: med };
    }
  }
  if (!SMOKE) {
    writeFileSync(SAVED, JSON.stringify({ date: today(), machine: machine(), servers, results }, null, 1));
    console.error(`[compare] raw results in ${SAVED} (re-render with --from ${SAVED})`);
  }
  const markdown = render(workloads, servers, results, machine(), today());
  console.log(markdown);
  if (SMOKE) check(results);
  if (WRITE) writeDoc(markdown);
}

/** The smoke run's checks: every run delivered, nothing lost or duplicated. */
function check(results) {
  const problems = [];
  for (const [w, byServer] of Object.entries(results)) {
    for (const [s, { runs }] of Object.entries(byServer)) {
      for (const f of runs) {
        if (f.lost !== 0 || f.duplicates !== 0) problems.push(`${w} ${s}: lost ${String(f.lost)}, duplicated ${String(f.duplicates)}`);
        if (f.deliveries_per_s !== undefined && !(f.deliveries_per_s > 0)) problems.push(`${w} ${s}: no deliveries`);
        if (f.opened !== undefined && f.failed !== 0) problems.push(`${w} ${s}: ${String(f.failed)} connections failed`);
      }
    }
  }
  if (problems.length > 0) {
    console.error(`bench/compare smoke failed:\n  ${problems.join("\n  ")}`);
    process.exitCode = 1;
  } else {
    console.error("bench/compare smoke: every run complete, nothing lost or duplicated");
  }
}

// ---------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------

const fmt = {
  deliveries_per_s: (x) => `${Math.round(x).toLocaleString("en-US")}/s`,
  acks_per_s: (x) => `${Math.round(x).toLocaleString("en-US")}/s`,
  p50_ms: (x) => `${x.toFixed(2)} ms`,
  p99_ms: (x) => `${x.toFixed(2)} ms`,
  cpu_us_per_delivery: (x) => `${x.toFixed(2)} µs`,
  kib_per_connection: (x) => `${x.toFixed(2)} KiB`,
  cpu_us_per_ping: (x) => `${x.toFixed(1)} µs`,
};
const COLUMNS = [
  ["deliveries_per_s", "deliveries"],
  ["acks_per_s", "acked publishes"],
  ["cpu_us_per_delivery", "server CPU / delivery"],
  ["p50_ms", "p50"],
  ["p99_ms", "p99"],
  ["kib_per_connection", "RSS / idle connection"],
  ["cpu_us_per_ping", "server CPU / ping"],
];

function machine() {
  const c = cpus();
  return `${c[0]?.model ?? "?"}, ${String(c.length)} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB; Node ${process.version}; ${taskset ? "server on core 0, load on core 1 (taskset)" : "not pinned (no taskset or one core)"}`;
}

function today() {
  return new Date().toISOString().slice(0, 10);
}

function render(workloads, servers, results, machineLine, date) {
  const runs = Math.max(...Object.values(results).flatMap((byServer) => Object.values(byServer).map((r) => r.runs.length)));
  const lines = [];
  lines.push(`Measured ${date} on ${machineLine}; median of ${String(runs)} run(s), each against a freshly started server.`);
  lines.push("");
  lines.push("| workload | server | " + COLUMNS.map(([, h]) => h).join(" | ") + " | lost / dup |");
  lines.push("| --- | --- | " + COLUMNS.map(() => "---:").join(" | ") + " | ---: |");
  for (const w of workloads) {
    for (const s of servers) {
      const r = results[w.id]?.[s];
      if (r === undefined) continue;
      const m = r.median;
      const cells = COLUMNS.map(([k]) => (m[k] === undefined ? "" : fmt[k](m[k])));
      lines.push(`| ${w.label} | ${SERVER_DEFS[s].title} | ${cells.join(" | ")} | ${String(m.lost)} / ${String(m.duplicates)} |`);
    }
  }
  lines.push("");
  lines.push(...goals(results, servers));
  lines.push("");
  lines.push("Servers:");
  for (const s of servers) lines.push(`- ${SERVER_DEFS[s].title}: \`${SERVER_DEFS[s].command()}\``);
  lines.push("");
  lines.push("Workloads (`tether bench … --json --server-pid <server>`; `--protocol broadcast` for Node ws, `--protocol pusher` for sockudo):");
  for (const w of workloads) lines.push(`- ${w.label}: \`tether bench ${w.bench.join(" ")}\``);
  lines.push("");
  lines.push(`Regenerate: \`bash bench/compare/run.sh\` (${String(runs)} runs; \`--no-write\` prints only).`);
  return lines.join("\n");
}

/** "3.20× less" when ours is smaller than the peer's, else "1.44× more" (with `less`/`more` words given). */
function smaller(peer, ours, less = "less", more = "more") {
  return peer >= ours ? `${(peer / ours).toFixed(2)}× ${less}` : `${(ours / peer).toFixed(2)}× ${more}`;
}

/** The goals, each with Tether's figure, the better peer's and the ratio. */
function goals(results, servers) {
  const m = (w, s) => results[w]?.[s]?.median;
  const peers = ["node-ws", "sockudo"].filter((s) => servers.includes(s));
  const best = (w, k, higher) => {
    const xs = peers.map((s) => m(w, s)?.[k]).filter((x) => x !== undefined);
    if (xs.length === 0) return undefined;
    return higher ? Math.max(...xs) : Math.min(...xs);
  };
  const rows = [];
  const row = (goal, tether, peer, ratio, met) =>
    rows.push(`| ${goal} | ${tether ?? "–"} | ${peer ?? "–"} | ${ratio ?? "–"} | ${met === undefined ? "–" : met ? "met" : "**missed**"} |`);
  for (const w of ["fanout-1000", "fanout-5000"]) {
    const t = m(w, "tether")?.deliveries_per_s;
    const p = best(w, "deliveries_per_s", true);
    const subs = w === "fanout-1000" ? "1,000" : "5,000";
    row(`fan-out deliveries/s ≥ 2.5× the better peer, ${subs} subscribers`, t && fmt.deliveries_per_s(t), p && fmt.deliveries_per_s(p), t && p ? `${(t / p).toFixed(2)}×` : undefined, t && p ? t >= 2.5 * p : undefined);
    const c = m(w, "tether")?.cpu_us_per_delivery;
    const pc = best(w, "cpu_us_per_delivery", false);
    row(`≤ 5 µs of server CPU per delivery, ${subs} subscribers`, c && fmt.cpu_us_per_delivery(c), pc && fmt.cpu_us_per_delivery(pc), c && pc ? smaller(pc, c) : undefined, c === undefined ? undefined : c <= 5);
  }
  const l = m("latency-1000x10", "tether")?.p99_ms;
  const pl = best("latency-1000x10", "p99_ms", false);
  row("p99 delivery latency ≤ 8 ms, 1,000 subscribers × 10 msg/s", l && fmt.p99_ms(l), pl && fmt.p99_ms(pl), l && pl ? smaller(pl, l, "lower", "higher") : undefined, l === undefined ? undefined : l <= 8);
  const k = m("idle-19000", "tether")?.kib_per_connection;
  const pk = best("idle-19000", "kib_per_connection", false);
  row("≤ 4 KiB RSS per idle connection at 19,000", k && fmt.kib_per_connection(k), pk && fmt.kib_per_connection(pk), k && pk ? smaller(pk, k) : undefined, k === undefined ? undefined : k <= 4);
  const a = m("publish-16", "tether")?.acks_per_s;
  row("≥ 50,000 durable publishes acknowledged/s, 16 publishers", a && fmt.acks_per_s(a), "(no durable acks)", undefined, a === undefined ? undefined : a >= 50_000);
  const tally = (server) => {
    let lost = 0;
    let dup = 0;
    for (const byServer of Object.values(results)) for (const f of byServer[server]?.runs ?? []) { lost += f.lost; dup += f.duplicates; }
    return { lost, dup };
  };
  const t = tally("tether");
  const peerTallies = peers.map((s) => `${SERVER_DEFS[s].title}: ${String(tally(s).lost)} lost, ${String(tally(s).dup)} duplicated`).join("; ");
  row("zero lost and zero duplicated messages in every run", `${String(t.lost)} lost, ${String(t.dup)} duplicated (every run)`, peerTallies || undefined, undefined, t.lost === 0 && t.dup === 0);
  return ["| goal | Tether | better peer | ratio | |", "| --- | ---: | ---: | ---: | --- |", ...rows];
}

function writeDoc(markdown) {
  const doc = readFileSync(DOC, "utf8");
  const begin = "<!-- compare:begin -->";
  const end = "<!-- compare:end -->";
  const i = doc.indexOf(begin);
  const j = doc.indexOf(end);
  if (i < 0 || j < i) throw new Error(`${DOC} has no ${begin} … ${end} section`);
  writeFileSync(DOC, `${doc.slice(0, i + begin.length)}\n${markdown}\n${doc.slice(j)}`);
  console.error(`[compare] wrote the table into ${DOC}`);
}

main().catch((e) => {
  console.error(`bench/compare: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
