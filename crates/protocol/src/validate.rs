//! Validation of the protocol's small strings: ids, principals, channel names,
//! agent names and command types.

/// Longest `id` (and `client_id`) in bytes.
pub const MAX_ID_LEN: usize = 128;
/// Longest channel name in bytes (an `inbox:<principal>` channel may be longer,
/// see [`is_valid_channel`]).
pub const MAX_CHANNEL_LEN: usize = 128;
/// Longest agent name: `agent:<name>` must still be a valid channel name.
pub const MAX_AGENT_NAME_LEN: usize = MAX_CHANNEL_LEN - AGENT_PREFIX.len();

/// Prefix of an agent's own channel.
pub const AGENT_PREFIX: &str = "agent:";
/// Prefix of a principal's results channel.
pub const INBOX_PREFIX: &str = "inbox:";
/// The channel carrying the agent status array.
pub const AGENTS_CHANNEL: &str = "agents";
/// The channel carrying periodic `system_metrics` snapshots.
pub const SYSTEM_CHANNEL: &str = "system";

/// Client → server type names (everything else that is a valid command type is a
/// command).
pub const CLIENT_TYPES: [&str; 14] = [
    "ping",
    "auth",
    "subscribe",
    "unsubscribe",
    "publish",
    "request_agent_status",
    "request_system_metrics",
    "subscribe_agent",
    "unsubscribe_agent",
    "batch",
    "register",
    "status",
    "task_progress",
    "task_result",
];

/// Server → client type names; never valid as commands.
pub const SERVER_TYPES: [&str; 9] = [
    "welcome",
    "pong",
    "ack",
    "error",
    "event",
    "agent_status",
    "system_metrics",
    "result",
    "task",
];

fn printable_ascii(s: &str) -> bool {
    s.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// An `id`: 1..=128 printable ASCII characters (space included).
pub fn is_valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len()) && printable_ascii(id)
}

/// A principal given as `client_id`: the same rule as an id.
pub fn is_valid_principal(p: &str) -> bool {
    is_valid_id(p)
}

fn channel_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'.' | b'-'))
}

/// A channel name: `^[A-Za-z0-9_:.\-]{1,128}$`, or `inbox:<principal>` for any
/// valid principal (a JWT `sub` such as `alice@example.com` has characters the
/// channel pattern lacks, and every principal must be able to read its inbox).
pub fn is_valid_channel(name: &str) -> bool {
    if (1..=MAX_CHANNEL_LEN).contains(&name.len()) && channel_chars(name) {
        return true;
    }
    match name.strip_prefix(INBOX_PREFIX) {
        Some(principal) => is_valid_principal(principal),
        None => false,
    }
}

/// An agent name: channel characters, short enough that `agent:<name>` is a
/// valid channel.
pub fn is_valid_agent_name(name: &str) -> bool {
    (1..=MAX_AGENT_NAME_LEN).contains(&name.len()) && channel_chars(name)
}

/// A command type: `^[a-z][a-z0-9_.:-]{0,63}$` and not a protocol type name.
pub fn is_valid_command_type(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_lowercase()
        && b[1..]
            .iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'.' | b':' | b'-'))
        && !CLIENT_TYPES.contains(&t)
        && !SERVER_TYPES.contains(&t)
}

/// The channel of an agent's status and progress.
pub fn agent_channel(name: &str) -> String {
    format!("{AGENT_PREFIX}{name}")
}

/// The channel of a principal's command results.
pub fn inbox_channel(principal: &str) -> String {
    format!("{INBOX_PREFIX}{principal}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(is_valid_id("a"));
        assert!(is_valid_id(&"x".repeat(128)));
        assert!(!is_valid_id(&"x".repeat(129)));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("tab\there"));
        assert!(!is_valid_id("zażółć"));
    }

    #[test]
    fn channels() {
        assert!(is_valid_channel("orders"));
        assert!(is_valid_channel("orders:eu-1.v2_x"));
        assert!(is_valid_channel(&"c".repeat(128)));
        assert!(!is_valid_channel(&"c".repeat(129)));
        assert!(!is_valid_channel(""));
        assert!(!is_valid_channel("has space"));
        assert!(!is_valid_channel("a/b"));
        assert!(is_valid_channel("inbox:alice@example.com"));
        assert!(!is_valid_channel("inbox:tab\there"));
        assert!(!is_valid_channel("agentx:a@b"));
    }

    #[test]
    fn command_types() {
        assert!(is_valid_command_type("process_receipt"));
        assert!(is_valid_command_type("a"));
        assert!(is_valid_command_type("orders.v2:resize-x"));
        assert!(!is_valid_command_type("Process"));
        assert!(!is_valid_command_type("1abc"));
        assert!(!is_valid_command_type(&format!("a{}", "b".repeat(64))));
        assert!(!is_valid_command_type("event"));
        assert!(!is_valid_command_type("publish"));
    }

    #[test]
    fn agent_names_fit_their_channel() {
        let longest = "n".repeat(MAX_AGENT_NAME_LEN);
        assert!(is_valid_agent_name(&longest));
        assert!(is_valid_channel(&agent_channel(&longest)));
        assert!(!is_valid_agent_name(&format!("{longest}n")));
    }
}

/// Matches `name` against a protocol pattern: `*` matches any run of characters
/// (including none), `?` exactly one, everything else itself.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    // Position of the last `*` seen and the name position it was tried at.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod pattern_tests {
    use super::pattern_matches;

    #[test]
    fn globs() {
        assert!(pattern_matches("orders:*", "orders:eu"));
        assert!(pattern_matches("orders:*", "orders:"));
        assert!(!pattern_matches("orders:*", "order"));
        assert!(pattern_matches("*", ""));
        assert!(pattern_matches("a?c", "abc"));
        assert!(!pattern_matches("a?c", "ac"));
        assert!(pattern_matches("*:x*y", "a:b:xzzy"));
        assert!(!pattern_matches("*:x*y", "a:b:xzz"));
        assert!(pattern_matches("exact", "exact"));
    }
}
