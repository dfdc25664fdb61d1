//! Wire error codes (sent in `error` frames) and WebSocket close codes. They are
//! kept apart on purpose: an error never closes a connection, a close code always
//! does.

use serde::{Deserialize, Serialize};

/// The `error.code` of an `error` frame (or of an inbox result).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not an object, a missing or wrong field, a bad channel or id,
    /// an unknown type. Fix the frame; retrying it unchanged fails again.
    BadRequest,
    /// Missing, invalid or expired credentials.
    Unauthorized,
    /// The principal may not do this.
    Forbidden,
    /// Over the per-connection rate; retry after `retry_after_ms`.
    RateLimited,
    /// An HTTP body over its limit.
    TooLarge,
    /// No agent took the command within `command_ttl`.
    NoHandler,
    /// A dispatched task had no result within `task_timeout`.
    Timeout,
    /// The gateway is at a capacity limit; retry with backoff.
    Overloaded,
    /// A fault of the gateway (e.g. its store failed); retry with backoff.
    Internal,
}

impl ErrorCode {
    /// Every code, in the order the protocol lists them.
    pub const ALL: [ErrorCode; 9] = [
        ErrorCode::BadRequest,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::RateLimited,
        ErrorCode::TooLarge,
        ErrorCode::NoHandler,
        ErrorCode::Timeout,
        ErrorCode::Overloaded,
        ErrorCode::Internal,
    ];

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::NoHandler => "no_handler",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Internal => "internal",
        }
    }

    /// Whether the same request may succeed if sent again later.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::RateLimited
                | ErrorCode::NoHandler
                | ErrorCode::Timeout
                | ErrorCode::Overloaded
                | ErrorCode::Internal
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The WebSocket close codes the gateway uses, and what a client should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// 1001: the server is shutting down. Reconnect, preferably elsewhere.
    GoingAway,
    /// 1009: a frame larger than `max_message_bytes`. Fix, then reconnect.
    MessageTooBig,
    /// 1013: overloaded, or a slow consumer. Reconnect with backoff.
    TryAgainLater,
    /// 4001: missing, invalid or expired token. Reconnect only with a new token.
    Unauthorized,
    /// 4003: the principal may not connect at all. Do not reconnect.
    Forbidden,
    /// 4008: the heartbeat deadline was missed. Reconnect.
    HeartbeatTimeout,
    /// 4029: too many frames rejected for rate. Reconnect with backoff.
    RateLimited,
}

/// What a client should do after a close, per the protocol's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconnectAdvice {
    /// Reconnect (with the usual backoff), preferably to another URL.
    Reconnect,
    /// Reconnect with backoff.
    Backoff,
    /// Reconnect only once something changed (a new token, a fixed frame).
    AfterFix,
    /// Do not reconnect.
    Never,
}

impl CloseCode {
    /// Every close code the gateway sends.
    pub const ALL: [CloseCode; 7] = [
        CloseCode::GoingAway,
        CloseCode::MessageTooBig,
        CloseCode::TryAgainLater,
        CloseCode::Unauthorized,
        CloseCode::Forbidden,
        CloseCode::HeartbeatTimeout,
        CloseCode::RateLimited,
    ];

    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            CloseCode::GoingAway => 1001,
            CloseCode::MessageTooBig => 1009,
            CloseCode::TryAgainLater => 1013,
            CloseCode::Unauthorized => 4001,
            CloseCode::Forbidden => 4003,
            CloseCode::HeartbeatTimeout => 4008,
            CloseCode::RateLimited => 4029,
        }
    }

    /// The close code for a number, if it is one of ours.
    pub fn from_code(code: u16) -> Option<CloseCode> {
        CloseCode::ALL.into_iter().find(|c| c.code() == code)
    }

    /// A short human reason sent in the close frame.
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::GoingAway => "server shutting down",
            CloseCode::MessageTooBig => "frame larger than max_message_bytes",
            CloseCode::TryAgainLater => "slow consumer: outbound queue overflowed",
            CloseCode::Unauthorized => "missing, invalid or expired token",
            CloseCode::Forbidden => "principal may not connect",
            CloseCode::HeartbeatTimeout => "heartbeat deadline missed",
            CloseCode::RateLimited => "too many frames rejected for rate",
        }
    }

    /// What a client should do after this close.
    pub fn advice(self) -> ReconnectAdvice {
        match self {
            CloseCode::GoingAway | CloseCode::HeartbeatTimeout => ReconnectAdvice::Reconnect,
            CloseCode::TryAgainLater | CloseCode::RateLimited => ReconnectAdvice::Backoff,
            CloseCode::MessageTooBig | CloseCode::Unauthorized => ReconnectAdvice::AfterFix,
            CloseCode::Forbidden => ReconnectAdvice::Never,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_is_exactly_the_listed_codes() {
        let retryable: Vec<&str> = ErrorCode::ALL
            .iter()
            .filter(|c| c.retryable())
            .map(|c| c.as_str())
            .collect();
        assert_eq!(
            retryable,
            ["rate_limited", "no_handler", "timeout", "overloaded", "internal"]
        );
    }

    #[test]
    fn serde_names_match_as_str() {
        for c in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
    }

    #[test]
    fn close_codes_round_trip() {
        for c in CloseCode::ALL {
            assert_eq!(CloseCode::from_code(c.code()), Some(c));
        }
        assert_eq!(CloseCode::from_code(1000), None);
    }
}
