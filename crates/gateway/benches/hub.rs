//! Microbenchmark of the hub's fan-out: `Hub::deliver` handing one shared,
//! already-encoded event frame to every subscriber's outbound queue, without
//! sockets (the queues are drained outside the timed part). This is the part
//! of fan-out under the channel's lock; `fanout.rs` measures the whole path.
//!
//! `cargo bench -p tether-gateway --bench hub`

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tether_gateway::connection::outbound::{ConnHandle, OutboundRx};
use tether_gateway::hub::Hub;
use tether_gateway::metrics::Metrics;
use tether_gateway::store::embedded::EmbeddedStore;

/// Events delivered between two drains of the queues.
const BURST: u64 = 64;

fn deliver(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(EmbeddedStore::open(dir.path()).expect("store"));
    let metrics = Arc::new(Metrics::new());
    let frame = Utf8Bytes::from(format!(
        r#"{{"type":"event","channel":"bench","seq":1,"epoch":"e","ts":1,"data":{{"text":"{}"}}}}"#,
        "x".repeat(100)
    ));
    let mut g = c.benchmark_group("hub");
    for subscribers in [100u64, 1000, 5000] {
        let hub = Hub::new(store.clone(), metrics.clone());
        let mut queues: Vec<OutboundRx> = Vec::new();
        for i in 0..subscribers {
            let (conn, rx) = ConnHandle::new(i, format!("s{i}"), BURST as usize * 2, metrics.clone());
            hub.subscribe(&conn, "s", "bench", None).expect("subscribe");
            queues.push(rx);
        }
        for rx in &mut queues {
            while rx.try_recv().is_ok() {} // the subscribe acks
        }
        let mut seq = 0u64;
        g.throughput(Throughput::Elements(subscribers));
        g.bench_function(format!("deliver/{subscribers}_subscribers"), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let burst = left.min(BURST);
                    let start = Instant::now();
                    for _ in 0..burst {
                        seq += 1;
                        hub.deliver("bench", seq, &frame);
                    }
                    timed += start.elapsed();
                    left -= burst;
                    for rx in &mut queues {
                        while rx.try_recv().is_ok() {}
                    }
                }
                timed
            })
        });
        assert_eq!(
            hub.subscriber_count("bench"),
            subscribers as usize,
            "nobody was dropped as slow"
        );
    }
    g.finish();
}

criterion_group!(benches, deliver);
criterion_main!(benches);
