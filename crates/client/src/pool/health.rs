//! How healthy a connected endpoint is: the [`score`] formula, the smoothed
//! RTT and the window of recent errors ([`Health`]), which failures count
//! against an endpoint, and the task that pings each endpoint.
//!
//! Not here: whether an endpoint is healthy at all (its client's state, read
//! by the pool) and choosing by score (`choose`).

use std::collections::VecDeque;
use std::sync::Weak;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use crate::ClientError;

use super::inner::Inner;

/// The RTT at which the score halves; also the RTT assumed before the first pong.
pub const RTT_SCALE: Duration = Duration::from_millis(50);
/// Weight of the newest ping in the smoothed RTT.
const RTT_WEIGHT: f64 = 0.3;
/// Error timestamps kept per endpoint; the score is ~0 long before this.
const MAX_ERRORS_KEPT: usize = 1024;

/// The health score of a healthy endpoint (see the module docs): `rtt` the
/// smoothed ping round trip (`None`: not measured yet, taken as [`RTT_SCALE`]),
/// `errors` the failures in the error window.
pub fn score(rtt: Option<Duration>, errors: usize) -> f64 {
    let rtt = rtt.unwrap_or(RTT_SCALE).as_secs_f64() / RTT_SCALE.as_secs_f64();
    1.0 / ((1.0 + rtt) * (1.0 + errors as f64))
}

/// Whether a failed request says something about the endpoint (rather than
/// about the caller's input or an agent).
pub(super) fn endpoint_fault(e: &ClientError) -> bool {
    match e {
        ClientError::Timeout | ClientError::Closed(_) => true,
        ClientError::Gateway(b) => matches!(b.code.as_str(), "internal" | "overloaded" | "rate_limited"),
        ClientError::Config(_) | ClientError::Queue(_) => false,
    }
}

#[derive(Default)]
pub(super) struct Health {
    pub(super) rtt: Option<Duration>,
    errors: VecDeque<Instant>,
}

impl Health {
    pub(super) fn record_rtt(&mut self, sample: Duration) {
        self.rtt = Some(match self.rtt {
            None => sample,
            Some(old) => old.mul_f64(1.0 - RTT_WEIGHT) + sample.mul_f64(RTT_WEIGHT),
        });
    }

    pub(super) fn record_error(&mut self, now: Instant) {
        if self.errors.len() >= MAX_ERRORS_KEPT {
            self.errors.pop_front();
        }
        self.errors.push_back(now);
    }

    pub(super) fn errors(&mut self, now: Instant, window: Duration) -> usize {
        while self.errors.front().is_some_and(|t| now.duration_since(*t) > window) {
            self.errors.pop_front();
        }
        self.errors.len()
    }
}

/// Pings endpoint `i` every `interval` while it is connected and records the
/// round trip, or an error when no pong comes within `interval`.
pub(super) async fn health_checks(pool: Weak<Inner>, i: usize, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let client = {
            let Some(inner) = pool.upgrade() else { return };
            if inner.is_closed() {
                return;
            }
            match inner.endpoints[i].client() {
                Some(c) if c.is_online() => c,
                _ => continue,
            }
        };
        let sent = Instant::now();
        let reply = tokio::time::timeout(interval, client.send_request(json!({"type": "ping"}))).await;
        let rtt = sent.elapsed();
        drop(client);
        let Some(inner) = pool.upgrade() else { return };
        let endpoint = &inner.endpoints[i];
        match reply {
            Ok(Ok(_)) => endpoint.health.lock().expect("health lock").record_rtt(rtt),
            Ok(Err(e)) if !endpoint_fault(&e) => {}
            _ => endpoint.record_error(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_score_falls_with_rtt_and_with_errors() {
        let ms = Duration::from_millis;
        assert_eq!(score(Some(ms(0)), 0), 1.0);
        assert_eq!(score(Some(ms(50)), 0), 0.5);
        assert_eq!(score(None, 0), 0.5, "unmeasured counts as 50 ms");
        assert_eq!(score(Some(ms(0)), 1), 0.5);
        assert_eq!(score(Some(ms(50)), 3), 0.125);
        assert!(score(Some(ms(5)), 0) > score(Some(ms(20)), 0));
        assert!(score(Some(ms(20)), 0) > score(Some(ms(5)), 1));
    }

    #[test]
    fn the_smoothed_rtt_moves_by_a_third_of_the_way() {
        let mut h = Health::default();
        h.record_rtt(Duration::from_millis(10));
        assert_eq!(h.rtt, Some(Duration::from_millis(10)));
        h.record_rtt(Duration::from_millis(110));
        assert_eq!(h.rtt.map(|d| d.as_millis()), Some(40));
        let now = Instant::now();
        h.record_error(now);
        h.record_error(now + Duration::from_secs(10));
        assert_eq!(h.errors(now + Duration::from_secs(11), Duration::from_secs(5)), 1);
    }
}
