//! Microbenchmarks of the protocol's hot paths: parsing and validating the
//! frames clients send most (a publish, a subscribe with `since`, a batch),
//! encoding the `event` frame the gateway fans out, and the small-string
//! rules (channel names, claim patterns) that every publish and subscribe
//! passes through.
//!
//! `cargo bench -p tether-protocol --bench frames`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::json;
use tether_protocol::client::parse_frame;
use tether_protocol::server::{event_frame, Event};
use tether_protocol::validate::{is_valid_channel, pattern_matches};

fn publish_frame(payload_bytes: usize) -> String {
    json!({
        "type": "publish",
        "id": "p-0001",
        "channel": "orders:eu",
        "data": {"text": "x".repeat(payload_bytes)},
    })
    .to_string()
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    for (name, text) in [
        ("publish_100B", publish_frame(100)),
        ("publish_4KiB", publish_frame(4096)),
        (
            "subscribe_since",
            json!({"type": "subscribe", "id": "s1", "channel": "orders:eu", "since": {"seq": 1041, "epoch": "01JD3W6Q9M"}})
                .to_string(),
        ),
        (
            "batch_10_publishes",
            json!({"type": "batch", "id": "b1", "data": (0..10).map(|i| json!({
                "type": "publish", "id": format!("p{i}"), "channel": "orders:eu", "data": {"n": i}
            })).collect::<Vec<_>>()})
            .to_string(),
        ),
    ] {
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(name, |b| b.iter(|| parse_frame(black_box(&text)).expect("valid")));
    }
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    for (name, bytes) in [("event_100B", 100usize), ("event_4KiB", 4096)] {
        let event = Event {
            channel: "orders:eu".into(),
            seq: 123_456,
            epoch: "e5f0c3a9b1d2e4f60".into(),
            ts: 1_764_093_600_000,
            from: Some("shop-17".into()),
            data: json!({"text": "x".repeat(bytes)}),
        };
        g.throughput(Throughput::Elements(1));
        g.bench_function(name, |b| {
            b.iter_batched(|| event.clone(), |e| event_frame(black_box(&e)), BatchSize::SmallInput)
        });
    }
    g.finish();
}

fn validate(c: &mut Criterion) {
    let mut g = c.benchmark_group("validate");
    g.bench_function("channel_name", |b| {
        b.iter(|| is_valid_channel(black_box("orders:eu-west:shop-17")))
    });
    g.bench_function("pattern_match", |b| {
        b.iter(|| pattern_matches(black_box("orders:*:shop-?7"), black_box("orders:eu-west:shop-17")))
    });
    g.finish();
}

criterion_group!(benches, parse, encode, validate);
criterion_main!(benches);
