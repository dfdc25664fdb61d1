//! Server frames as the benchmark reads them ([`parse`], and [`scan_event`]
//! on the hot path of event delivery), and the `data` it publishes
//! ([`payload`]). Text in, values out.
//!
//! Not here: reading frames off a connection ([`super::net`]), or acting on
//! them (the scenario modules).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

/// The parts of a server frame the benchmark looks at.
#[derive(Debug, Default)]
pub(crate) struct Frame<'a> {
    pub kind: Cow<'a, str>,
    pub id: Option<Cow<'a, str>>,
    /// Top-level `seq` (events).
    pub seq: Option<u64>,
    /// `data.t`: the publisher's timestamp (events).
    pub t: Option<u64>,
    /// `data.seq` (acks).
    pub data_seq: Option<u64>,
    /// `data.duplicate` (acks) or a top-level `duplicate` (results).
    pub duplicate: bool,
    /// `data.heartbeat_interval_ms` (welcome).
    pub heartbeat_interval_ms: Option<u64>,
    pub error: Option<ErrorBody>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub retry_after_ms: Option<u64>,
}

/// The fast path: a typed, borrowing parse that skips what it does not name.
#[derive(Deserialize)]
struct Typed<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default)]
    id: Option<&'a str>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    data: Option<TypedData>,
    #[serde(default)]
    duplicate: Option<bool>,
    #[serde(default)]
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct TypedData {
    #[serde(default)]
    t: Option<u64>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    duplicate: Option<bool>,
    #[serde(default)]
    heartbeat_interval_ms: Option<u64>,
}

/// Parses a server frame; `None` when it is not a JSON object with a `type`.
pub(crate) fn parse(text: &str) -> Option<Frame<'_>> {
    if let Ok(f) = serde_json::from_str::<Typed<'_>>(text) {
        let data = f.data.unwrap_or(TypedData {
            t: None,
            seq: None,
            duplicate: None,
            heartbeat_interval_ms: None,
        });
        return Some(Frame {
            kind: Cow::Borrowed(f.kind),
            id: f.id.map(Cow::Borrowed),
            seq: f.seq,
            t: data.t,
            data_seq: data.seq,
            duplicate: data.duplicate.unwrap_or(false) || f.duplicate.unwrap_or(false),
            heartbeat_interval_ms: data.heartbeat_interval_ms,
            error: f.error,
        });
    }
    // The slow path: escaped strings, `data` that is not an object, and so on.
    let v: Value = serde_json::from_str(text).ok()?;
    let data = &v["data"];
    Some(Frame {
        kind: Cow::Owned(v.get("type")?.as_str()?.to_owned()),
        id: v["id"].as_str().map(|s| Cow::Owned(s.to_owned())),
        seq: v["seq"].as_u64(),
        t: data["t"].as_u64(),
        data_seq: data["seq"].as_u64(),
        duplicate: data["duplicate"].as_bool().unwrap_or(false) || v["duplicate"].as_bool().unwrap_or(false),
        heartbeat_interval_ms: data["heartbeat_interval_ms"].as_u64(),
        error: v.get("error").map(|e| ErrorBody {
            code: e["code"].as_str().unwrap_or_default().to_owned(),
            message: e["message"].as_str().unwrap_or_default().to_owned(),
            retry_after_ms: e["retry_after_ms"].as_u64(),
        }),
    })
}

/// An event's `seq` and its `data.t`, scanned without a full parse: the
/// gateway writes `type`, `channel` (which cannot contain a quote) and `seq`
/// first, and the publisher's `data` starts with `t`. `None` when the frame
/// does not look like that; the caller then falls back to [`parse`]. (A full
/// parse was a third of the benchmark's CPU at a million deliveries a second.)
pub(crate) fn scan_event(text: &str) -> Option<(u64, Option<u64>)> {
    let rest = text.strip_prefix(r#"{"type":"event","channel":""#)?;
    let rest = &rest[rest.find('"')?..];
    let rest = rest.strip_prefix(r#"","seq":"#)?;
    let (seq, mut rest) = leading_number(rest)?;
    // The first `{` that opens `"data":{"t":` (a `{` inside a string such as
    // `from` is never preceded by an unescaped `"data":`).
    let t = loop {
        let Some(open) = rest.find('{') else { break None };
        let (before, after) = (&rest[..open], &rest[open + 1..]);
        if before.ends_with(r#""data":"#) {
            break after.strip_prefix(r#""t":"#).and_then(leading_number).map(|(t, _)| t);
        }
        rest = after;
    };
    Some((seq, t))
}

/// The decimal number `text` starts with, and what follows it.
fn leading_number(text: &str) -> Option<(u64, &str)> {
    let len = text.bytes().take_while(u8::is_ascii_digit).count();
    Some((text[..len].parse().ok()?, &text[len..]))
}

/// A publish frame's `data`, exactly `size` bytes of JSON when `size` leaves
/// room for the timestamp: `{"t":<µs>,"pad":"xxx…"}`.
pub(crate) fn payload(t: u64, size: usize, pad: &str) -> String {
    padded(format!(r#"{{"t":{t},"pad":""#), size, pad)
}

/// `head` (a JSON object opened up to an open `"pad":"` string), padding, and
/// `"}`: `size` bytes in all when `head` leaves room.
pub(crate) fn padded(head: String, size: usize, pad: &str) -> String {
    let tail = r#""}"#;
    let fill = size.saturating_sub(head.len() + tail.len()).min(pad.len());
    let mut s = String::with_capacity(head.len() + fill + tail.len());
    s.push_str(&head);
    s.push_str(&pad[..fill]);
    s.push_str(tail);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_have_the_size_asked_for_and_carry_the_timestamp() {
        let pad = "x".repeat(1000);
        for size in [40, 100, 1000] {
            let p = payload(123_456, size, &pad);
            assert_eq!(p.len(), size, "{p}");
            let v: Value = serde_json::from_str(&p).expect("json");
            assert_eq!(v["t"], 123_456);
        }
        // Too small for the timestamp: the smallest payload that carries it.
        let p = payload(7, 3, &pad);
        assert_eq!(p, r#"{"t":7,"pad":""}"#);
    }

    #[test]
    fn frames_parse_on_the_fast_and_the_slow_path() {
        let f = parse(r#"{"type":"event","channel":"c","seq":58,"epoch":"e","ts":1,"data":{"t":9,"pad":"xx"}}"#)
            .expect("event");
        assert_eq!((f.kind.as_ref(), f.seq, f.t), ("event", Some(58), Some(9)));
        let f = parse(r#"{"type":"ack","id":"r-1-5","data":{"channel":"c","seq":3,"epoch":"e","duplicate":true}}"#)
            .expect("ack");
        assert_eq!(
            (f.id.as_deref(), f.data_seq, f.duplicate),
            (Some("r-1-5"), Some(3), true)
        );
        let f = parse(r#"{"type":"error","id":null,"error":{"code":"rate_limited","message":"m","retryable":true,"retry_after_ms":12}}"#)
            .expect("error");
        let e = f.error.expect("body");
        assert_eq!((e.code.as_str(), e.retry_after_ms), ("rate_limited", Some(12)));
        // Data that is not an object, and an escaped id: the slow path.
        let f = parse(r#"{"type":"event","seq":4,"data":17}"#).expect("event");
        assert_eq!((f.seq, f.t), (Some(4), None));
        let f = parse(r#"{"type":"ack","id":"a\"b","data":{"seq":1}}"#).expect("ack");
        assert_eq!(f.id.as_deref(), Some("a\"b"));
        assert!(parse("[1]").is_none());
        // The event scanner agrees with the parser, and declines what it cannot read.
        let event = r#"{"type":"event","channel":"c","seq":58,"epoch":"e","ts":1,"from":"a","data":{"t":9,"pad":"x"}}"#;
        assert_eq!(scan_event(event), Some((58, Some(9))));
        assert_eq!(
            scan_event(r#"{"type":"event","channel":"c","seq":4,"data":17}"#),
            Some((4, None))
        );
        assert_eq!(scan_event(r#"{"type":"event","channel":"c","data":{"t":1}}"#), None);
        let tricky = r#"{"type":"event","channel":"c","seq":5,"from":"{\"data\":{\"t\":1","data":{"t":2}}"#;
        assert_eq!(scan_event(tricky), Some((5, Some(2))));
        assert_eq!(parse(tricky).map(|f| (f.seq, f.t)), Some((Some(5), Some(2))));
        let no_t = r#"{"type":"event","channel":"c","seq":6,"from":"{","data":{"x":{"t":3}}}"#;
        assert_eq!(scan_event(no_t), Some((6, None)));
        assert_eq!(scan_event(r#"{"type":"ack","id":"s","data":{"seq":1}}"#), None);
        assert_eq!(scan_event(r#"{"type":"event","seq":"x"}"#), None);
        assert!(parse("not json").is_none());
    }

    #[test]
    fn results_marked_duplicate_are_seen_on_both_paths() {
        let f = parse(r#"{"type":"result","id":"r-0-1","data":{"t":5,"pad":""},"duplicate":true}"#).expect("result");
        assert_eq!(
            (f.kind.as_ref(), f.id.as_deref(), f.duplicate),
            ("result", Some("r-0-1"), true)
        );
        let f = parse(r#"{"type":"result","id":"r-0-1","data":"x","duplicate":true}"#).expect("result");
        assert!(f.duplicate);
        let f = parse(r#"{"type":"result","id":"r-0-1","data":{"duplicate":false}}"#).expect("result");
        assert!(!f.duplicate);
    }
}
