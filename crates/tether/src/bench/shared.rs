//! [`Shared`]: the state every task of a run shares (the live counters and
//! the latency histogram, the time base of the embedded timestamps, when
//! sending started) and the run's one-time warnings.
//!
//! Not here: the counters and histogram themselves ([`super::stats`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use super::stats::{Counters, Latency};

/// The state every task of a run shares.
pub(crate) struct Shared {
    /// Time zero of the embedded timestamps (µs since this instant).
    base: Instant,
    pub counters: Counters,
    pub latency: Latency,
    /// When sending started (set once every connection is up).
    pub(super) started: OnceLock<Instant>,
    rate_limit_warned: AtomicBool,
}

impl Shared {
    pub(super) fn new() -> Shared {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Shared {
            base: Instant::now(),
            counters: Counters::default(),
            latency: Latency::new(4 * cores),
            started: OnceLock::new(),
            rate_limit_warned: AtomicBool::new(false),
        }
    }

    /// Microseconds since the run's time zero: the timestamp publishers embed.
    pub fn now_us(&self) -> u64 {
        self.base.elapsed().as_micros() as u64
    }

    /// `at` as a timestamp like [`Shared::now_us`].
    pub fn us_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_micros() as u64
    }

    /// Latency of something stamped `t` (by [`Shared::now_us`]), in µs.
    pub fn since_us(&self, t: u64) -> u64 {
        self.now_us().saturating_sub(t)
    }

    /// Says once per run that the gateway is rate-limiting the benchmark.
    pub fn warn_rate_limited(&self) {
        if !self.rate_limit_warned.swap(true, Ordering::Relaxed) {
            eprintln!(
                "tether bench: the gateway is rate-limiting the benchmark's frames (resent after retry_after_ms); \
                 start it with --rate-limit and --rate-burst above the benchmark's rate, e.g. 1000000"
            );
        }
    }
}
