//! Reading a JWT's `exp` (without verifying it: the gateway verifies) so that
//! the client can renew its token in-band before it expires.

use std::time::Duration;

/// The `exp` claim (seconds since the Unix epoch) of a JWT, if readable.
pub fn exp(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64url(payload)?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_u64()
}

/// When to renew a token expiring at `exp` (seconds), seen at `now` (seconds):
/// a tenth of its remaining life before it expires, at least 2 s before and at
/// most 60 s before.
pub fn renew_in(exp: u64, now: u64) -> Duration {
    let left = exp.saturating_sub(now);
    let margin = (left / 10).clamp(2, 60);
    Duration::from_secs(left.saturating_sub(margin))
}

fn base64url(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().take_while(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_exp_from_a_jwt_payload() {
        // {"sub":"alice","exp":1764093600} in base64url, no padding.
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MTc2NDA5MzYwMH0.sig";
        assert_eq!(exp(token), Some(1_764_093_600));
        assert_eq!(exp("not-a-jwt"), None);
        assert_eq!(exp("a.!!!.c"), None);
    }

    #[test]
    fn renews_before_expiry() {
        assert_eq!(
            renew_in(1000, 0),
            Duration::from_secs(940),
            "60 s before for long tokens"
        );
        assert_eq!(renew_in(100, 0), Duration::from_secs(90), "a tenth of the life");
        assert_eq!(renew_in(10, 0), Duration::from_secs(8), "at least 2 s before");
        assert_eq!(renew_in(5, 10), Duration::ZERO, "already expired: now");
    }
}
