//! The gateway's memory, for `--server-pid`: its resident set size read from
//! `/proc`, and [`Rss`], the reading before and after a run's connections
//! opened, with the memory per connection that follows.
//!
//! Not here: how it is printed ([`super::report`]).

use anyhow::{anyhow, Context};

use super::plan::Plan;

/// The gateway's resident set size (`VmRSS` in `/proc/PID/status`), in KiB.
pub(super) fn vm_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS line in {path}"))
}

/// The gateway's memory before and after the benchmark's connections opened.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rss {
    pub(super) pid: u32,
    pub(super) before_kib: u64,
    pub(super) after_kib: u64,
    pub(super) connections: usize,
}

impl Rss {
    /// Bytes of server memory per connection (negative if RSS shrank).
    pub(super) fn per_connection_bytes(&self) -> i64 {
        self.per_connection_bytes_at(self.after_kib)
    }

    /// The same with the gateway's RSS at `kib` instead.
    pub(super) fn per_connection_bytes_at(&self, kib: u64) -> i64 {
        let delta = (kib as i64 - self.before_kib as i64) * 1024;
        delta / self.connections.max(1) as i64
    }
}

/// Reads the gateway's RSS (when `--server-pid` was given) around `open`,
/// which opens every connection of the run.
pub(crate) async fn measure_rss<T, F>(plan: &Plan, open: F) -> anyhow::Result<(T, Option<Rss>)>
where
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    let before = plan.server_pid.map(vm_rss_kib).transpose()?;
    let opened = open.await?;
    let rss = match (plan.server_pid, before) {
        (Some(pid), Some(before_kib)) => Some(Rss {
            pid,
            before_kib,
            after_kib: vm_rss_kib(pid).context("the gateway's memory after connecting")?,
            connections: plan.connections(),
        }),
        _ => None,
    };
    Ok((opened, rss))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_per_connection() {
        let r = Rss {
            pid: 1,
            before_kib: 1000,
            after_kib: 1100,
            connections: 50,
        };
        assert_eq!(r.per_connection_bytes(), 2048);
        assert!(vm_rss_kib(std::process::id()).expect("own rss") > 0);
    }
}
