//! A circuit breaker for connection attempts: after too many consecutive failed
//! connects, stop trying for a cooldown, then let a single probe through.
//!
//! Sans-IO: time comes in as `Instant` arguments and nothing here reads a
//! clock, sleeps or connects. The driver asks [`CircuitBreaker::allow`] before
//! each connect, reports the outcome with [`CircuitBreaker::on_success`] or
//! [`CircuitBreaker::on_failure`], and wakes itself at
//! [`CircuitBreaker::poll_timeout`]. Every change of state comes back as a
//! [`Transition`] for logs, metrics and the application.
//!
//! Not here: how long to wait between attempts while the circuit is closed
//! (that is [`crate::backoff`]).

use std::time::{Duration, Instant};

/// Default consecutive failed connects that open the circuit: enough to ride
/// out a gateway restart or a brief network blip, few enough that a gateway
/// that is really down is left alone within a minute or so of backoff.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 5;
/// Default time the circuit stays open before a probe: long enough for an
/// operator or an orchestrator to bring a gateway back.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(60);

/// When the breaker opens and for how long. Build it with
/// [`CircuitConfig::try_new`] or [`Default`]; the fields are public so that a
/// config file can fill them, and [`CircuitConfig::validate`] checks them
/// afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitConfig {
    /// Consecutive failed connects that open the circuit (5).
    pub failure_threshold: u32,
    /// Time the circuit stays open before one probe is let through (60 s).
    pub cooldown: Duration,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        CircuitConfig {
            failure_threshold: DEFAULT_FAILURE_THRESHOLD,
            cooldown: DEFAULT_COOLDOWN,
        }
    }
}

impl CircuitConfig {
    /// A checked config: `failure_threshold` at least 1, `cooldown` above zero.
    pub fn try_new(failure_threshold: u32, cooldown: Duration) -> Result<Self, CircuitError> {
        let config = CircuitConfig {
            failure_threshold,
            cooldown,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks a config whose fields were set directly.
    pub fn validate(&self) -> Result<(), CircuitError> {
        if self.failure_threshold == 0 {
            return Err(CircuitError::ZeroThreshold);
        }
        if self.cooldown.is_zero() {
            return Err(CircuitError::ZeroCooldown);
        }
        Ok(())
    }
}

/// A [`CircuitConfig`] that cannot work. Fix the input; retrying won't help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CircuitError {
    /// `failure_threshold` is zero: the circuit would be open before any
    /// attempt. Use at least 1.
    #[error("the circuit failure threshold must be at least 1")]
    ZeroThreshold,
    /// `cooldown` is zero: an open circuit would let every attempt through at
    /// once, so it would not protect anything. Give it a positive value.
    #[error("the circuit cooldown must be above zero")]
    ZeroCooldown,
}

/// Where the breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Connects go ahead; failures are counted.
    Closed {
        /// Failed connects since the last success.
        consecutive_failures: u32,
    },
    /// Connects are refused until `until`.
    Open {
        /// End of the cooldown.
        until: Instant,
    },
    /// The cooldown is over and one probe connect is under way; others are
    /// refused until its outcome is reported.
    HalfOpen,
}

impl CircuitState {
    /// A closed circuit with no failures: where a breaker starts.
    pub const CLOSED: CircuitState = CircuitState::Closed {
        consecutive_failures: 0,
    };

    /// Whether `self` and `other` are the same variant, whatever their data.
    fn same_kind(&self, other: &CircuitState) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// Why the state changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionReason {
    /// Closed → Open: `failure_threshold` consecutive connects failed.
    ThresholdReached,
    /// Open → HalfOpen: the cooldown is over; a probe is let through.
    CooldownElapsed,
    /// HalfOpen → Open: the probe failed; a fresh cooldown starts.
    ProbeFailed,
    /// HalfOpen or Open → Closed: a connect succeeded.
    Succeeded,
}

/// A change of state kind (Closed, Open, HalfOpen). A failure counted while
/// staying closed is not a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The state before the event.
    pub old: CircuitState,
    /// The state after it.
    pub new: CircuitState,
    /// Why it changed.
    pub reason: TransitionReason,
}

/// The answer of [`CircuitBreaker::allow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a refused connect must not be attempted, and a transition should be reported"]
pub struct Admission {
    /// Whether a connect may be attempted now. If so, its outcome must be
    /// reported with `on_success` or `on_failure`.
    pub allowed: bool,
    /// Set when asking moved the breaker (Open → HalfOpen at the end of the
    /// cooldown).
    pub transition: Option<Transition>,
}

/// Counters since the breaker was made, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CircuitStats {
    /// Times the circuit opened (from Closed or after a failed probe).
    pub opened: u64,
    /// Failed connects reported.
    pub failures: u64,
    /// Successful connects reported.
    pub successes: u64,
}

/// The breaker itself: Closed, then Open after `failure_threshold` consecutive
/// failures, HalfOpen after `cooldown` with exactly one probe allowed, Closed
/// again when the probe succeeds or Open again (fresh cooldown) when it fails.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: CircuitConfig,
    state: CircuitState,
    stats: CircuitStats,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        CircuitBreaker::new(CircuitConfig::default())
    }
}

impl CircuitBreaker {
    /// A closed breaker. An unchecked config does not make it panic: a zero
    /// threshold opens on the first failure, a zero cooldown half-opens on the
    /// next `allow`.
    pub fn new(config: CircuitConfig) -> Self {
        CircuitBreaker {
            config,
            state: CircuitState::CLOSED,
            stats: CircuitStats::default(),
        }
    }

    /// The config it was built with.
    pub fn config(&self) -> &CircuitConfig {
        &self.config
    }

    /// The current state.
    pub fn state(&self) -> &CircuitState {
        &self.state
    }

    /// Counters for metrics.
    pub fn stats(&self) -> CircuitStats {
        self.stats
    }

    /// May a connect be attempted at `now`?
    ///
    /// - Closed: yes.
    /// - Open before `until`: no.
    /// - Open at or after `until`: moves to HalfOpen and says yes, with the
    ///   transition. This is the single probe.
    /// - HalfOpen: no, the probe is still under way.
    pub fn allow(&mut self, now: Instant) -> Admission {
        match self.state {
            CircuitState::Closed { .. } => Admission {
                allowed: true,
                transition: None,
            },
            CircuitState::Open { until } if now < until => Admission {
                allowed: false,
                transition: None,
            },
            CircuitState::Open { .. } => {
                let transition = self.move_to(CircuitState::HalfOpen, TransitionReason::CooldownElapsed);
                Admission {
                    allowed: true,
                    transition,
                }
            }
            CircuitState::HalfOpen => Admission {
                allowed: false,
                transition: None,
            },
        }
    }

    /// A connect succeeded: closes the circuit and clears the failure count.
    /// Returns the transition unless it was already closed. A success while
    /// Open (from a connect that started before the circuit opened) closes it
    /// too: the gateway is evidently reachable.
    pub fn on_success(&mut self) -> Option<Transition> {
        self.stats.successes += 1;
        self.move_to(CircuitState::CLOSED, TransitionReason::Succeeded)
    }

    /// A connect failed at `now`. Closed: counts it, and the
    /// `failure_threshold`-th consecutive failure opens the circuit until
    /// `now + cooldown`. HalfOpen: the probe failed, so it opens again with a
    /// fresh cooldown. Open: a late report from an earlier attempt; counted,
    /// and the cooldown is left as it is. Returns the transition, if any.
    pub fn on_failure(&mut self, now: Instant) -> Option<Transition> {
        self.stats.failures += 1;
        match self.state {
            CircuitState::Closed { consecutive_failures } => {
                let consecutive_failures = consecutive_failures.saturating_add(1);
                if consecutive_failures >= self.config.failure_threshold {
                    self.open(now, TransitionReason::ThresholdReached)
                } else {
                    self.state = CircuitState::Closed { consecutive_failures };
                    None
                }
            }
            CircuitState::HalfOpen => self.open(now, TransitionReason::ProbeFailed),
            CircuitState::Open { .. } => None,
        }
    }

    /// When the driver should next call [`CircuitBreaker::allow`]: the end of
    /// the cooldown while Open, otherwise `None` (nothing to wait for).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            CircuitState::Open { until } => Some(until),
            CircuitState::Closed { .. } | CircuitState::HalfOpen => None,
        }
    }

    fn open(&mut self, now: Instant, reason: TransitionReason) -> Option<Transition> {
        self.stats.opened += 1;
        let until = saturating_deadline(now, self.config.cooldown);
        self.move_to(CircuitState::Open { until }, reason)
    }

    /// Sets the state; returns a transition if its kind changed.
    fn move_to(&mut self, new: CircuitState, reason: TransitionReason) -> Option<Transition> {
        let old = std::mem::replace(&mut self.state, new);
        (!old.same_kind(&new)).then_some(Transition { old, new, reason })
    }
}

/// `now + cooldown` without panicking: `Instant` has no maximum, so a cooldown
/// too large to represent is halved until it fits (still "practically never").
fn saturating_deadline(now: Instant, mut cooldown: Duration) -> Instant {
    loop {
        if let Some(deadline) = now.checked_add(cooldown) {
            return deadline;
        }
        cooldown /= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use CircuitState::{Closed, HalfOpen, Open};
    use TransitionReason::{CooldownElapsed, ProbeFailed, Succeeded, ThresholdReached};

    /// What happens to the breaker in a table row.
    #[derive(Debug, Clone, Copy)]
    enum Event {
        Allow,
        Success,
        Failure,
    }

    /// One row: at `at`, `event` happens; afterwards the state is `state`,
    /// `allow` answered `allowed` (`None` for the other events) and the event
    /// reported a transition with `reason`, or none.
    struct Step {
        at: Instant,
        event: Event,
        state: CircuitState,
        allowed: Option<bool>,
        reason: Option<TransitionReason>,
    }

    fn step(
        at: Instant,
        event: Event,
        state: CircuitState,
        allowed: Option<bool>,
        reason: Option<TransitionReason>,
    ) -> Step {
        Step {
            at,
            event,
            state,
            allowed,
            reason,
        }
    }

    fn closed(consecutive_failures: u32) -> CircuitState {
        Closed { consecutive_failures }
    }

    /// Applies the event and checks the row; `row` names it in failures.
    fn apply(breaker: &mut CircuitBreaker, s: &Step, row: usize) {
        let old = *breaker.state();
        let (allowed, transition) = match s.event {
            Event::Allow => {
                let Admission { allowed, transition } = breaker.allow(s.at);
                (Some(allowed), transition)
            }
            Event::Success => (None, breaker.on_success()),
            Event::Failure => (None, breaker.on_failure(s.at)),
        };
        let ctx = format!("row {row}: {old:?} + {:?}", s.event);
        assert_eq!(breaker.state(), &s.state, "{ctx}: state");
        assert_eq!(allowed, s.allowed, "{ctx}: allowed");
        let expected = s.reason.map(|reason| Transition {
            old,
            new: s.state,
            reason,
        });
        assert_eq!(transition, expected, "{ctx}: transition");
    }

    fn run(breaker: &mut CircuitBreaker, steps: &[Step]) {
        for (row, s) in steps.iter().enumerate() {
            apply(breaker, s, row);
        }
    }

    /// A breaker with threshold 3 and cooldown 60 s, and the base instant.
    fn setup() -> (CircuitBreaker, Instant) {
        let config = CircuitConfig::try_new(3, Duration::from_secs(60)).expect("valid config");
        (CircuitBreaker::new(config), Instant::now())
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn default_config_is_5_failures_and_60s() {
        let config = CircuitConfig::default();
        assert_eq!(
            config,
            CircuitConfig {
                failure_threshold: 5,
                cooldown: secs(60)
            }
        );
        assert_eq!(config.validate(), Ok(()));
        let breaker = CircuitBreaker::default();
        assert_eq!(breaker.state(), &closed(0));
        assert_eq!(breaker.poll_timeout(), None);
        assert_eq!(breaker.stats(), CircuitStats::default());
    }

    #[test]
    fn try_new_rejects_bad_input() {
        // (failure_threshold, cooldown, expected)
        let cases = [
            (0, secs(60), Err(CircuitError::ZeroThreshold)),
            (0, Duration::ZERO, Err(CircuitError::ZeroThreshold)),
            (5, Duration::ZERO, Err(CircuitError::ZeroCooldown)),
            (1, Duration::from_nanos(1), Ok(())),
            (u32::MAX, Duration::MAX, Ok(())),
        ];
        for (threshold, cooldown, expected) in cases {
            let got = CircuitConfig::try_new(threshold, cooldown).map(|_| ());
            assert_eq!(got, expected, "threshold {threshold}, cooldown {cooldown:?}");
        }
    }

    #[test]
    fn single_events_from_every_state() {
        // (state, event, time) → (state', allowed, transition), threshold 3, cooldown 60 s.
        let (_, t0) = setup();
        let at = |s: u64| t0 + secs(s);
        let open = Open { until: at(60) };
        let cases = [
            // Closed
            (closed(0), Event::Allow, at(0), closed(0), Some(true), None),
            (closed(2), Event::Allow, at(0), closed(2), Some(true), None),
            (closed(0), Event::Success, at(0), closed(0), None, None),
            (closed(2), Event::Success, at(0), closed(0), None, None),
            (closed(0), Event::Failure, at(0), closed(1), None, None),
            (closed(1), Event::Failure, at(0), closed(2), None, None),
            (closed(2), Event::Failure, at(0), open, None, Some(ThresholdReached)),
            (
                closed(2),
                Event::Failure,
                at(5),
                Open { until: at(65) },
                None,
                Some(ThresholdReached),
            ),
            // Open until 60 s
            (open, Event::Allow, at(0), open, Some(false), None),
            (open, Event::Allow, at(59), open, Some(false), None),
            (
                open,
                Event::Allow,
                t0 + Duration::from_millis(59_999),
                open,
                Some(false),
                None,
            ),
            (open, Event::Allow, at(60), HalfOpen, Some(true), Some(CooldownElapsed)),
            (
                open,
                Event::Allow,
                at(3600),
                HalfOpen,
                Some(true),
                Some(CooldownElapsed),
            ),
            (open, Event::Failure, at(30), open, None, None),
            (open, Event::Success, at(30), closed(0), None, Some(Succeeded)),
            // HalfOpen, probe under way
            (HalfOpen, Event::Allow, at(61), HalfOpen, Some(false), None),
            (HalfOpen, Event::Success, at(61), closed(0), None, Some(Succeeded)),
            (
                HalfOpen,
                Event::Failure,
                at(61),
                Open { until: at(121) },
                None,
                Some(ProbeFailed),
            ),
        ];
        for (row, (from, event, now, to, allowed, reason)) in cases.into_iter().enumerate() {
            let (mut breaker, _) = setup();
            breaker.state = from;
            apply(&mut breaker, &step(now, event, to, allowed, reason), row);
        }
    }

    #[test]
    fn opens_after_exactly_threshold_consecutive_failures() {
        for threshold in [1, 2, 3, 5, 10] {
            let config = CircuitConfig::try_new(threshold, secs(60)).expect("valid config");
            let mut breaker = CircuitBreaker::new(config);
            let t0 = Instant::now();
            for n in 1..threshold {
                assert_eq!(
                    breaker.on_failure(t0 + secs(n.into())),
                    None,
                    "threshold {threshold}, failure {n}"
                );
                assert_eq!(breaker.state(), &closed(n));
                assert!(breaker.allow(t0 + secs(n.into())).allowed);
            }
            let now = t0 + secs(threshold.into());
            let transition = breaker.on_failure(now).expect("opens");
            assert_eq!(transition.old, closed(threshold - 1));
            assert_eq!(transition.new, Open { until: now + secs(60) });
            assert_eq!(transition.reason, ThresholdReached);
            assert_eq!(breaker.poll_timeout(), Some(now + secs(60)), "threshold {threshold}");
        }
    }

    #[test]
    fn success_in_between_resets_the_count() {
        let (mut breaker, t0) = setup();
        let at = |s: u64| t0 + secs(s);
        run(
            &mut breaker,
            &[
                step(at(0), Event::Failure, closed(1), None, None),
                step(at(1), Event::Failure, closed(2), None, None),
                step(at(2), Event::Success, closed(0), None, None),
                step(at(3), Event::Failure, closed(1), None, None),
                step(at(4), Event::Failure, closed(2), None, None),
                step(at(5), Event::Allow, closed(2), Some(true), None),
                step(
                    at(6),
                    Event::Failure,
                    Open { until: at(66) },
                    None,
                    Some(ThresholdReached),
                ),
            ],
        );
    }

    #[test]
    fn stays_open_before_the_cooldown_and_half_opens_at_it() {
        let (mut breaker, t0) = setup();
        let at = |s: u64| t0 + secs(s);
        let open = Open { until: at(70) };
        run(
            &mut breaker,
            &[
                step(at(0), Event::Failure, closed(1), None, None),
                step(at(5), Event::Failure, closed(2), None, None),
                step(at(10), Event::Failure, open, None, Some(ThresholdReached)),
                step(at(10), Event::Allow, open, Some(false), None),
                step(at(40), Event::Allow, open, Some(false), None),
                step(
                    t0 + Duration::from_millis(69_999),
                    Event::Allow,
                    open,
                    Some(false),
                    None,
                ),
                step(at(70), Event::Allow, HalfOpen, Some(true), Some(CooldownElapsed)),
            ],
        );
        assert_eq!(breaker.poll_timeout(), None);
    }

    #[test]
    fn half_open_lets_exactly_one_probe_through() {
        let (mut breaker, t0) = setup();
        breaker.state = Open { until: t0 + secs(60) };
        let admissions: Vec<bool> = (60..70).map(|s| breaker.allow(t0 + secs(s)).allowed).collect();
        assert_eq!(
            admissions,
            [true, false, false, false, false, false, false, false, false, false]
        );
        assert_eq!(breaker.state(), &HalfOpen);
    }

    #[test]
    fn probe_success_closes() {
        let (mut breaker, t0) = setup();
        let at = |s: u64| t0 + secs(s);
        breaker.state = Open { until: at(60) };
        run(
            &mut breaker,
            &[
                step(at(60), Event::Allow, HalfOpen, Some(true), Some(CooldownElapsed)),
                step(at(61), Event::Success, closed(0), None, Some(Succeeded)),
                step(at(62), Event::Allow, closed(0), Some(true), None),
                step(at(63), Event::Allow, closed(0), Some(true), None),
                // A full count is needed again to reopen.
                step(at(64), Event::Failure, closed(1), None, None),
            ],
        );
    }

    #[test]
    fn probe_failure_reopens_with_a_fresh_cooldown() {
        let (mut breaker, t0) = setup();
        let at = |s: u64| t0 + secs(s);
        breaker.state = Open { until: at(60) };
        let reopened = Open { until: at(150) };
        run(
            &mut breaker,
            &[
                step(at(80), Event::Allow, HalfOpen, Some(true), Some(CooldownElapsed)),
                step(at(90), Event::Failure, reopened, None, Some(ProbeFailed)),
                step(at(90), Event::Allow, reopened, Some(false), None),
                step(at(149), Event::Allow, reopened, Some(false), None),
                step(at(150), Event::Allow, HalfOpen, Some(true), Some(CooldownElapsed)),
            ],
        );
    }

    #[test]
    fn stats_count_opens_failures_and_successes() {
        let (mut breaker, t0) = setup();
        let at = |s: u64| t0 + secs(s);
        // (event, time, stats afterwards as (opened, failures, successes))
        let rows = [
            (Event::Failure, at(0), (0, 1, 0)),
            (Event::Success, at(1), (0, 1, 1)),
            (Event::Failure, at(2), (0, 2, 1)),
            (Event::Failure, at(3), (0, 3, 1)),
            (Event::Failure, at(4), (1, 4, 1)),  // opens until 64
            (Event::Allow, at(10), (1, 4, 1)),   // refused: not counted
            (Event::Failure, at(11), (1, 5, 1)), // late report while open: counted, no reopen
            (Event::Allow, at(64), (1, 5, 1)),   // probe
            (Event::Failure, at(65), (2, 6, 1)), // probe failed: reopens until 125
            (Event::Allow, at(125), (2, 6, 1)),  // probe
            (Event::Success, at(126), (2, 6, 2)),
        ];
        for (row, (event, now, (opened, failures, successes))) in rows.into_iter().enumerate() {
            match event {
                Event::Allow => {
                    let _ = breaker.allow(now);
                }
                Event::Success => {
                    let _ = breaker.on_success();
                }
                Event::Failure => {
                    let _ = breaker.on_failure(now);
                }
            }
            assert_eq!(
                breaker.stats(),
                CircuitStats {
                    opened,
                    failures,
                    successes
                },
                "row {row}: {event:?}"
            );
        }
        assert_eq!(breaker.state(), &closed(0));
    }

    #[test]
    fn huge_cooldown_does_not_panic() {
        let config = CircuitConfig::try_new(1, Duration::MAX).expect("valid config");
        let mut breaker = CircuitBreaker::new(config);
        let t0 = Instant::now();
        assert!(breaker.on_failure(t0).is_some());
        let until = breaker.poll_timeout().expect("open");
        assert!(until > t0 + secs(365 * 24 * 3600), "{until:?}");
        assert!(!breaker.allow(t0 + secs(365 * 24 * 3600)).allowed);
    }
}
