//! The per-connection frame budget: a token bucket (`rate_limit` per second,
//! `rate_burst` deep, via `governor`), and the 4029 rule: more than `rate_burst`
//! frames rejected within 10 s closes the connection.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// The window of the 4029 rule.
pub const REJECTION_WINDOW: Duration = Duration::from_secs(10);

/// The verdict on one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Process it.
    Allow,
    /// Reject it with `rate_limited`; `close` says the connection must then be
    /// closed with 4029.
    Reject { retry_after_ms: u64, close: bool },
}

/// One connection's rate state.
pub struct RateGuard {
    limiter: DefaultDirectRateLimiter,
    clock: DefaultClock,
    burst: usize,
    /// Rejections within the window; never longer than `burst + 1`.
    rejections: VecDeque<Instant>,
}

impl RateGuard {
    /// A full bucket.
    pub fn new(rate: u32, burst: u32) -> RateGuard {
        let rate = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
        let burst_nz = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        RateGuard {
            limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst_nz)),
            clock: DefaultClock::default(),
            burst: burst as usize,
            rejections: VecDeque::new(),
        }
    }

    /// Spends one token, or says how long until one is free.
    pub fn check(&mut self, now: Instant) -> Verdict {
        match self.limiter.check() {
            Ok(()) => Verdict::Allow,
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                while self
                    .rejections
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > REJECTION_WINDOW)
                {
                    self.rejections.pop_front();
                }
                self.rejections.push_back(now);
                if self.rejections.len() > self.burst + 1 {
                    self.rejections.pop_front();
                }
                Verdict::Reject {
                    retry_after_ms: (wait.as_millis() as u64).max(1),
                    close: self.rejections.len() > self.burst,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_reject_then_close() {
        let mut g = RateGuard::new(1, 3);
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(g.check(now), Verdict::Allow);
        }
        for i in 0..4 {
            let Verdict::Reject { retry_after_ms, close } = g.check(now) else {
                panic!("allowed")
            };
            assert!(retry_after_ms > 0 && retry_after_ms <= 1000);
            assert_eq!(close, i == 3, "the 4th rejection (more than burst=3) closes");
        }
    }

    #[test]
    fn old_rejections_leave_the_window() {
        let mut g = RateGuard::new(1, 1);
        let t0 = Instant::now();
        assert_eq!(g.check(t0), Verdict::Allow);
        assert!(matches!(g.check(t0), Verdict::Reject { close: false, .. }));
        // 11 s later (by the guard's window clock) the old rejection no longer counts.
        let later = t0 + Duration::from_secs(11);
        if let Verdict::Reject { close, .. } = g.check(later) {
            assert!(!close);
        }
    }
}
