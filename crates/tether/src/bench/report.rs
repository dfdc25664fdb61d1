//! What a run prints: [`Report`], what a scenario measured, rendered as the
//! table on stdout or the one `--json` line, and the [`progress`] line on
//! stderr every second while the run goes on.
//!
//! Not here: taking the measurements (the scenario modules, [`super::stats`],
//! [`super::rss`]).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::cpu::Cpu;
use super::plan::{Plan, Protocol, Scenario};
use super::rss::Rss;
use super::shared::Shared;
use super::stats::{Counters, Percentiles, SeqTracker};

/// What a run measured.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// From the first send to the last ack (publish), delivery (fanout) or
    /// result (rpc).
    pub elapsed: Duration,
    /// From the first send to the last ack.
    pub ack_elapsed: Duration,
    /// Publishes (or commands) sent (each once, however often resent).
    pub sent: u64,
    pub acked: u64,
    /// Sent and never acknowledged within the drain limit.
    pub unacked: u64,
    /// Fan-out: events received by all subscribers, duplicates included.
    pub deliveries: u64,
    /// Fan-out: final seq minus each subscriber's starting seq, summed.
    pub expected_deliveries: u64,
    /// Publish and fanout: skipped seqs; rpc: commands without a result by
    /// the end.
    pub lost: u64,
    /// Publish: repeated ack seqs and duplicate acks; fanout: repeated
    /// deliveries (duplicate acks are counted apart); rpc: second results.
    pub duplicates: u64,
    /// Acks of a publish already acknowledged, or with `"duplicate":true`.
    pub duplicate_acks: u64,
    pub reordered: u64,
    /// Publishes (or commands) resent after a retryable error (`rate_limited`, …).
    pub retried: u64,
    /// Subscribers, agents or idle connections the gateway closed (or that
    /// failed) during the run.
    pub disconnects: u64,
    /// Rpc: commands answered by a `result` (the first one of each).
    pub results: u64,
    /// Rpc: commands answered by an `error` instead (`timeout`, `no_handler`).
    pub failed: u64,
    /// Rpc: tasks the agents answered.
    pub tasks: u64,
    /// Rpc: `error` replies to the agents' `task_result`s.
    pub agent_errors: u64,
    /// Connections: opened (welcome read) and failed to open.
    pub opened: u64,
    pub open_failed: u64,
    /// Connections: from the first connect to the last one opened.
    pub open_elapsed: Duration,
    /// Connections: protocol `ping`s sent and `pong`s received while holding.
    pub pings: u64,
    pub pongs: u64,
    /// Connections: closed with a close handshake the gateway answered.
    pub closed: u64,
    pub latency: Percentiles,
    pub rss: Option<Rss>,
    /// Fan-out: the server's CPU time from the first publish to the last delivery.
    pub cpu: Option<Cpu>,
    /// Connections: the gateway's RSS at the end of the hold, in KiB.
    pub rss_held_kib: Option<u64>,
}

fn per_second(n: u64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

/// Rounds to one decimal for the JSON line.
fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Seconds rounded to the millisecond for the JSON line.
fn secs3(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

impl Report {
    /// Adds one fan-out subscriber's counts: it should have received every
    /// seq after `start_seq` up to `last_seq`.
    pub(super) fn count_subscriber(&mut self, tracker: &mut SeqTracker, last_seq: u64, start_seq: u64) {
        tracker.finish(last_seq);
        self.deliveries += tracker.received();
        self.expected_deliveries += last_seq.saturating_sub(start_seq);
        self.lost += tracker.lost();
        self.duplicates += tracker.duplicates();
        self.reordered += tracker.reordered();
    }

    fn latency_measured(plan: &Plan) -> &'static str {
        match plan.scenario {
            Scenario::Publish => "send_to_ack",
            Scenario::Fanout => "publish_to_delivery",
            Scenario::Rpc => "send_to_result",
            Scenario::Connections => "none",
        }
    }

    pub(super) fn json(&self, plan: &Plan) -> Value {
        let mut v = json!({
            "scenario": plan.scenario.name(),
            "url": plan.url,
        });
        match plan.scenario {
            Scenario::Publish | Scenario::Fanout => {
                v["publishers"] = json!(plan.publishers);
                v["subscribers"] = json!(plan.subscribers);
                v["rate"] = json!(plan.rate);
                v["window"] = json!(plan.window);
            }
            Scenario::Rpc => {
                v["agents"] = json!(plan.agents);
                v["clients"] = json!(plan.clients);
                v["concurrency"] = json!(plan.window);
            }
            Scenario::Connections => {
                let sources: Vec<String> = plan.source_addrs.iter().map(|a| a.to_string()).collect();
                v["connections"] = json!(plan.idle);
                v["source_addrs"] = json!(sources);
                v["hold_s"] = json!(plan.hold.as_secs_f64());
                v["opened"] = json!(self.opened);
                v["failed"] = json!(self.open_failed);
                v["open_elapsed_s"] = json!(secs3(self.open_elapsed));
                v["opens_per_s"] = json!(round1(per_second(self.opened, self.open_elapsed)));
                v["pings"] = json!(self.pings);
                v["pongs"] = json!(self.pongs);
                v["disconnects"] = json!(self.disconnects);
                v["closed"] = json!(self.closed);
            }
        }
        if plan.scenario != Scenario::Connections {
            v["payload_bytes"] = json!(plan.payload);
            v["duration_s"] = json!(plan.duration.as_secs_f64());
            v["count"] = json!(plan.count);
            v["elapsed_s"] = json!(secs3(self.elapsed));
            v["sent"] = json!(self.sent);
        }
        match plan.scenario {
            Scenario::Publish | Scenario::Fanout => {
                v["acked"] = json!(self.acked);
                v["unacked"] = json!(self.unacked);
                v["acks_per_s"] = json!(round1(per_second(self.acked, self.ack_elapsed)));
                if plan.scenario == Scenario::Fanout {
                    v["deliveries"] = json!(self.deliveries);
                    v["expected_deliveries"] = json!(self.expected_deliveries);
                    v["deliveries_per_s"] = json!(round1(per_second(self.deliveries, self.elapsed)));
                }
                v["lost"] = json!(self.lost);
                v["duplicates"] = json!(self.duplicates);
                v["duplicate_acks"] = json!(self.duplicate_acks);
                v["reordered"] = json!(self.reordered);
                v["retried"] = json!(self.retried);
                v["disconnects"] = json!(self.disconnects);
            }
            Scenario::Rpc => {
                v["results"] = json!(self.results);
                v["failed"] = json!(self.failed);
                v["results_per_s"] = json!(round1(per_second(self.results, self.elapsed)));
                v["tasks"] = json!(self.tasks);
                v["lost"] = json!(self.lost);
                v["duplicates"] = json!(self.duplicates);
                v["retried"] = json!(self.retried);
                v["agent_errors"] = json!(self.agent_errors);
                v["disconnects"] = json!(self.disconnects);
            }
            Scenario::Connections => {}
        }
        if plan.scenario != Scenario::Connections {
            let l = &self.latency;
            v["latency_us"] = json!({
                "measured": Report::latency_measured(plan),
                "samples": l.samples,
                "p50": l.p50,
                "p90": l.p90,
                "p99": l.p99,
                "p99_9": l.p99_9,
                "max": l.max,
            });
        }
        if plan.scenario == Scenario::Fanout {
            v["protocol"] = json!(plan.protocol.name());
        }
        v["server_cpu"] = match &self.cpu {
            None => Value::Null,
            Some(c) => {
                let mut cpu = json!({"user_s": c.user_seconds(), "system_s": c.system_seconds()});
                let round2 = |x: f64| (x * 100.0).round() / 100.0;
                if plan.scenario == Scenario::Connections {
                    // Measured over the hold: the pings answered then.
                    cpu["us_per_ping"] = json!(c.us_per(self.pongs).map(round2));
                } else {
                    cpu["us_per_delivery"] = json!(c.us_per(self.deliveries).map(round2));
                }
                cpu
            }
        };
        v["server_rss"] = match &self.rss {
            None => Value::Null,
            Some(r) => {
                let mut rss = json!({
                    "pid": r.pid,
                    "before_kib": r.before_kib,
                    "after_kib": r.after_kib,
                    "connections": r.connections,
                    "per_connection_bytes": r.per_connection_bytes(),
                });
                if let Some(held) = self.rss_held_kib {
                    rss["held_kib"] = json!(held);
                    rss["held_per_connection_bytes"] = json!(r.per_connection_bytes_at(held));
                }
                rss
            }
        };
        v
    }

    pub(super) fn table(&self, plan: &Plan) -> String {
        let ms = |us: u64| format!("{:.3} ms", us as f64 / 1000.0);
        let l = &self.latency;
        let mut rows: Vec<(String, String)> = Vec::new();
        let sends = if plan.scenario == Scenario::Rpc {
            "commands"
        } else {
            "publishes"
        };
        let limit = match plan.count {
            Some(c) => format!("{c} {sends} or {}", humantime::format_duration(plan.duration)),
            None => humantime::format_duration(plan.duration).to_string(),
        };
        match plan.scenario {
            Scenario::Publish | Scenario::Fanout => {
                let rate = match plan.rate {
                    Some(r) => format!("{r} publishes/s in all"),
                    None => "as fast as the window allows".into(),
                };
                let clients = match plan.scenario {
                    Scenario::Publish => format!("{} publishers, each on its own channel", plan.publishers),
                    _ => format!(
                        "{} subscribers on one channel, {} publisher{}",
                        plan.subscribers,
                        plan.publishers,
                        if plan.publishers == 1 { "" } else { "s" }
                    ),
                };
                rows.push(("clients".into(), clients));
                rows.push((
                    "load".into(),
                    format!(
                        "{rate}, window {}, {}-byte payloads, {limit}",
                        plan.window, plan.payload
                    ),
                ));
                rows.push((
                    "publishes".into(),
                    format!(
                        "{} sent, {} acked, {} unacked; {:.1} acks/s",
                        self.sent,
                        self.acked,
                        self.unacked,
                        per_second(self.acked, self.ack_elapsed)
                    ),
                ));
                if plan.scenario == Scenario::Fanout {
                    rows.push((
                        "deliveries".into(),
                        format!(
                            "{} of {} expected; {:.1} deliveries/s",
                            self.deliveries,
                            self.expected_deliveries,
                            per_second(self.deliveries, self.elapsed)
                        ),
                    ));
                }
            }
            Scenario::Rpc => {
                rows.push((
                    "clients".into(),
                    format!("{} clients, {} agents", plan.clients, plan.agents),
                ));
                rows.push((
                    "load".into(),
                    format!(
                        "{} commands in flight per client, {}-byte payloads, {limit}",
                        plan.window, plan.payload
                    ),
                ));
                rows.push((
                    "commands".into(),
                    format!(
                        "{} sent, {} results, {} failed; {:.1} results/s ({} tasks answered by the agents)",
                        self.sent,
                        self.results,
                        self.failed,
                        per_second(self.results, self.elapsed),
                        self.tasks
                    ),
                ));
            }
            Scenario::Connections => {
                let from = match plan.source_addrs.as_slice() {
                    [] => "the address the system picks".to_owned(),
                    [one] => one.to_string(),
                    [first, .., last] => format!("{} addresses, {first} to {last}", plan.source_addrs.len()),
                };
                rows.push((
                    "connections".into(),
                    format!(
                        "{} idle from {from}, held {}",
                        plan.idle,
                        humantime::format_duration(plan.hold)
                    ),
                ));
                rows.push((
                    "opened".into(),
                    format!(
                        "{} opened, {} failed in {:.3} s; {:.1} opens/s",
                        self.opened,
                        self.open_failed,
                        self.open_elapsed.as_secs_f64(),
                        per_second(self.opened, self.open_elapsed)
                    ),
                ));
                rows.push((
                    "while held".into(),
                    format!(
                        "{} pings, {} pongs, {} disconnects; {} closed cleanly",
                        self.pings, self.pongs, self.disconnects, self.closed
                    ),
                ));
            }
        }
        if plan.scenario != Scenario::Connections {
            rows.push(("elapsed".into(), format!("{:.3} s", self.elapsed.as_secs_f64())));
            let what = match plan.scenario {
                Scenario::Publish => "latency, send to ack",
                Scenario::Rpc => "latency, send to result",
                _ => "latency, publish to delivery",
            };
            rows.push((
                what.into(),
                if l.samples == 0 {
                    "no samples".into()
                } else {
                    format!(
                        "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  ({} samples)",
                        ms(l.p50),
                        ms(l.p90),
                        ms(l.p99),
                        ms(l.p99_9),
                        ms(l.max),
                        l.samples
                    )
                },
            ));
        }
        match plan.scenario {
            Scenario::Publish | Scenario::Fanout => rows.push((
                "lost / duplicated".into(),
                format!(
                    "{} / {}  (duplicate acks {}, reordered {}, resent {}, disconnects {})",
                    self.lost, self.duplicates, self.duplicate_acks, self.reordered, self.retried, self.disconnects
                ),
            )),
            Scenario::Rpc => rows.push((
                "lost / duplicated".into(),
                format!(
                    "{} / {}  (resent {}, agent errors {}, disconnects {})",
                    self.lost, self.duplicates, self.retried, self.agent_errors, self.disconnects
                ),
            )),
            Scenario::Connections => {}
        }
        if let Some(r) = &self.rss {
            let held = match self.rss_held_kib {
                Some(kib) => format!(
                    "; {:.1} MiB at the end of the hold: {:.2} KiB per connection",
                    kib as f64 / 1024.0,
                    r.per_connection_bytes_at(kib) as f64 / 1024.0
                ),
                None => String::new(),
            };
            rows.push((
                format!("server RSS (pid {})", r.pid),
                format!(
                    "{:.1} MiB before, {:.1} MiB with {} connections: {:.2} KiB per connection{held}",
                    r.before_kib as f64 / 1024.0,
                    r.after_kib as f64 / 1024.0,
                    r.connections,
                    r.per_connection_bytes() as f64 / 1024.0
                ),
            ));
        }
        if let Some(c) = &self.cpu {
            let (n, what) = if plan.scenario == Scenario::Connections {
                (self.pongs, "ping answered while held")
            } else {
                (self.deliveries, "delivery")
            };
            let per = c
                .us_per(n)
                .map_or_else(|| format!("no {what}"), |us| format!("{us:.2} µs per {what}"));
            rows.push((
                "server CPU".into(),
                format!(
                    "{:.2} s user + {:.2} s system: {per}",
                    c.user_seconds(),
                    c.system_seconds()
                ),
            ));
        }
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = format!(
            "tether bench {} against {}{}\n",
            plan.scenario.name(),
            plan.url,
            if plan.protocol == Protocol::Tether {
                String::new()
            } else {
                format!(" ({} protocol)", plan.protocol.name())
            }
        );
        for (k, v) in rows {
            out.push_str(&format!("  {k:<width$}  {v}\n"));
        }
        out
    }
}

/// One line on stderr per second: connections while connecting, then the
/// running totals and the last second's rates.
pub(super) async fn progress(scenario: Scenario, connections: u64, shared: Arc<Shared>) {
    let c = &shared.counters;
    let name = scenario.name();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let (mut last_acked, mut last_delivered, mut last_results) = (0, 0, 0);
    loop {
        tick.tick().await;
        let get = Counters::get;
        let Some(started) = shared.started.get() else {
            let failed = match get(&c.connect_failed) {
                0 => String::new(),
                n => format!(" ({n} failed)"),
            };
            eprintln!(
                "tether bench {name}: connecting {}/{connections}{failed}",
                get(&c.connected)
            );
            continue;
        };
        let elapsed = started.elapsed().as_secs_f64();
        let line = match scenario {
            Scenario::Publish | Scenario::Fanout => {
                let (acked, delivered) = (get(&c.acked), get(&c.delivered));
                let mut line = format!(
                    "tether bench {name}: {elapsed:>5.1}s  acked {acked} ({}/s)",
                    acked - last_acked
                );
                if scenario == Scenario::Fanout {
                    line.push_str(&format!("  delivered {delivered} ({}/s)", delivered - last_delivered));
                }
                line.push_str(&format!(
                    "  lost {}  dup {}  resent {}  disconnects {}",
                    get(&c.lost),
                    get(&c.duplicates),
                    get(&c.retried),
                    get(&c.disconnects)
                ));
                (last_acked, last_delivered) = (acked, delivered);
                line
            }
            Scenario::Rpc => {
                let results = get(&c.results);
                let line = format!(
                    "tether bench {name}: {elapsed:>5.1}s  sent {}  results {results} ({}/s)  failed {}  dup {}  \
                     resent {}  disconnects {}",
                    get(&c.sent),
                    results - last_results,
                    get(&c.failed),
                    get(&c.duplicates),
                    get(&c.retried),
                    get(&c.disconnects)
                );
                last_results = results;
                line
            }
            Scenario::Connections => format!(
                "tether bench {name}: holding {elapsed:>5.1}s  open {}  pings {}  pongs {}  disconnects {}",
                get(&c.connected).saturating_sub(get(&c.disconnects)),
                get(&c.pings),
                get(&c.pongs),
                get(&c.disconnects)
            ),
        };
        eprintln!("{line}");
    }
}
