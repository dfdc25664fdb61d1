//! `tether bench`: a load generator for a running gateway, over plain
//! WebSockets (`tokio-tungstenite`, one connection per simulated client, every
//! connection its own principal unless `--token` is given).
//!
//! - `publish` ([`publish`]): K publishers, each on its own channel, keep up to
//!   a window of durable publishes in flight; reports acks/s and the latency
//!   from sending a publish to its ack, and checks that each channel's acked
//!   seqs are contiguous with no ack repeated.
//! - `fanout` ([`fanout`]): S subscribers on one channel, P publishers at a
//!   target rate (or as fast as their windows allow); reports deliveries/s and
//!   the latency from the publisher's timestamp (embedded in each event's
//!   `data`) to delivery, and checks every seq at every subscriber
//!   ([`stats::SeqTracker`]).
//! - `connections` ([`connections`]): C idle connections, opened from several
//!   loopback source addresses so that C can exceed one address's ephemeral
//!   ports, each sending a protocol `ping` every half heartbeat interval;
//!   reports connections opened and failed, the open rate, and the gateway's
//!   memory per connection; closes them cleanly after `--hold`.
//! - `rpc` ([`rpc`]): N agents registered for one command type echo every
//!   task; K clients keep a window of commands in flight; reports results/s
//!   and the latency from sending a command to its `result`, and checks that
//!   every command got exactly one result.
//!
//! All read the gateway's resident memory before connecting and once every
//! connection is up when given `--server-pid`, print a progress line to stderr
//! every second, and end with a table on stdout (or one JSON line, `--json`).
//! Every phase is bounded: connects by
//! [`CONNECT_TIMEOUT`](net::CONNECT_TIMEOUT), sending by `--duration` (and
//! `--count`) or `--hold`, the wait for the last acks, deliveries and results
//! by [`DRAIN_LIMIT`], and the whole run by a hard deadline.
//!
//! This module runs a [`Plan`] and prints its report ([`run`]). The rest:
//! [`plan`] (flags to a validated plan), [`net`] (connecting, and the checks
//! on source addresses and open files), [`frame`] (reading server frames,
//! building payloads), [`shared`] and [`stats`] (what the tasks of a run
//! count), [`rss`] (the gateway's memory), [`report`] (table, `--json` line,
//! progress line), and one module per scenario.

mod connections;
mod cpu;
mod fanout;
mod frame;
mod net;
mod peer;
mod plan;
mod publish;
mod report;
mod rpc;
mod rss;
mod shared;
pub mod stats;

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;

pub use plan::Plan;
use plan::Scenario;
use report::progress;
use shared::Shared;

/// After sending stops: how long publishers wait for their last acks,
/// subscribers for the last events, and clients for the last results.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Runs the plan and prints its report.
pub async fn run(plan: Plan) -> anyhow::Result<()> {
    let shared = Arc::new(Shared::new());
    let progress = tokio::spawn(progress(plan.scenario, plan.connections() as u64, shared.clone()));
    let limit = plan.hard_deadline();
    let result = tokio::time::timeout(limit, async {
        match plan.scenario {
            Scenario::Publish => publish::run(&plan, &shared).await,
            Scenario::Fanout => fanout::run(&plan, &shared).await,
            Scenario::Connections => connections::run(&plan, &shared).await,
            Scenario::Rpc => rpc::run(&plan, &shared).await,
        }
    })
    .await;
    progress.abort();
    let report = match result {
        Ok(r) => r?,
        Err(_) => bail!(
            "the run did not finish within its hard deadline of {}",
            humantime::format_duration(limit)
        ),
    };
    if plan.json {
        println!("{}", report.json(&plan));
    } else {
        print!("{}", report.table(&plan));
    }
    Ok(())
}
