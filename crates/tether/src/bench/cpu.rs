//! The server's CPU time, for `--server-pid`: user and system time read from
//! `/proc/PID/stat` before and after the measured phase of a run, so that a
//! report can say how many microseconds of server CPU each delivery cost.
//!
//! Not here: how it is printed ([`super::report`]).

use anyhow::{anyhow, Context};

use super::plan::Plan;

/// Clock ticks per second of `/proc/PID/stat`'s times (`USER_HZ`, 100 on
/// every Linux architecture this runs on; `sysconf` would need unsafe code).
const TICKS_PER_SECOND: f64 = 100.0;

/// The user and system CPU time of `pid`, in clock ticks.
pub(super) fn cpu_ticks(pid: u32) -> anyhow::Result<(u64, u64)> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count
    // fields after its closing parenthesis. utime and stime are fields 14, 15.
    let rest = &stat[stat.rfind(')').ok_or_else(|| anyhow!("no command name in {path}"))? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> anyhow::Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| anyhow!("no field {n} in {path}"))
    };
    Ok((field(14)?, field(15)?))
}

/// Server CPU time spent during a phase.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Cpu {
    pub user_ticks: u64,
    pub system_ticks: u64,
}

impl Cpu {
    pub(super) fn user_seconds(&self) -> f64 {
        self.user_ticks as f64 / TICKS_PER_SECOND
    }

    pub(super) fn system_seconds(&self) -> f64 {
        self.system_ticks as f64 / TICKS_PER_SECOND
    }

    /// Microseconds of server CPU (user + system) per `n` things done.
    pub(super) fn us_per(&self, n: u64) -> Option<f64> {
        (n > 0).then(|| (self.user_seconds() + self.system_seconds()) * 1e6 / n as f64)
    }
}

/// Runs `phase` and reads the server's CPU time around it (when `--server-pid` was given).
pub(super) async fn measure_cpu<T, F>(plan: &Plan, phase: F) -> anyhow::Result<(T, Option<Cpu>)>
where
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    let before = plan.server_pid.map(cpu_ticks).transpose()?;
    let out = phase.await?;
    let cpu = match (plan.server_pid, before) {
        (Some(pid), Some((user, system))) => {
            let (user2, system2) = cpu_ticks(pid).context("the server's CPU time after the run")?;
            Some(Cpu {
                user_ticks: user2.saturating_sub(user),
                system_ticks: system2.saturating_sub(system),
            })
        }
        _ => None,
    };
    Ok((out, cpu))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_cpu_time_and_divides_it() {
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        let (user, system) = cpu_ticks(std::process::id()).expect("own stat");
        assert!(user + system > 0);
        let cpu = Cpu {
            user_ticks: 30,
            system_ticks: 20,
        };
        assert_eq!(cpu.us_per(100_000), Some(5.0));
        assert_eq!(cpu.us_per(0), None);
    }
}
