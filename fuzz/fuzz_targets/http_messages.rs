//! The body of `POST /api/v1/messages`: any bytes give a list of messages (each
//! valid or a `bad_request`) or one `bad_request` for the body, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_protocol::client::MAX_HTTP_MESSAGES;
use tether_protocol::parse_http_messages;
use tether_protocol::validate::is_valid_id;

fuzz_target!(|data: &[u8]| {
    match parse_http_messages(data) {
        Ok(items) => {
            assert!(items.len() <= MAX_HTTP_MESSAGES);
            for item in items {
                match item {
                    Ok(m) => assert!(m.id().is_none_or(is_valid_id)),
                    Err(e) => assert!(e.id.as_deref().is_none_or(is_valid_id)),
                }
            }
        }
        Err(e) => assert!(e.id.is_none() && !e.message.is_empty()),
    }
});
