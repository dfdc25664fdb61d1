//! End-to-end throughput of the gateway over real WebSockets on loopback.
//!
//! Every benchmark starts the real gateway in-process (`tether_gateway::run`)
//! on `127.0.0.1:0` with a fresh temporary data directory (the embedded store,
//! fsync on every group commit), then drives it with `tokio-tungstenite`
//! clients on the same multi-threaded Tokio runtime:
//!
//! - `publish/1_publisher`, `publish/16_publishers`: durable publishes
//!   acknowledged per second. One iteration is [`PUBLISHES_PER_ITER`] acked
//!   publishes, split evenly across the publishers. Each publisher owns one
//!   channel (no subscribers, so no fan-out cost) and pipelines: it keeps up to
//!   [`WINDOW`] publishes unacknowledged in flight. `iters` iterations run as
//!   one continuous pipelined stream, so the figure is steady-state throughput.
//! - `fanout/1000_subscribers`: deliveries per second. [`SUBSCRIBERS`]
//!   connections subscribe to one channel; one publisher (same window)
//!   publishes [`EVENTS_PER_ITER`] events per iteration; the clock stops when
//!   every subscriber has received every event. Throughput is events ×
//!   subscribers.
//!
//! Clients check what they get: acks must be acks of their own ids with
//! contiguous seqs on their channel, and every subscriber must see every seq
//! in order with no gap. Every read has a timeout ([`READ_TIMEOUT`]) and every
//! routine a deadline, so a hang or a lost event fails the run instead of
//! blocking it. After each benchmark the process CPU share while timed and a
//! few gateway counters from `/metrics` (mean receive-to-ack latency,
//! deliveries, slow-consumer closes, errors) go to stderr.
//!
//! Publish frames are about 125 bytes (`data` is a small object with a 46-byte
//! string); the event frames subscribers get are about 200 bytes. The config
//! raises the rate limit and the heartbeat interval out of the way (see
//! `bench_config`); everything else is the default.
//!
//! Run with `cargo bench -p tether-gateway --bench fanout`; see
//! `docs/benchmarks.md` for results.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use futures_util::stream::{self, StreamExt};
use tether_gateway::Config;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::{oneshot, Mutex};
use tokio::task::JoinHandle;

mod support;

use support::{connect, cpu_seconds, node_metrics, routine_deadline, subscribe, Publisher, Subscriber};

/// Acked publishes per iteration of the publish benchmarks.
const PUBLISHES_PER_ITER: u64 = 1024;
/// Subscriber connections of the fan-out benchmark.
const SUBSCRIBERS: usize = 1000;
/// Events published per iteration of the fan-out benchmark.
const EVENTS_PER_ITER: u64 = 100;
/// Longest the gateway may take to shut down at the end of a benchmark.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);
/// Connects in flight at once while opening the subscribers.
const CONNECT_CONCURRENCY: usize = 50;

// ---------------------------------------------------------------------------
// The gateway under test

struct Gateway {
    addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tether_gateway::GatewayError>>,
    _dir: tempfile::TempDir,
}

fn bench_config(dir: &std::path::Path) -> Config {
    Config {
        node_id: "bench".into(),
        data_dir: dir.to_path_buf(),
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

async fn start_gateway() -> Gateway {
    let dir = tempfile::tempdir().expect("temp dir");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (shutdown, rx) = oneshot::channel::<()>();
    let config = bench_config(dir.path());
    let task = tokio::spawn(tether_gateway::run(listener, config, async move {
        let _ = rx.await;
    }));
    Gateway {
        addr,
        shutdown,
        task,
        _dir: dir,
    }
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

// ---------------------------------------------------------------------------
// Reporting

/// CPU seconds used so far by this process (all threads: gateway and clients).
fn process_cpu_seconds() -> Option<f64> {
    cpu_seconds("/proc/self/stat")
}

/// Wall time and process CPU time spent inside timed routines.
#[derive(Default)]
struct Usage {
    wall: Duration,
    cpu: f64,
}

impl Usage {
    fn add(&mut self, wall: Duration, cpu_before: Option<f64>) {
        self.wall += wall;
        if let (Some(before), Some(after)) = (cpu_before, process_cpu_seconds()) {
            self.cpu += after - before;
        }
    }

    fn report(&self, name: &str) {
        let wall = self.wall.as_secs_f64();
        if wall > 0.0 {
            eprintln!(
                "{name}: process CPU while timed: {:.0}% of one core ({:.1} s CPU over {wall:.1} s)",
                100.0 * self.cpu / wall,
                self.cpu
            );
        }
    }
}

/// A few of the gateway's own counters from `GET /metrics`, printed after each
/// benchmark: server-side ack latency, deliveries, slow-consumer closes, errors.
async fn report_metrics(addr: SocketAddr, name: &str) {
    let Some(m) = node_metrics(addr).await else {
        eprintln!("{name}: could not read /metrics");
        return;
    };
    eprintln!(
        "{name}: gateway metrics: {} publish acks, mean receive-to-ack {:.2} ms, {:.0}% within 10 ms; \
         {} deliveries; {} slow-consumer closes; {} error frames",
        m.acks, m.mean_ack_ms, m.within_10ms_pct, m.deliveries, m.slow_consumer_closes, m.error_frames,
    );
}

// ---------------------------------------------------------------------------
// Benchmarks

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn publish_bench(c: &mut Criterion, rt: &Runtime, publishers: usize, name: &str) {
    let gateway = rt.block_on(start_gateway());
    let addr = gateway.addr;
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

    let mut group = c.benchmark_group("publish");
    group
        .sample_size(20)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(3))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(PUBLISHES_PER_ITER));
    group.bench_function(name, |b| {
        b.to_async(rt).iter_custom(|iters| {
            let pubs = pubs.clone();
            let usage = usage.clone();
            async move {
                let mut pubs = pubs.lock().await;
                let cpu_before = process_cpu_seconds();
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
                usage.lock().expect("usage").add(elapsed, cpu_before);
                elapsed
            }
        });
    });
    group.finish();

    rt.block_on(async {
        let pubs = std::mem::take(&mut *pubs.lock().await);
        let total: u64 = pubs.iter().map(|p| p.last_seq).sum();
        // Nothing ran when a filter on the command line skipped this benchmark.
        if total > 0 {
            eprintln!("publish/{name}: {total} publishes acked in all, every seq contiguous");
            usage.lock().expect("usage").report(&format!("publish/{name}"));
            report_metrics(addr, &format!("publish/{name}")).await;
        }
        drop(pubs);
        gateway.stop().await;
    });
}

fn publish_1(c: &mut Criterion) {
    let rt = runtime();
    publish_bench(c, &rt, 1, "1_publisher");
}

fn publish_16(c: &mut Criterion) {
    let rt = runtime();
    publish_bench(c, &rt, 16, "16_publishers");
}

struct Fanout {
    publisher: Publisher,
    subscribers: Vec<Subscriber>,
}

fn fanout_1000(c: &mut Criterion) {
    let rt = runtime();
    let gateway = rt.block_on(start_gateway());
    let addr = gateway.addr;
    let channel = "bench-fanout";
    let setup = Instant::now();
    let state = rt.block_on(async {
        let subscribers: Vec<Subscriber> = stream::iter(0..SUBSCRIBERS)
            .map(|index| async move {
                let mut ws = connect(addr).await;
                let last_seq = subscribe(&mut ws, channel).await;
                Subscriber { index, ws, last_seq }
            })
            .buffer_unordered(CONNECT_CONCURRENCY)
            .collect()
            .await;
        let publisher = Publisher::open(addr, channel.to_owned()).await;
        Fanout { publisher, subscribers }
    });
    eprintln!(
        "fanout: {SUBSCRIBERS} subscribers connected and subscribed in {:?}",
        setup.elapsed()
    );
    let state = Arc::new(Mutex::new(state));
    let usage = Arc::new(std::sync::Mutex::new(Usage::default()));

    let mut group = c.benchmark_group("fanout");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(3))
        .measurement_time(Duration::from_secs(15))
        .throughput(Throughput::Elements(EVENTS_PER_ITER * SUBSCRIBERS as u64));
    group.bench_function("1000_subscribers", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let state = state.clone();
            let usage = usage.clone();
            async move {
                let mut st = state.lock().await;
                let cpu_before = process_cpu_seconds();
                let st = &mut *st;
                let n = iters * EVENTS_PER_ITER;
                let run = async {
                    let readers: Vec<JoinHandle<Subscriber>> = st
                        .subscribers
                        .drain(..)
                        .map(|mut s| {
                            tokio::spawn(async move {
                                s.receive(n, |_| {}).await;
                                s
                            })
                        })
                        .collect();
                    let start = Instant::now();
                    st.publisher.publish(n).await;
                    for r in readers {
                        st.subscribers.push(r.await.expect("subscriber failed"));
                    }
                    start.elapsed()
                };
                let elapsed = tokio::time::timeout(routine_deadline(iters), run)
                    .await
                    .unwrap_or_else(|_| panic!("{iters} iterations did not finish in time"));
                usage.lock().expect("usage").add(elapsed, cpu_before);
                elapsed
            }
        });
    });
    group.finish();

    let Ok(state) = Arc::try_unwrap(state) else {
        panic!("the fan-out state is still shared after the benchmark");
    };
    let Fanout { publisher, subscribers } = state.into_inner();
    let published = publisher.last_seq;
    if let Some(s) = subscribers.iter().find(|s| s.last_seq != published) {
        panic!(
            "subscriber {} is at seq {} but {published} events were acked",
            s.index, s.last_seq
        );
    }
    if published > 0 {
        eprintln!(
            "fanout: {published} events, each delivered to all {} subscribers in seq order",
            subscribers.len()
        );
        usage.lock().expect("usage").report("fanout/1000_subscribers");
        rt.block_on(report_metrics(addr, "fanout/1000_subscribers"));
    }
    drop((publisher, subscribers));
    rt.block_on(gateway.stop());
}

criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = publish_1, publish_16, fanout_1000
}
criterion_main!(benches);
