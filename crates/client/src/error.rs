//! What can go wrong for a caller of the client.

use tether_protocol::server::ErrorBody;

/// A client error; each variant says what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// A configuration value cannot work: fix it.
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// The gateway answered with an `error` frame (see its `code`; retry when
    /// `retryable`).
    #[error("gateway error {}: {}", .0.code, .0.message)]
    Gateway(ErrorBody),
    /// No reply within `request_timeout` (the request may still take effect;
    /// resending with the same id is safe).
    #[error("no reply within the request timeout")]
    Timeout,
    /// The client was closed, or gave up reconnecting (see the last state
    /// transition for the close code and reason).
    #[error("the client is closed: {0}")]
    Closed(String),
    /// The offline queue refused the message (full, too large, or its disk failed).
    #[error("offline queue: {0}")]
    Queue(String),
}

impl ClientError {
    /// Whether retrying the same request later may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            ClientError::Gateway(body) => body.retryable.unwrap_or(false),
            ClientError::Timeout => true,
            ClientError::Config(_) | ClientError::Closed(_) | ClientError::Queue(_) => false,
        }
    }
}
