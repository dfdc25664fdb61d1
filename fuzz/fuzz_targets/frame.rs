//! Frame decoding and validation: any text a client can send must give a typed
//! message or a `bad_request`, never a panic, and whatever is accepted obeys the
//! protocol's rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_protocol::client::{ClientMessage, Frame};
use tether_protocol::validate::{is_valid_agent_name, is_valid_channel, is_valid_command_type, is_valid_id};
use tether_protocol::{parse_frame, ServerMessage, MAX_BATCH};

fn check(m: &ClientMessage) {
    if let Some(id) = m.id() {
        assert!(is_valid_id(id), "accepted an invalid id");
    }
    match m {
        ClientMessage::Subscribe { channel, .. }
        | ClientMessage::Unsubscribe { channel, .. }
        | ClientMessage::Publish { channel, .. } => assert!(is_valid_channel(channel)),
        ClientMessage::SubscribeAgent { name, .. } | ClientMessage::UnsubscribeAgent { name, .. } => {
            assert!(is_valid_agent_name(name))
        }
        ClientMessage::Register { name, commands, concurrency, .. } => {
            assert!(is_valid_agent_name(name));
            assert!(!commands.is_empty() && commands.iter().all(|c| is_valid_command_type(c)));
            assert!(*concurrency >= 1);
        }
        ClientMessage::Command { command, .. } => assert!(is_valid_command_type(command)),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse_frame(text) {
        Ok(Frame::Single(m)) => check(&m),
        Ok(Frame::Batch(items)) => {
            assert!(!items.is_empty() && items.len() <= MAX_BATCH);
            for item in &items {
                match item {
                    Ok(m) => check(m),
                    Err(e) => assert!(e.id.as_deref().is_none_or(is_valid_id)),
                }
            }
        }
        Err(e) => {
            assert!(!e.message.is_empty());
            assert!(e.id.as_deref().is_none_or(is_valid_id), "echoed an invalid id");
        }
    }
    // Clients decode server frames with the same crate.
    if let Ok(m) = ServerMessage::parse(text) {
        let _ = m.to_text();
    }
});
