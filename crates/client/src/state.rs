//! The connection state machine, sans-IO: `handle(event, now) -> actions` and
//! `poll_timeout()`. The driver task does the I/O and the timers; this module
//! decides. Every transition is reported as `{old, new, code, reason}`.
//!
//! Close codes follow the protocol's table: no reconnect after 1008, 4003, or
//! 4001 without a token provider; backoff after 1013 and 4029 (never less than
//! the base delay); an immediate reconnect to the next URL after 1001.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::backoff::Backoff;
use crate::circuit::{CircuitBreaker, CircuitState};
use crate::config::ClientConfig;

/// Where the connection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Not started.
    Idle,
    /// Opening a connection to `urls[url]`.
    Connecting { attempt: u32, url: usize },
    /// Open; `session` from `welcome`.
    Connected { url: usize, session: String },
    /// Waiting for the backoff delay before attempt `attempt`.
    Reconnecting { attempt: u32, at: Instant },
    /// Too many failed connects: waiting for the breaker's cooldown.
    CircuitOpen { until: Instant },
    /// For good (asked to, or a close code that forbids reconnecting, or the
    /// attempt cap was reached).
    Closed { code: Option<u16>, reason: String },
}

impl State {
    /// The state's name, for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Connecting { .. } => "connecting",
            State::Connected { .. } => "connected",
            State::Reconnecting { .. } => "reconnecting",
            State::CircuitOpen { .. } => "circuit_open",
            State::Closed { .. } => "closed",
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Start connecting.
    Start,
    /// The connection is open and `welcome` arrived.
    Opened { session: String },
    /// A connect attempt failed (refused, timed out, HTTP error, no welcome);
    /// `code` is the close code when the gateway closed before `welcome`.
    ConnectFailed { reason: String, code: Option<u16> },
    /// An open connection ended: the server's close code, or `None` when the
    /// network failed or the heartbeat found it dead.
    Lost { code: Option<u16>, reason: String },
    /// A timer from `poll_timeout` expired.
    Timeout,
    /// The application closes the client.
    Stop,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a connection to `urls[url]`.
    Connect { url: usize },
    /// Close the open connection (normal close, 1000).
    Disconnect,
    /// Report a transition.
    Transition(Transition),
}

/// One state change, as applications observe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub old: State,
    pub new: State,
    /// The close code that caused it, if any.
    pub code: Option<u16>,
    pub reason: String,
}

/// The machine.
pub struct Machine {
    state: State,
    urls: usize,
    url: usize,
    auto_reconnect: bool,
    can_renew_token: bool,
    backoff: Backoff,
    circuit: CircuitBreaker,
    min_delay: Duration,
    rng: StdRng,
}

impl Machine {
    /// A machine for `config`, seeded from the OS.
    pub fn new(config: &ClientConfig) -> Machine {
        Machine::with_rng(config, StdRng::from_os_rng())
    }

    /// A machine with a given random source (tests).
    pub fn with_rng(config: &ClientConfig, rng: StdRng) -> Machine {
        Machine {
            state: State::Idle,
            urls: config.urls.len().max(1),
            url: 0,
            auto_reconnect: config.auto_reconnect,
            can_renew_token: config.token_provider.is_some(),
            backoff: Backoff::new(config.backoff().unwrap_or_default()),
            circuit: CircuitBreaker::new(config.circuit),
            min_delay: config.reconnect_interval,
            rng,
        }
    }

    /// The current state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The breaker (for metrics).
    pub fn circuit(&self) -> &CircuitBreaker {
        &self.circuit
    }

    /// When the driver must feed [`Event::Timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Reconnecting { at, .. } => Some(*at),
            State::CircuitOpen { until } => Some(*until),
            _ => None,
        }
    }

    /// Applies one event.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        match (&self.state, event) {
            (State::Closed { .. }, _) => {}
            (_, Event::Stop) => {
                if matches!(self.state, State::Connected { .. }) {
                    actions.push(Action::Disconnect);
                }
                self.go(
                    State::Closed {
                        code: None,
                        reason: "closed by the application".into(),
                    },
                    None,
                    "stop",
                    &mut actions,
                );
            }
            (State::Idle, Event::Start) => self.connect(0, now, None, "start", &mut actions),
            (State::Connecting { url, .. }, Event::Opened { session }) => {
                let url = *url;
                self.backoff.reset();
                let _ = self.circuit.on_success();
                self.go(State::Connected { url, session }, None, "connected", &mut actions);
            }
            (State::Connecting { .. }, Event::ConnectFailed { reason, code }) if self.is_refusal(code) => {
                // Refused before any welcome (bad token 4001, role 4003, policy
                // 1008): the same rule as after a welcome, not a retry.
                self.go(
                    State::Closed {
                        code,
                        reason: reason.clone(),
                    },
                    code,
                    &reason,
                    &mut actions,
                );
            }
            (State::Connecting { attempt, .. }, Event::ConnectFailed { reason, .. }) => {
                let attempt = *attempt;
                let _ = self.circuit.on_failure(now);
                self.url = (self.url + 1) % self.urls;
                self.retry(attempt + 1, now, None, &reason, false, &mut actions);
            }
            (State::Connected { url, .. }, Event::Lost { code, reason }) => {
                let url = *url;
                match code {
                    _ if self.is_final(code) => self.go(
                        State::Closed {
                            code,
                            reason: reason.clone(),
                        },
                        code,
                        &reason,
                        &mut actions,
                    ),
                    Some(1001) => {
                        // Draining: at once, preferably elsewhere.
                        self.url = (url + 1) % self.urls;
                        self.connect(0, now, code, &reason, &mut actions);
                    }
                    Some(1013) | Some(4029) => self.retry(0, now, code, &reason, true, &mut actions),
                    _ => self.retry(0, now, code, &reason, false, &mut actions),
                }
            }
            (State::Reconnecting { attempt, at }, Event::Timeout) if now >= *at => {
                let attempt = *attempt;
                self.connect(attempt, now, None, "backoff elapsed", &mut actions);
            }
            (State::CircuitOpen { until }, Event::Timeout) if now >= *until => {
                self.connect(0, now, None, "circuit half-open: probing", &mut actions);
            }
            // Anything else (a late timer, a duplicate event) changes nothing.
            _ => {}
        }
        actions
    }

    /// Whether a loss with `code` ends the client: 1008 and 4003 always, 4001
    /// without a token provider, anything without `auto_reconnect`.
    fn is_final(&self, code: Option<u16>) -> bool {
        self.is_refusal(code) || !self.auto_reconnect
    }

    /// A close code that ends the client whatever `auto_reconnect` says: 1008,
    /// 4003, and 4001 without a token provider.
    fn is_refusal(&self, code: Option<u16>) -> bool {
        match code {
            Some(1008) | Some(4003) => true,
            Some(4001) => !self.can_renew_token,
            _ => false,
        }
    }

    fn connect(&mut self, attempt: u32, now: Instant, code: Option<u16>, reason: &str, actions: &mut Vec<Action>) {
        if !self.circuit.allow(now).allowed {
            let until = self.circuit.poll_timeout().unwrap_or(now);
            self.go(State::CircuitOpen { until }, code, "circuit open", actions);
            return;
        }
        let url = self.url;
        self.go(State::Connecting { attempt, url }, code, reason, actions);
        actions.push(Action::Connect { url });
    }

    /// Schedules the next attempt after a backoff delay (or gives up).
    fn retry(
        &mut self,
        attempt: u32,
        now: Instant,
        code: Option<u16>,
        reason: &str,
        at_least_base: bool,
        actions: &mut Vec<Action>,
    ) {
        // Giving up (the attempt cap) wins over waiting for the breaker.
        let Some(delay) = self.backoff.next_delay(&mut self.rng) else {
            let reason = format!("gave up after {} attempts ({reason})", self.backoff.attempt());
            self.go(
                State::Closed {
                    code,
                    reason: reason.clone(),
                },
                code,
                &reason,
                actions,
            );
            return;
        };
        if let CircuitState::Open { until } = self.circuit.state() {
            let until = *until;
            self.go(State::CircuitOpen { until }, code, reason, actions);
            return;
        }
        let delay = if at_least_base {
            delay.max(self.min_delay)
        } else {
            delay
        };
        self.go(
            State::Reconnecting {
                attempt,
                at: now + delay,
            },
            code,
            reason,
            actions,
        );
    }

    fn go(&mut self, new: State, code: Option<u16>, reason: &str, actions: &mut Vec<Action>) {
        let old = std::mem::replace(&mut self.state, new.clone());
        actions.push(Action::Transition(Transition {
            old,
            new,
            code,
            reason: reason.to_owned(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::CircuitConfig;

    fn machine(urls: usize, max_attempts: Option<u32>, provider: bool) -> Machine {
        let mut c = ClientConfig::with_urls((0..urls).map(|i| format!("ws://h{i}/ws")).collect());
        c.max_reconnect_attempts = max_attempts;
        c.circuit = CircuitConfig::try_new(3, Duration::from_secs(60)).expect("ok");
        if provider {
            c.token_provider = Some(std::sync::Arc::new(|| Some("t".to_owned())));
        }
        Machine::with_rng(&c, StdRng::seed_from_u64(7))
    }

    fn connected(m: &mut Machine, t: Instant) {
        m.handle(Event::Start, t);
        m.handle(Event::Opened { session: "s".into() }, t);
        assert!(matches!(m.state(), State::Connected { .. }));
    }

    fn lost(code: Option<u16>) -> Event {
        Event::Lost {
            code,
            reason: "r".into(),
        }
    }

    #[test]
    fn close_codes_decide_reconnects() {
        let t = Instant::now();
        // (close code, has token provider) -> expected state name after the loss
        let table: &[(Option<u16>, bool, &str)] = &[
            (None, false, "reconnecting"),
            (Some(1000), false, "reconnecting"),
            (Some(1001), false, "connecting"),
            (Some(1008), false, "closed"),
            (Some(1009), false, "reconnecting"),
            (Some(1013), false, "reconnecting"),
            (Some(4001), false, "closed"),
            (Some(4001), true, "reconnecting"),
            (Some(4003), true, "closed"),
            (Some(4008), false, "reconnecting"),
            (Some(4029), false, "reconnecting"),
        ];
        for (code, provider, want) in table {
            let mut m = machine(2, None, *provider);
            connected(&mut m, t);
            let actions = m.handle(lost(*code), t);
            assert_eq!(m.state().name(), *want, "code {code:?}, provider {provider}");
            let transition = actions.iter().find_map(|a| match a {
                Action::Transition(tr) => Some(tr.clone()),
                _ => None,
            });
            let tr = transition.expect("a transition is reported");
            assert_eq!(tr.code, *code);
            assert_eq!(tr.old.name(), "connected");
        }
    }

    #[test]
    fn going_away_moves_to_the_next_url_at_once() {
        let t = Instant::now();
        let mut m = machine(2, None, false);
        connected(&mut m, t);
        let actions = m.handle(lost(Some(1001)), t);
        assert!(actions.contains(&Action::Connect { url: 1 }));
    }

    #[test]
    fn a_refusal_before_the_welcome_is_final_like_after_it() {
        let t = Instant::now();
        for (code, renew, final_) in [
            (4003, false, true),
            (1008, false, true),
            (4001, false, true),
            (4001, true, false),
            (1011, false, false),
        ] {
            let mut m = machine(1, None, renew);
            m.handle(Event::Start, t);
            m.handle(
                Event::ConnectFailed {
                    reason: format!("closed {code}"),
                    code: Some(code),
                },
                t,
            );
            let expected = if final_ { "closed" } else { "reconnecting" };
            assert_eq!(m.state().name(), expected, "code {code}, token provider {renew}");
        }
    }

    #[test]
    fn try_again_later_waits_at_least_the_base_delay() {
        let t = Instant::now();
        for code in [1013, 4029] {
            let mut m = machine(1, None, false);
            connected(&mut m, t);
            m.handle(lost(Some(code)), t);
            let at = m.poll_timeout().expect("a timer");
            assert!(at >= t + Duration::from_secs(1), "code {code}");
        }
    }

    #[test]
    fn backoff_then_reconnect_then_give_up_at_the_cap() {
        let t = Instant::now();
        let mut m = machine(1, Some(2), false);
        m.handle(Event::Start, t);
        m.handle(
            Event::ConnectFailed {
                reason: "refused".into(),
                code: None,
            },
            t,
        );
        let at = m.poll_timeout().expect("backoff timer");
        assert!(
            at <= t + Duration::from_secs(2),
            "attempt 1 waits at most the first ceiling"
        );
        assert!(
            m.handle(Event::Timeout, at - Duration::from_millis(1)).is_empty() || at == t,
            "not before the timer"
        );
        let actions = m.handle(Event::Timeout, at);
        assert!(actions.contains(&Action::Connect { url: 0 }));
        m.handle(
            Event::ConnectFailed {
                reason: "refused".into(),
                code: None,
            },
            at,
        );
        let at2 = m.poll_timeout().expect("second backoff");
        m.handle(Event::Timeout, at2);
        m.handle(
            Event::ConnectFailed {
                reason: "refused".into(),
                code: None,
            },
            at2,
        );
        assert_eq!(m.state().name(), "closed", "gave up after max_reconnect_attempts");
    }

    #[test]
    fn the_breaker_opens_after_consecutive_failures_and_probes_after_the_cooldown() {
        let t = Instant::now();
        let mut m = machine(1, None, false);
        m.handle(Event::Start, t);
        let mut now = t;
        for _ in 0..3 {
            m.handle(
                Event::ConnectFailed {
                    reason: "refused".into(),
                    code: None,
                },
                now,
            );
            if let Some(at) = m.poll_timeout() {
                if m.state().name() == "reconnecting" {
                    now = at;
                    m.handle(Event::Timeout, now);
                }
            }
        }
        assert_eq!(m.state().name(), "circuit_open");
        let until = m.poll_timeout().expect("cooldown");
        assert!(until >= now + Duration::from_secs(60));
        assert!(
            m.handle(Event::Timeout, until - Duration::from_secs(1)).is_empty(),
            "still open"
        );
        let actions = m.handle(Event::Timeout, until);
        assert!(actions.contains(&Action::Connect { url: 0 }), "half-open probe");
        m.handle(Event::Opened { session: "s".into() }, until);
        assert_eq!(m.state().name(), "connected");
    }

    #[test]
    fn stop_closes_from_anywhere_and_closed_is_final() {
        let t = Instant::now();
        let mut m = machine(1, None, false);
        connected(&mut m, t);
        let actions = m.handle(Event::Stop, t);
        assert!(actions.contains(&Action::Disconnect));
        assert_eq!(m.state().name(), "closed");
        assert!(m.handle(Event::Start, t).is_empty());
        assert!(m.handle(lost(None), t).is_empty());
    }
}
