//! Throughput of two gateway nodes sharing one Redis, over real WebSockets on
//! loopback.
//!
//! Every benchmark starts a fresh `redis-server` (on a free port, with its own
//! temporary directory, append-only file on, no snapshots) and two gateways,
//! node A (`bench-a`) and node B (`bench-b`), in-process (`tether_gateway::run`
//! on `127.0.0.1:0` with `redis_url` set), then drives them with
//! `tokio-tungstenite` clients on the same multi-threaded Tokio runtime. The
//! whole set runs twice, as two criterion groups: `cluster_everysec` (Redis
//! `appendfsync everysec`) and `cluster_always` (`appendfsync always`: Redis
//! fsyncs its append-only file before it answers a write).
//!
//! - `publish/1_publisher`, `publish/16_publishers`: durable publishes
//!   acknowledged per second, all through node A. One iteration is
//!   [`PUBLISHES_PER_ITER`] acked publishes split evenly across the publishers.
//!   Each publisher owns one channel (no subscribers, so no fan-out cost) and
//!   keeps up to [`WINDOW`] publishes unacknowledged in flight; `iters`
//!   iterations run as one continuous pipelined stream.
//! - `deliver/100_subscribers`, `deliver/900_subscribers`: cross-node
//!   deliveries per second. N connections on node B subscribe to one channel;
//!   one publisher on node A (same window) publishes a batch of
//!   [`EVENTS_PER_ITER`] events, and the iteration ends when every subscriber on
//!   B has received all of them (through Redis Pub/Sub and B's hub); then the
//!   next batch starts. Throughput is events × subscribers. At most
//!   [`MAX_SUBSCRIBERS`] subscribers, so that the whole run stays under 2000
//!   sockets: each subscriber is two (client and gateway end, both in this
//!   process), and the nodes' Redis connections add about 40 (both ends).
//!
//! Clients check what they get: acks must be acks of their own ids with
//! contiguous seqs on their channel, and every subscriber must see every seq
//! in order with no gap. Every read has a timeout ([`READ_TIMEOUT`]) and every
//! routine a deadline, so a hang or a lost event fails the run instead of
//! blocking it. After each benchmark, the CPU share of this process (both
//! gateways and the clients) and of `redis-server` while timed, a few counters
//! of each node's `/metrics` (including `tether_store_conflicts_total`),
//! Redis's `INFO persistence` figures and its calls of the commands a publish
//! uses go to stderr.
//!
//! Without `redis-server` on `PATH` the benchmark prints why and measures
//! nothing. Run with `cargo bench -p tether-gateway --bench cluster`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use futures_util::stream::{self, StreamExt};
use tether_gateway::Config;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::{oneshot, Mutex, Notify};
use tokio::task::JoinHandle;

mod support;

use support::{
    connect, cpu_seconds, http_get, node_metrics, routine_deadline, subscribe, Publisher, Subscriber, CONNECT_TIMEOUT,
    READ_TIMEOUT,
};

/// Acked publishes per iteration of the publish benchmarks.
const PUBLISHES_PER_ITER: u64 = 1024;
/// Events per iteration (one batch) of the delivery benchmarks.
const EVENTS_PER_ITER: u64 = 100;
/// Longest a gateway may take to shut down at the end of a benchmark.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest `redis-server` may take to answer its first `PING`.
const REDIS_START_TIMEOUT: Duration = Duration::from_secs(20);
/// Subscriber counts of the delivery benchmarks.
const SUBSCRIBERS: [usize; 2] = [100, MAX_SUBSCRIBERS];
/// See the module docs: 900 subscribers are about 1840 sockets in all.
const MAX_SUBSCRIBERS: usize = 900;
/// Connects in flight at once while opening the subscribers.
const CONNECT_CONCURRENCY: usize = 50;

// ---------------------------------------------------------------------------
// Redis

/// Redis's `appendfsync` policy for one group.
#[derive(Clone, Copy)]
enum Fsync {
    EverySec,
    Always,
}

impl Fsync {
    fn as_str(self) -> &'static str {
        match self {
            Fsync::EverySec => "everysec",
            Fsync::Always => "always",
        }
    }
}

/// Whether `redis-server` can be run at all.
fn redis_server_available() -> Result<String, String> {
    match Command::new("redis-server").arg("--version").output() {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned()),
        Ok(out) => Err(format!("`redis-server --version` exited with {}", out.status)),
        Err(e) => Err(format!("cannot run `redis-server` ({e})")),
    }
}

/// The value of `name:value` in an `INFO` reply, `?` if missing.
fn info_field(info: &str, name: &str) -> String {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or("?")
        .trim()
        .to_owned()
}

/// A `redis-server` of this benchmark, killed when dropped.
struct Redis {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Redis {
    /// Starts `redis-server` on a free loopback port with its own directory and
    /// waits until it answers `PING`.
    fn start(fsync: Fsync) -> Redis {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", fsync.as_str()])
            .args(["--logfile", "redis.log", "--dir"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run redis-server: {e}"));
        let mut redis = Redis { child, port, dir };
        let deadline = Instant::now() + REDIS_START_TIMEOUT;
        loop {
            // The port was free a moment ago; make sure the server answering
            // on it is this child and not someone else's.
            if let Some(info) = redis.query("INFO", "server") {
                let pid = info_field(&info, "process_id");
                assert_eq!(
                    pid,
                    redis.child.id().to_string(),
                    "another redis-server answers on port {port}; run the benchmark again"
                );
                return redis;
            }
            if let Ok(Some(status)) = redis.child.try_wait() {
                panic!("redis-server exited with {status}: {}", redis.log_tail());
            }
            if Instant::now() > deadline {
                panic!(
                    "redis-server did not answer PING within {REDIS_START_TIMEOUT:?}: {}",
                    redis.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// One command with at most one argument, as a string (short timeouts).
    fn query(&self, cmd: &str, arg: &str) -> Option<String> {
        let client = redis::Client::open(self.url()).ok()?;
        let mut con = client.get_connection_with_timeout(Duration::from_secs(1)).ok()?;
        con.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut c = redis::cmd(cmd);
        if !arg.is_empty() {
            c.arg(arg);
        }
        c.query::<String>(&mut con).ok()
    }

    /// A few `INFO persistence` and `INFO commandstats` figures, for the report.
    fn stats(&self) -> String {
        let (Some(persistence), Some(commands)) =
            (self.query("INFO", "persistence"), self.query("INFO", "commandstats"))
        else {
            return "INFO failed".into();
        };
        let calls: Vec<String> = ["watch", "get", "multi", "exec", "xadd", "publish", "xrange"]
            .iter()
            .map(|cmd| {
                let stat = info_field(&commands, &format!("cmdstat_{cmd}"));
                let n = stat.split(',').find_map(|kv| kv.strip_prefix("calls=")).unwrap_or("0");
                format!("{cmd} {n}")
            })
            .collect();
        format!(
            "aof_current_size {} bytes, aof_delayed_fsync {}, aof_rewrites {}; calls: {}",
            info_field(&persistence, "aof_current_size"),
            info_field(&persistence, "aof_delayed_fsync"),
            info_field(&persistence, "aof_rewrites"),
            calls.join(", "),
        )
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// CPU seconds `redis-server` used so far.
    fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds(&format!("/proc/{}/stat", self.child.id()))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        // Our own child, by its handle; nothing needs to survive the benchmark.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// The gateways under test

struct Gateway {
    addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tether_gateway::GatewayError>>,
    _dir: tempfile::TempDir,
}

fn bench_config(dir: &Path, redis_url: String, node_id: &str) -> Config {
    Config {
        node_id: node_id.into(),
        // Unused with Redis, but every node gets its own.
        data_dir: dir.to_path_buf(),
        redis_url: Some(redis_url),
        // The bench measures the gateway, not its per-connection rate limit.
        rate_limit: 1_000_000,
        rate_burst: 1_000_000,
        // Every client comes from 127.0.0.1.
        max_connections_per_ip: 10_000,
        // Subscribers only read; keep the idle deadline (4008) out of the way.
        heartbeat_interval: Duration::from_secs(3600),
        ..Config::default()
    }
}

async fn start_gateway(redis_url: String, node_id: &str) -> Gateway {
    let dir = tempfile::tempdir().expect("temp dir");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (shutdown, rx) = oneshot::channel::<()>();
    let config = bench_config(dir.path(), redis_url, node_id);
    let task = tokio::spawn(tether_gateway::run(listener, config, async move {
        let _ = rx.await;
    }));
    let gateway = Gateway {
        addr,
        shutdown,
        task,
        _dir: dir,
    };
    // `run` connects to Redis before it serves: wait until it answers.
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    while http_get(addr, "/readyz")
        .await
        .is_none_or(|r| !r.starts_with("HTTP/1.1 200"))
    {
        assert!(!gateway.task.is_finished(), "gateway {node_id} stopped while starting");
        assert!(
            Instant::now() < deadline,
            "gateway {node_id} not ready within {CONNECT_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gateway
}

impl Gateway {
    /// Shuts the gateway down; clients must be dropped first.
    async fn stop(self) {
        let _ = self.shutdown.send(());
        match tokio::time::timeout(SHUTDOWN_TIMEOUT, self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => panic!("gateway returned an error: {e}"),
            Ok(Err(e)) => panic!("gateway task panicked: {e}"),
            Err(_) => panic!("gateway did not shut down within {SHUTDOWN_TIMEOUT:?}"),
        }
    }
}

/// One Redis and nodes A and B on it.
struct Cluster {
    redis: Redis,
    a: Gateway,
    b: Gateway,
}

impl Cluster {
    fn start(rt: &Runtime, fsync: Fsync) -> Cluster {
        let redis = Redis::start(fsync);
        let url = redis.url();
        let (a, b) = rt.block_on(async {
            let a = start_gateway(url.clone(), "bench-a").await;
            let b = start_gateway(url, "bench-b").await;
            (a, b)
        });
        Cluster { redis, a, b }
    }

    /// Stops both nodes, then Redis; clients must be dropped first.
    fn stop(self, rt: &Runtime) {
        let Cluster { redis, a, b } = self;
        rt.block_on(async {
            tokio::join!(a.stop(), b.stop());
        });
        drop(redis);
    }
}

// ---------------------------------------------------------------------------
// Clients

/// How many subscribers finished how many batches, summed: it reaches
/// `k × subscribers` exactly when every subscriber has all of batch `k`
/// (no subscriber can get further before the next batch is published).
struct Progress {
    subscribers: u64,
    reached: AtomicU64,
    notify: Notify,
}

impl Progress {
    fn new(subscribers: usize) -> Arc<Progress> {
        Arc::new(Progress {
            subscribers: subscribers as u64,
            reached: AtomicU64::new(0),
            notify: Notify::new(),
        })
    }

    /// One subscriber finished one more batch.
    fn batch_done(&self) {
        let now = self.reached.fetch_add(1, Ordering::AcqRel) + 1;
        if now.is_multiple_of(self.subscribers) {
            self.notify.notify_waiters();
        }
    }

    /// Waits until every subscriber has finished `batches` batches.
    async fn wait(&self, batches: u64) {
        let target = batches * self.subscribers;
        loop {
            // Created before the check, so a notification in between counts.
            let notified = self.notify.notified();
            let reached = self.reached.load(Ordering::Acquire);
            if reached >= target {
                return;
            }
            if tokio::time::timeout(READ_TIMEOUT, notified).await.is_err() {
                panic!(
                    "batch {batches}: only {} of {} subscribers got it within {READ_TIMEOUT:?}",
                    self.reached.load(Ordering::Acquire) - (batches - 1) * self.subscribers,
                    self.subscribers
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Reporting

/// CPU used so far by this process (both gateways and the clients) and by
/// `redis-server`.
#[derive(Clone, Copy)]
struct CpuMark {
    bench: Option<f64>,
    redis: Option<f64>,
}

impl CpuMark {
    fn now(redis: &Redis) -> CpuMark {
        CpuMark {
            bench: cpu_seconds("/proc/self/stat"),
            redis: redis.cpu_seconds(),
        }
    }
}

/// Wall time and CPU time spent inside timed routines.
#[derive(Default)]
struct Usage {
    wall: Duration,
    bench_cpu: f64,
    redis_cpu: f64,
}

impl Usage {
    fn add(&mut self, wall: Duration, before: CpuMark, after: CpuMark) {
        self.wall += wall;
        if let (Some(b), Some(a)) = (before.bench, after.bench) {
            self.bench_cpu += a - b;
        }
        if let (Some(b), Some(a)) = (before.redis, after.redis) {
            self.redis_cpu += a - b;
        }
    }

    fn report(&self, name: &str) {
        let wall = self.wall.as_secs_f64();
        if wall > 0.0 {
            eprintln!(
                "{name}: CPU while timed ({wall:.1} s): this process (gateways A and B + clients) {:.0}% \
                 of one core, redis-server {:.0}%",
                100.0 * self.bench_cpu / wall,
                100.0 * self.redis_cpu / wall,
            );
        }
    }
}

/// A few of one node's own counters from `GET /metrics`.
async fn report_metrics(addr: SocketAddr, name: &str, node: &str) {
    let Some(m) = node_metrics(addr).await else {
        eprintln!("{name}: node {node}: could not read /metrics");
        return;
    };
    eprintln!(
        "{name}: node {node} metrics: {} publish acks, mean receive-to-ack {:.2} ms, {:.0}% within 10 ms; \
         {} store conflicts; {} deliveries; {} slow-consumer closes; {} error frames",
        m.acks,
        m.mean_ack_ms,
        m.within_10ms_pct,
        m.store_conflicts,
        m.deliveries,
        m.slow_consumer_closes,
        m.error_frames,
    );
}

/// Everything printed after a benchmark that ran.
fn report_cluster(rt: &Runtime, cluster: &Cluster, usage: &Usage, name: &str) {
    usage.report(name);
    rt.block_on(async {
        report_metrics(cluster.a.addr, name, "A").await;
        report_metrics(cluster.b.addr, name, "B").await;
    });
    eprintln!("{name}: redis {}", cluster.redis.stats());
}

// ---------------------------------------------------------------------------
// Benchmarks

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Durable publishes through node A by `publishers` connections.
fn publish_bench(group: &mut BenchmarkGroup<'_, WallTime>, fsync: Fsync, publishers: usize) {
    let rt = runtime();
    let cluster = Cluster::start(&rt, fsync);
    let addr = cluster.a.addr;
    let pubs: Vec<Publisher> = rt.block_on(async {
        let mut v = Vec::with_capacity(publishers);
        for i in 0..publishers {
            v.push(Publisher::open(addr, format!("bench-pub-{i}")).await);
        }
        v
    });
    let pubs = Arc::new(Mutex::new(pubs));
    let usage = Arc::new(std::sync::Mutex::new(Usage::default()));
    let per_publisher = PUBLISHES_PER_ITER / publishers as u64;
    assert_eq!(per_publisher * publishers as u64, PUBLISHES_PER_ITER);
    let id = if publishers == 1 {
        "publish/1_publisher".to_owned()
    } else {
        format!("publish/{publishers}_publishers")
    };
    let name = format!("cluster_{}/{id}", fsync.as_str());

    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(PUBLISHES_PER_ITER));
    group.bench_function(id.as_str(), |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let pubs = pubs.clone();
            let usage = usage.clone();
            let redis = &cluster.redis;
            async move {
                let mut pubs = pubs.lock().await;
                let before = CpuMark::now(redis);
                let n = iters * per_publisher;
                let run = async {
                    let start = Instant::now();
                    let tasks: Vec<JoinHandle<Publisher>> = pubs
                        .drain(..)
                        .map(|mut p| {
                            tokio::spawn(async move {
                                p.publish(n).await;
                                p
                            })
                        })
                        .collect();
                    let mut done = Vec::with_capacity(tasks.len());
                    for t in tasks {
                        done.push(t.await.expect("publisher failed"));
                    }
                    (start.elapsed(), done)
                };
                let (elapsed, done) = tokio::time::timeout(routine_deadline(iters), run)
                    .await
                    .unwrap_or_else(|_| panic!("{iters} iterations did not finish in time"));
                *pubs = done;
                usage.lock().expect("usage").add(elapsed, before, CpuMark::now(redis));
                elapsed
            }
        });
    });

    let pubs = rt.block_on(async { std::mem::take(&mut *pubs.lock().await) });
    let total: u64 = pubs.iter().map(|p| p.last_seq).sum();
    // Nothing ran when a filter on the command line skipped this benchmark.
    if total > 0 {
        eprintln!("{name}: {total} publishes acked through node A in all, every seq contiguous");
        report_cluster(&rt, &cluster, &usage.lock().expect("usage"), &name);
    }
    drop(pubs);
    cluster.stop(&rt);
}

struct Deliver {
    publisher: Publisher,
    subscribers: Vec<Subscriber>,
}

impl Deliver {
    /// Publishes `batches` batches of `batch` events on node A, each one
    /// received by every subscriber on node B before the next is published.
    /// Returns the time from the first publish to the last delivery.
    async fn run(&mut self, batches: u64, batch: u64) -> Duration {
        let progress = Progress::new(self.subscribers.len());
        let readers: Vec<JoinHandle<Subscriber>> = self
            .subscribers
            .drain(..)
            .map(|mut s| {
                let progress = progress.clone();
                tokio::spawn(async move {
                    s.receive(batches * batch, |received| {
                        if received.is_multiple_of(batch) {
                            progress.batch_done();
                        }
                    })
                    .await;
                    s
                })
            })
            .collect();
        let start = Instant::now();
        for k in 1..=batches {
            self.publisher.publish(batch).await;
            progress.wait(k).await;
        }
        let elapsed = start.elapsed();
        for r in readers {
            self.subscribers.push(r.await.expect("subscriber failed"));
        }
        elapsed
    }
}

/// Cross-node delivery: `subscribers` on node B, one publisher on node A.
fn deliver_bench(group: &mut BenchmarkGroup<'_, WallTime>, fsync: Fsync, subscribers: usize) {
    let rt = runtime();
    let cluster = Cluster::start(&rt, fsync);
    let (a, b) = (cluster.a.addr, cluster.b.addr);
    let channel = "bench-deliver";
    let id = format!("deliver/{subscribers}_subscribers");
    let name = format!("cluster_{}/{id}", fsync.as_str());
    let setup = Instant::now();
    let mut state = rt.block_on(async {
        let subscribers: Vec<Subscriber> = stream::iter(0..subscribers)
            .map(|index| async move {
                let mut ws = connect(b).await;
                let last_seq = subscribe(&mut ws, channel).await;
                Subscriber { index, ws, last_seq }
            })
            .buffer_unordered(CONNECT_CONCURRENCY)
            .collect()
            .await;
        let publisher = Publisher::open(a, channel.to_owned()).await;
        Deliver { publisher, subscribers }
    });
    assert!(
        state.subscribers.iter().all(|s| s.last_seq == 0),
        "a fresh channel starts at seq 0"
    );
    // One event end to end first: node B's Redis subscription is in place
    // before anything is timed.
    let primer = rt.block_on(async {
        tokio::time::timeout(routine_deadline(1), state.run(1, 1))
            .await
            .expect("the first event did not reach every subscriber in time")
    });
    eprintln!(
        "{name}: {subscribers} subscribers on node B connected and subscribed in {:?}; \
         first event A -> all of B in {primer:?}",
        setup.elapsed() - primer,
    );
    let state = Arc::new(Mutex::new(state));
    let usage = Arc::new(std::sync::Mutex::new(Usage::default()));

    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(15))
        .throughput(Throughput::Elements(EVENTS_PER_ITER * subscribers as u64));
    group.bench_function(id.as_str(), |bencher| {
        bencher.to_async(&rt).iter_custom(|iters| {
            let state = state.clone();
            let usage = usage.clone();
            let redis = &cluster.redis;
            async move {
                let mut st = state.lock().await;
                let before = CpuMark::now(redis);
                let elapsed = tokio::time::timeout(routine_deadline(iters), st.run(iters, EVENTS_PER_ITER))
                    .await
                    .unwrap_or_else(|_| panic!("{iters} iterations did not finish in time"));
                usage.lock().expect("usage").add(elapsed, before, CpuMark::now(redis));
                elapsed
            }
        });
    });

    let Ok(state) = Arc::try_unwrap(state) else {
        panic!("the delivery state is still shared after the benchmark");
    };
    let Deliver { publisher, subscribers } = state.into_inner();
    let published = publisher.last_seq;
    if let Some(s) = subscribers.iter().find(|s| s.last_seq != published) {
        panic!(
            "subscriber {} is at seq {} but {published} events were acked",
            s.index, s.last_seq
        );
    }
    // The primer alone is one event.
    if published > 1 {
        eprintln!(
            "{name}: {published} events published on node A, each delivered to all {} subscribers on node B \
             in seq order",
            subscribers.len()
        );
        report_cluster(&rt, &cluster, &usage.lock().expect("usage"), &name);
    }
    drop((publisher, subscribers));
    cluster.stop(&rt);
}

fn cluster_group(c: &mut Criterion, fsync: Fsync) {
    let mut group = c.benchmark_group(format!("cluster_{}", fsync.as_str()));
    group
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(3));
    publish_bench(&mut group, fsync, 1);
    publish_bench(&mut group, fsync, 16);
    for subscribers in SUBSCRIBERS {
        deliver_bench(&mut group, fsync, subscribers);
    }
    group.finish();
}

fn main() {
    let version = match redis_server_available() {
        Ok(v) => v,
        Err(why) => {
            eprintln!(
                "cluster bench: {why}. It needs `redis-server` on PATH (Debian: `apt-get install redis-server`; \
                 scripts/test installs it). Nothing was measured."
            );
            return;
        }
    };
    eprintln!("cluster bench: using {version}");
    let mut c = Criterion::default().without_plots().configure_from_args();
    cluster_group(&mut c, Fsync::EverySec);
    cluster_group(&mut c, Fsync::Always);
    c.final_summary();
}
