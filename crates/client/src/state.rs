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
    /// A connect attempt failed (refused, timed out, HTTP error, no welcome).
    ConnectFailed { reason: String },
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
            backoff: Backoff::new(config.backoff),
            circuit: CircuitBreaker::new(config.circuit),
            min_delay: config.backoff.base,
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
            (State::Connecting { attempt, .. }, Event::ConnectFailed { reason }) => {
                let attempt = *attempt;
                let _ = self.circuit.on_failure(now);
                self.url = (self.url + 1) % self.urls;
                self.retry(attempt + 1, now, None, &reason, false, &mut actions);
            }
            (State::Connected { url, .. }, Event::Lost { code, reason }) => {
                let url = *url;
                match code {
                    Some(1008) | Some(4003) => self.go(
                        State::Closed {
                            code,
                            reason: reason.clone(),
                        },
                        code,
                        &reason,
                        &mut actions,
                    ),
                    Some(4001) if !self.can_renew_token => self.go(
                        State::Closed {
                            code,
                            reason: reason.clone(),
                        },
                        code,
                        &reason,
                        &mut actions,
                    ),
                    _ if !self.auto_reconnect => self.go(
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
        if let CircuitState::Open { until } = self.circuit.state() {
            let until = *until;
            self.go(State::CircuitOpen { until }, code, reason, actions);
            return;
        }
        match self.backoff.next_delay(&mut self.rng) {
            Some(delay) => {
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
            None => {
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
            }
        }
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
