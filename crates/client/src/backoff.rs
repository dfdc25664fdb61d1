//! Reconnect delays: exponential backoff with full jitter.
//!
//! Sans-IO: [`Backoff`] only counts attempts and computes delays; the caller
//! passes in the random number generator and does the sleeping. Tests pass a
//! seeded generator, so every delay is reproducible.
//!
//! Not here: deciding *whether* to reconnect (close codes, `auto_reconnect`) or
//! giving up on a gateway that keeps failing (that is [`crate::circuit`]).

use std::time::Duration;

use rand::Rng;

/// Default first ceiling (`reconnect_interval`): quick enough that a single
/// dropped connection is barely noticed.
pub const DEFAULT_BASE: Duration = Duration::from_secs(1);
/// Default largest ceiling (`max_reconnect_delay`): a client whose gateway is
/// down for long still retries about twice a minute, not once an hour.
pub const DEFAULT_MAX: Duration = Duration::from_secs(30);

/// How reconnect delays grow. Build it with [`BackoffConfig::try_new`] or
/// [`Default`]; the fields are public so that a config file can fill them, and
/// [`BackoffConfig::validate`] checks them afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Ceiling of the first delay (`reconnect_interval`, 1 s). Each further
    /// attempt doubles the ceiling.
    pub base: Duration,
    /// Largest ceiling (`max_reconnect_delay`, 30 s).
    pub max: Duration,
    /// Delays handed out before giving up (`max_reconnect_attempts`); `None`
    /// retries forever (the default), `Some(0)` never retries.
    pub max_attempts: Option<u32>,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            base: DEFAULT_BASE,
            max: DEFAULT_MAX,
            max_attempts: None,
        }
    }
}

impl BackoffConfig {
    /// A checked config: `base` must be above zero and `max` at least `base`.
    pub fn try_new(base: Duration, max: Duration, max_attempts: Option<u32>) -> Result<Self, BackoffError> {
        let config = BackoffConfig {
            base,
            max,
            max_attempts,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks a config whose fields were set directly.
    pub fn validate(&self) -> Result<(), BackoffError> {
        if self.base.is_zero() {
            return Err(BackoffError::ZeroBase);
        }
        if self.max < self.base {
            return Err(BackoffError::MaxBelowBase {
                base: self.base,
                max: self.max,
            });
        }
        Ok(())
    }
}

/// A [`BackoffConfig`] that cannot work. Fix the input; retrying won't help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BackoffError {
    /// `base` (`reconnect_interval`) is zero: every client would reconnect at
    /// once, in a tight loop. Give it a positive value.
    #[error("the reconnect interval must be above zero")]
    ZeroBase,
    /// `max` (`max_reconnect_delay`) is below `base`: raise `max` or lower `base`.
    #[error("the maximum reconnect delay ({max:?}) is below the reconnect interval ({base:?})")]
    MaxBelowBase {
        /// The configured base.
        base: Duration,
        /// The configured maximum.
        max: Duration,
    },
}

/// Reconnect delays for one connection: "exponential backoff with full jitter"
/// (as named in the AWS Architecture Blog post "Exponential Backoff And
/// Jitter").
///
/// The ceiling doubles with each attempt, from `base` up to `max`, and the
/// delay is drawn uniformly from `[0, ceiling]`. Why full jitter rather than
/// the bare exponential: when a gateway restarts, all of its clients lose their
/// connection at the same instant. Without jitter they would all come back at
/// the same instants too (1 s, 2 s, 4 s, …), a thundering herd hitting the new
/// process in waves; drawing from the whole range spreads them out evenly.
///
/// Call [`Backoff::next_delay`] before each reconnect and [`Backoff::reset`]
/// once a connection succeeds.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    /// Delays handed out since the last reset.
    attempt: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(BackoffConfig::default())
    }
}

impl Backoff {
    /// A fresh backoff. An unchecked config does not make it panic: a zero
    /// `base` gives zero delays and a `max` below `base` caps every ceiling at
    /// `max`.
    pub fn new(config: BackoffConfig) -> Self {
        Backoff { config, attempt: 0 }
    }

    /// The config it was built with.
    pub fn config(&self) -> &BackoffConfig {
        &self.config
    }

    /// Delays handed out since the last [`Backoff::reset`].
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The ceiling of the next delay, before jitter: `min(max, base * 2^attempt)`.
    /// For tests and metrics.
    pub fn ceiling(&self) -> Duration {
        let BackoffConfig { base, max, .. } = self.config;
        // Doubling step by step (rather than computing 2^attempt) cannot
        // overflow and stops as soon as `max` is reached, so a huge attempt
        // count costs at most ~100 iterations (Duration holds < 2^94 ns).
        let mut ceiling = base;
        for _ in 0..self.attempt {
            if ceiling >= max {
                break;
            }
            ceiling = ceiling.saturating_mul(2);
        }
        ceiling.min(max)
    }

    /// The delay before the next reconnect attempt, drawn uniformly from
    /// `[0, ceiling]`, or `None` once `max_attempts` delays have been handed
    /// out (give up). Counts the attempt.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Option<Duration> {
        if self.config.max_attempts.is_some_and(|max| self.attempt >= max) {
            return None;
        }
        let delay = rng.random_range(Duration::ZERO..=self.ceiling());
        self.attempt = self.attempt.saturating_add(1);
        Some(delay)
    }

    /// Starts over from `base`, after a successful connection.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn config(base: Duration, max: Duration, max_attempts: Option<u32>) -> BackoffConfig {
        BackoffConfig::try_new(base, max, max_attempts).expect("valid config")
    }

    #[test]
    fn default_config_is_1s_base_30s_max_unlimited() {
        let config = BackoffConfig::default();
        assert_eq!(
            config,
            BackoffConfig {
                base: secs(1),
                max: secs(30),
                max_attempts: None
            }
        );
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn try_new_rejects_bad_input() {
        // (base, max, expected)
        let cases = [
            (Duration::ZERO, secs(30), Err(BackoffError::ZeroBase)),
            (Duration::ZERO, Duration::ZERO, Err(BackoffError::ZeroBase)),
            (
                secs(2),
                secs(1),
                Err(BackoffError::MaxBelowBase {
                    base: secs(2),
                    max: secs(1),
                }),
            ),
            (
                secs(1),
                Duration::from_millis(999),
                Err(BackoffError::MaxBelowBase {
                    base: secs(1),
                    max: Duration::from_millis(999),
                }),
            ),
            (secs(1), secs(1), Ok(())),
            (Duration::from_nanos(1), Duration::MAX, Ok(())),
        ];
        for (base, max, expected) in cases {
            let got = BackoffConfig::try_new(base, max, None).map(|_| ());
            assert_eq!(got, expected, "base {base:?}, max {max:?}");
        }
    }

    #[test]
    fn ceilings_double_from_base_and_cap_at_max() {
        let expected = [1, 2, 4, 8, 16, 30, 30, 30];
        let mut backoff = Backoff::new(config(secs(1), secs(30), None));
        let mut rng = StdRng::seed_from_u64(1);
        for (attempt, want) in expected.into_iter().enumerate() {
            assert_eq!(backoff.attempt() as usize, attempt);
            assert_eq!(backoff.ceiling(), secs(want), "attempt {attempt}");
            backoff.next_delay(&mut rng).expect("unlimited attempts");
        }
    }

    #[test]
    fn delays_stay_within_zero_and_ceiling() {
        // (base, max): the default, a sub-second one, and one where base == max.
        let configs = [
            (secs(1), secs(30)),
            (Duration::from_millis(100), Duration::from_millis(1500)),
            (secs(5), secs(5)),
        ];
        for (seed, (base, max)) in configs.into_iter().enumerate() {
            let mut rng = StdRng::seed_from_u64(seed as u64);
            let mut backoff = Backoff::new(config(base, max, None));
            for _ in 0..2000 {
                let ceiling = backoff.ceiling();
                let delay = backoff.next_delay(&mut rng).expect("unlimited attempts");
                assert!(delay <= ceiling, "{delay:?} > {ceiling:?} (base {base:?}, max {max:?})");
            }
        }
    }

    #[test]
    fn delays_spread_over_the_whole_range() {
        // Full jitter: at the 30 s cap, draws reach both ends of [0, 30 s].
        let mut rng = StdRng::seed_from_u64(7);
        let mut backoff = Backoff::new(config(secs(1), secs(30), None));
        let delays: Vec<Duration> = (0..1000)
            .filter_map(|_| backoff.next_delay(&mut rng))
            .skip(10)
            .collect();
        let lowest = delays.iter().min().copied().unwrap_or_default();
        let highest = delays.iter().max().copied().unwrap_or_default();
        assert!(lowest < secs(1), "lowest {lowest:?}");
        assert!(highest > secs(29), "highest {highest:?}");
    }

    #[test]
    fn same_seed_gives_same_delays() {
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut backoff = Backoff::default();
            (0..20).map(|_| backoff.next_delay(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(42), draw(42));
        assert_ne!(draw(42), draw(43));
    }

    #[test]
    fn max_attempts_limits_the_number_of_delays() {
        // (max_attempts, delays handed out before the first None)
        let cases = [(Some(0), 0), (Some(1), 1), (Some(3), 3), (Some(10), 10)];
        for (max_attempts, expected) in cases {
            let mut rng = StdRng::seed_from_u64(3);
            let mut backoff = Backoff::new(config(secs(1), secs(30), max_attempts));
            for n in 0..expected {
                assert!(backoff.next_delay(&mut rng).is_some(), "{max_attempts:?}: delay {n}");
            }
            assert_eq!(backoff.next_delay(&mut rng), None, "{max_attempts:?}");
            assert_eq!(backoff.next_delay(&mut rng), None, "{max_attempts:?}: stays given up");
            assert_eq!(
                backoff.attempt(),
                expected,
                "{max_attempts:?}: a refusal is not an attempt"
            );
        }
    }

    #[test]
    fn unlimited_attempts_never_give_up() {
        let mut rng = StdRng::seed_from_u64(4);
        let mut backoff = Backoff::default();
        assert!((0..10_000).all(|_| backoff.next_delay(&mut rng).is_some()));
        assert_eq!(backoff.attempt(), 10_000);
    }

    #[test]
    fn reset_starts_over() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut backoff = Backoff::new(config(secs(1), secs(30), Some(3)));
        for _ in 0..3 {
            backoff.next_delay(&mut rng);
        }
        assert_eq!(backoff.next_delay(&mut rng), None);
        assert_eq!(backoff.ceiling(), secs(8));

        backoff.reset();
        assert_eq!(backoff.attempt(), 0);
        assert_eq!(backoff.ceiling(), secs(1));
        let delays: Vec<_> = (0..4).map(|_| backoff.next_delay(&mut rng)).collect();
        assert!(delays[..3].iter().all(Option::is_some), "{delays:?}");
        assert_eq!(delays[3], None);
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        // (base, max, attempt, expected ceiling)
        let cases = [
            (secs(1), secs(30), 64, secs(30)),
            (secs(1), secs(30), u32::MAX, secs(30)),
            (Duration::from_nanos(1), Duration::MAX, u32::MAX, Duration::MAX),
            (secs(1), Duration::MAX, 200, Duration::MAX),
            (Duration::MAX, Duration::MAX, u32::MAX, Duration::MAX),
        ];
        for (base, max, attempt, expected) in cases {
            let mut rng = StdRng::seed_from_u64(6);
            let mut backoff = Backoff::new(config(base, max, None));
            backoff.attempt = attempt;
            assert_eq!(
                backoff.ceiling(),
                expected,
                "base {base:?}, max {max:?}, attempt {attempt}"
            );
            let delay = backoff.next_delay(&mut rng).expect("unlimited attempts");
            assert!(delay <= expected);
            assert_eq!(backoff.attempt(), attempt.saturating_add(1));
        }
    }

    #[test]
    fn unchecked_config_does_not_panic() {
        // Fields set directly, skipping validation: (base, max, expected ceiling at attempt 3)
        let cases = [(Duration::ZERO, secs(30), Duration::ZERO), (secs(10), secs(1), secs(1))];
        for (base, max, expected) in cases {
            let mut rng = StdRng::seed_from_u64(8);
            let mut backoff = Backoff::new(BackoffConfig {
                base,
                max,
                max_attempts: None,
            });
            backoff.attempt = 3;
            assert_eq!(backoff.ceiling(), expected);
            assert!(backoff.next_delay(&mut rng).is_some_and(|d| d <= expected));
        }
    }
}
