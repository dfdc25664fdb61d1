//! Golden protocol vectors: the language-neutral JSON files in `tests/vectors/`
//! (described in `tests/vectors/README.md`) checked against this crate. Another
//! implementation (the TypeScript SDK) checks the same files.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use tether_protocol::validate::{CLIENT_TYPES, SERVER_TYPES};
use tether_protocol::{parse_frame, ClientMessage, CloseCode, ErrorCode, Frame, FrameError, ServerMessage};

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("vectors")
}

fn load<T: for<'de> Deserialize<'de>>(file: &str) -> T {
    let path = vectors_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file} is not a valid vector file: {e}"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidCase {
    name: String,
    frame: String,
    expect: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InvalidCase {
    name: String,
    frame: String,
    error: ExpectedError,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedError {
    code: String,
    id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerCase {
    name: String,
    frame: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Codes {
    error_codes: Vec<ErrorCodeCase>,
    close_codes: Vec<CloseCodeCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ErrorCodeCase {
    code: String,
    retryable: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseCodeCase {
    code: u16,
    name: String,
}

/// Panics with every failure, each naming its case, if there is any.
fn report(file: &str, failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} failing case(s) in {file}:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

fn assert_unique_names<'a>(file: &str, names: impl Iterator<Item = &'a str>) {
    let mut seen = BTreeSet::new();
    for name in names {
        assert!(!name.trim().is_empty(), "{file}: a case has an empty name");
        assert!(seen.insert(name), "{file}: duplicate case name `{name}`");
    }
}

/// Equality of JSON values as JSON means it: numbers compare by value, so `0`
/// and `0.0` are the same number (other languages cannot tell them apart).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x.is_f64() || y.is_f64() {
                x.as_f64() == y.as_f64()
            } else {
                x == y
            }
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// A parsed client message as the language-neutral `expect` object of
/// `client-valid.json` describes it (see the README for each field).
fn normalize(msg: &ClientMessage) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("type".into(), json!(msg.type_name()));
    m.insert("id".into(), json!(msg.id()));
    m.insert("command".into(), json!(matches!(msg, ClientMessage::Command { .. })));
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_owned(), v);
    };
    match msg {
        ClientMessage::Ping { .. }
        | ClientMessage::RequestAgentStatus { .. }
        | ClientMessage::RequestSystemMetrics { .. } => {}
        ClientMessage::Auth { token, .. } => put("token", json!(token)),
        ClientMessage::Subscribe { channel, since, .. } => {
            put("channel", json!(channel));
            put(
                "since",
                match since {
                    Some(s) => json!({"seq": s.seq, "epoch": s.epoch}),
                    None => Value::Null,
                },
            );
        }
        ClientMessage::Unsubscribe { channel, .. } => put("channel", json!(channel)),
        ClientMessage::Publish { channel, data, .. } => {
            put("channel", json!(channel));
            put("data", data.clone());
        }
        ClientMessage::SubscribeAgent { name, .. } | ClientMessage::UnsubscribeAgent { name, .. } => {
            put("name", json!(name))
        }
        ClientMessage::Register {
            name,
            commands,
            concurrency,
            ..
        } => {
            put("name", json!(name));
            put("commands", json!(commands));
            put("concurrency", json!(concurrency));
        }
        ClientMessage::Status { state, detail } => {
            put("status", serde_json::to_value(state).expect("state serializes"));
            put("detail", json!(detail));
        }
        ClientMessage::TaskProgress { data, .. } | ClientMessage::Command { data, .. } => put("data", data.clone()),
        ClientMessage::TaskResult { outcome, .. } => match outcome {
            Ok(data) => put("data", data.clone()),
            Err(e) => put("agent_error", json!({"code": e.code, "message": e.message})),
        },
    }
    m
}

/// Compares one parsed message with its `expect` object; `what` names the case
/// (and the batch item).
fn check_message(what: &str, expect: &Map<String, Value>, msg: &ClientMessage) -> Vec<String> {
    let mut failures = Vec::new();
    for key in ["type", "id"] {
        if !expect.contains_key(key) {
            failures.push(format!("{what}: `expect` lacks `{key}`"));
        }
    }
    let got = normalize(msg);
    let want_command = match expect.get("command") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            failures.push(format!("{what}: `expect.command` must be a boolean, not {other}"));
            false
        }
    };
    if got["command"] != json!(want_command) {
        failures.push(format!("{what}: expected command={want_command}, parsed as {msg:?}"));
    }
    for (key, want) in expect {
        if key == "command" {
            continue;
        }
        match got.get(key) {
            None => failures.push(format!(
                "{what}: `expect.{key}` is not a field of a `{}` message (parsed {msg:?})",
                msg.type_name()
            )),
            Some(have) if have != want => failures.push(format!(
                "{what}: `{key}` expected {want}, parsed {have} (message {msg:?})"
            )),
            Some(_) => {}
        }
    }
    failures
}

fn check_batch(
    name: &str,
    expect: &Map<String, Value>,
    items: &[Result<ClientMessage, FrameError>],
    seen_types: &mut BTreeSet<String>,
) -> Vec<String> {
    let mut failures = Vec::new();
    if expect.get("type") != Some(&json!("batch")) || expect.get("id") != Some(&Value::Null) {
        failures.push(format!(
            "{name}: parsed as a batch; `expect` needs \"type\":\"batch\" and \"id\":null"
        ));
    }
    if let Some(extra) = expect.keys().find(|k| !matches!(k.as_str(), "type" | "id" | "batch")) {
        failures.push(format!("{name}: `expect.{extra}` does not apply to a batch"));
    }
    let Some(Value::Array(want)) = expect.get("batch") else {
        failures.push(format!("{name}: parsed as a batch but `expect.batch` is missing"));
        return failures;
    };
    if want.len() != items.len() {
        failures.push(format!(
            "{name}: batch has {} items, expected {}",
            items.len(),
            want.len()
        ));
        return failures;
    }
    for (i, (want, have)) in want.iter().zip(items).enumerate() {
        let what = format!("{name} [batch item {i}]");
        let Some(want) = want.as_object() else {
            failures.push(format!("{what}: expected item must be an object"));
            continue;
        };
        match (want.get("error"), have) {
            (Some(code), Err(e)) => {
                if code != "bad_request" {
                    failures.push(format!("{what}: `error` must be \"bad_request\""));
                }
                let want_id = want.get("id").cloned().unwrap_or(Value::Null);
                if json!(e.id) != want_id {
                    failures.push(format!("{what}: error id expected {want_id}, got {:?} ({e})", e.id));
                }
            }
            (Some(_), Ok(m)) => failures.push(format!("{what}: expected an error, parsed {m:?}")),
            (None, Err(e)) => failures.push(format!("{what}: expected a message, got error {e:?}")),
            (None, Ok(m)) => {
                seen_types.insert(m.type_name().to_owned());
                failures.extend(check_message(&what, want, m));
            }
        }
    }
    failures
}

#[test]
fn client_valid_vectors_parse() {
    let cases: Vec<ValidCase> = load("client-valid.json");
    assert!(cases.len() >= 40, "client-valid.json has only {} cases", cases.len());
    assert_unique_names("client-valid.json", cases.iter().map(|c| c.name.as_str()));

    let mut failures = Vec::new();
    let mut seen_types = BTreeSet::new();
    let mut commands = 0;
    for case in &cases {
        let name = &case.name;
        match parse_frame(&case.frame) {
            Err(e) => failures.push(format!("{name}: expected a valid frame, got error {e:?}")),
            Ok(Frame::Single(msg)) => {
                if expect_is_batch(&case.expect) {
                    failures.push(format!("{name}: expected a batch, parsed {msg:?}"));
                    continue;
                }
                seen_types.insert(msg.type_name().to_owned());
                if matches!(msg, ClientMessage::Command { .. }) {
                    commands += 1;
                }
                failures.extend(check_message(name, &case.expect, &msg));
            }
            Ok(Frame::Batch(items)) => {
                seen_types.insert("batch".to_owned());
                failures.extend(check_batch(name, &case.expect, &items, &mut seen_types));
            }
        }
    }
    report("client-valid.json", failures);

    for ty in CLIENT_TYPES {
        assert!(seen_types.contains(ty), "client-valid.json has no valid `{ty}` message");
    }
    assert!(commands >= 3, "client-valid.json has only {commands} commands");
}

fn expect_is_batch(expect: &Map<String, Value>) -> bool {
    expect.contains_key("batch") || expect.get("type") == Some(&json!("batch"))
}

#[test]
fn client_invalid_vectors_fail() {
    let cases: Vec<InvalidCase> = load("client-invalid.json");
    assert!(cases.len() >= 80, "client-invalid.json has only {} cases", cases.len());
    assert_unique_names("client-invalid.json", cases.iter().map(|c| c.name.as_str()));

    let mut failures = Vec::new();
    let mut echoed = 0;
    for case in &cases {
        let name = &case.name;
        if case.error.code != "bad_request" {
            failures.push(format!(
                "{name}: a malformed frame is always bad_request, not {}",
                case.error.code
            ));
        }
        match parse_frame(&case.frame) {
            Ok(frame) => failures.push(format!("{name}: expected an error, parsed {frame:?}")),
            Err(e) if e.id != case.error.id => failures.push(format!(
                "{name}: error id expected {:?}, got {:?} ({e})",
                case.error.id, e.id
            )),
            Err(e) => {
                if e.message.trim().is_empty() {
                    failures.push(format!("{name}: the error has no message"));
                }
                if e.id.is_some() {
                    echoed += 1;
                }
            }
        }
    }
    report("client-invalid.json", failures);
    assert!(
        echoed >= 20 && echoed < cases.len(),
        "client-invalid.json should mix errors with and without an id ({echoed} of {} echo one)",
        cases.len()
    );
}

#[test]
fn server_vectors_round_trip() {
    let cases: Vec<ServerCase> = load("server.json");
    assert!(cases.len() >= 25, "server.json has only {} cases", cases.len());
    assert_unique_names("server.json", cases.iter().map(|c| c.name.as_str()));

    let mut failures = Vec::new();
    let mut seen_types = BTreeSet::new();
    for case in &cases {
        let name = &case.name;
        let Some(ty) = case.frame.get("type").and_then(Value::as_str) else {
            failures.push(format!("{name}: frame has no string `type`"));
            continue;
        };
        seen_types.insert(ty.to_owned());
        let text = case.frame.to_string();
        let msg = match ServerMessage::parse(&text) {
            Ok(msg) => msg,
            Err(e) => {
                failures.push(format!("{name}: does not parse as a server frame: {e}"));
                continue;
            }
        };
        let out = msg.to_text();
        match serde_json::from_str::<Value>(&out) {
            Ok(back) if json_eq(&back, &case.frame) => {}
            Ok(back) => failures.push(format!("{name}: re-serialized as {back}\n    expected {}", case.frame)),
            Err(e) => failures.push(format!("{name}: to_text is not JSON ({e}): {out}")),
        }
        // A server frame is never a valid client message.
        if let Ok(frame) = parse_frame(&text) {
            failures.push(format!("{name}: a server frame parsed as a client frame: {frame:?}"));
        }
    }
    report("server.json", failures);

    for ty in SERVER_TYPES {
        assert!(seen_types.contains(ty), "server.json has no `{ty}` frame");
    }
}

/// `GoingAway` → `going_away`.
fn snake_case(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn codes_match() {
    let codes: Codes = load("codes.json");

    let want: Vec<(String, bool)> = codes
        .error_codes
        .iter()
        .map(|c| (c.code.clone(), c.retryable))
        .collect();
    let have: Vec<(String, bool)> = ErrorCode::ALL
        .iter()
        .map(|c| (c.as_str().to_owned(), c.retryable()))
        .collect();
    assert_eq!(want.len(), 9, "codes.json must list the 9 error codes");
    assert_eq!(have, want, "codes.json error_codes differ from ErrorCode::ALL");
    for c in ErrorCode::ALL {
        assert_eq!(
            serde_json::to_value(c).unwrap(),
            json!(c.as_str()),
            "serde name of error code {}",
            c.as_str()
        );
    }

    let want: Vec<(u16, String)> = codes.close_codes.iter().map(|c| (c.code, c.name.clone())).collect();
    let have: Vec<(u16, String)> = CloseCode::ALL
        .iter()
        .map(|c| (c.code(), snake_case(&format!("{c:?}"))))
        .collect();
    assert_eq!(want.len(), 7, "codes.json must list the 7 close codes");
    assert_eq!(have, want, "codes.json close_codes differ from CloseCode::ALL");
    for c in &codes.close_codes {
        assert!(
            CloseCode::from_code(c.code).is_some(),
            "close code {} ({}) is unknown to CloseCode::from_code",
            c.code,
            c.name
        );
    }
}

#[test]
fn json_eq_compares_numbers_by_value() {
    assert!(json_eq(&json!({"a": [0]}), &json!({"a": [0.0]})));
    assert!(!json_eq(&json!({"a": 1}), &json!({"a": 1.5})));
    assert!(!json_eq(&json!({"a": 1}), &json!({"a": 1, "b": null})));
    assert!(!json_eq(&json!([1, 2]), &json!([2, 1])));
}
