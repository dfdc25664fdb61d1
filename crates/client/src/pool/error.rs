//! [`PoolError`]: what can go wrong for a request through the pool, and
//! whether retrying may help.
//!
//! Not here: configuration errors ([`PoolConfigError`](super::PoolConfigError))
//! and the errors of one endpoint's client ([`ClientError`], wrapped as is).

use crate::ClientError;

/// What can go wrong for a request through the pool; each variant says what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PoolError {
    /// The wait queue was full and this request was refused, or displaced by
    /// one of higher priority: retry later, with backoff.
    #[error("the pool's wait queue is full ({capacity} requests)")]
    QueueFull { capacity: usize },
    /// No endpoint became healthy within the request timeout: retry later.
    #[error("no healthy endpoint within the request timeout")]
    NoHealthyEndpoint,
    /// The pool is closed: stop using it.
    #[error("the pool is closed")]
    Closed,
    /// The frame is not a JSON object with a string `type`: fix the input.
    #[error("bad frame: {0}")]
    BadFrame(String),
    /// This pool already has a live subscription to the channel (a client
    /// holds one per channel): use it, or drop it first. Programmer error.
    #[error("already subscribed to `{0}` through this pool")]
    AlreadySubscribed(String),
    /// The chosen endpoint's client failed the request (see [`ClientError`]).
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl PoolError {
    /// Whether retrying the same request later may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            PoolError::QueueFull { .. } | PoolError::NoHealthyEndpoint => true,
            PoolError::Closed | PoolError::BadFrame(_) | PoolError::AlreadySubscribed(_) => false,
            PoolError::Client(e) => e.retryable(),
        }
    }
}
