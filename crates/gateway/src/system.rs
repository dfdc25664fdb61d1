//! System metrics: real CPU and memory figures of the gateway process (via
//! `sysinfo`), connection and agent counts, and frame rates; sampled every
//! `system_metrics_interval` and pushed on the `system` channel.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
use tether_protocol::server::SystemMetrics;
use tether_protocol::validate::SYSTEM_CHANNEL;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Samples this process.
pub struct SystemSampler {
    node: String,
    started: Instant,
    metrics: Arc<Metrics>,
    inner: Mutex<Inner>,
}

struct Inner {
    sys: System,
    pid: Option<Pid>,
    last: Option<(Instant, u64, u64)>,
    latest: Option<SystemMetrics>,
}

impl SystemSampler {
    /// A sampler for this process.
    pub fn new(node: String, metrics: Arc<Metrics>) -> SystemSampler {
        let inner = Inner {
            sys: System::new(),
            pid: sysinfo::get_current_pid().ok(),
            last: None,
            latest: None,
        };
        SystemSampler {
            node,
            started: Instant::now(),
            metrics,
            inner: Mutex::new(inner),
        }
    }

    /// Takes a fresh sample. `agents` is the number of agents online.
    pub fn sample(&self, agents: usize) -> SystemMetrics {
        let mut inner = self.inner.lock().expect("sampler lock");
        let (cpu_percent, memory_bytes) = match inner.pid {
            Some(pid) => {
                inner.sys.refresh_processes_specifics(
                    ProcessesToUpdate::Some(&[pid]),
                    true,
                    ProcessRefreshKind::nothing().with_cpu().with_memory(),
                );
                inner
                    .sys
                    .process(pid)
                    .map_or((0.0, 0), |p| (f64::from(p.cpu_usage()), p.memory()))
            }
            None => (0.0, 0),
        };
        let now = Instant::now();
        let (received, sent) = self.metrics.frame_totals();
        let (in_rate, out_rate) = match inner.last {
            Some((t, r, s)) => {
                let secs = now.duration_since(t).as_secs_f64().max(0.001);
                ((received - r) as f64 / secs, (sent - s) as f64 / secs)
            }
            None => (0.0, 0.0),
        };
        inner.last = Some((now, received, sent));
        let sample = SystemMetrics {
            node: self.node.clone(),
            cpu_percent: round1(cpu_percent),
            memory_bytes,
            uptime_s: self.started.elapsed().as_secs(),
            connections: self.metrics.connections.get().max(0) as u64,
            agents: agents as u64,
            messages_in_per_s: round1(in_rate),
            messages_out_per_s: round1(out_rate),
            cluster: None,
        };
        inner.latest = Some(sample.clone());
        sample
    }

    /// The last periodic sample, or a fresh one.
    pub fn latest(&self, agents: usize) -> SystemMetrics {
        let latest = self.inner.lock().expect("sampler lock").latest.clone();
        match latest {
            Some(mut s) => {
                s.uptime_s = self.started.elapsed().as_secs();
                s.connections = self.metrics.connections.get().max(0) as u64;
                s.agents = agents as u64;
                s
            }
            None => self.sample(agents),
        }
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Pushes a sample on `system` every `interval` until `stop`.
pub fn spawn_pusher(gw: Arc<crate::state::Gateway>, interval: Duration, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let sample = gw.system.sample(gw.agents.online());
            let sample = gw.with_cluster_totals(sample);
            let data = serde_json::to_value(&sample).expect("metrics serialize");
            if !gw.ledger.publish_now(SYSTEM_CHANNEL.to_owned(), data) {
                tracing::warn!("ledger queue full: dropped a `system` push");
            }
        }
    });
}
