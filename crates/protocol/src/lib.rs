//! Tether wire protocol, version 1: the envelope, the client and server message
//! types, their validation, and the wire error and close codes.
//!
//! This crate is the contract shared by the gateway and every Rust client. It does
//! no I/O and knows nothing of sockets, clocks or async runtimes: callers pass
//! text in and get typed messages out, or build frames as JSON text.
//! `shared/protocol.md` is the specification; `docs/protocol.md` records our
//! readings of what it leaves open.

pub mod client;
pub mod codes;
pub mod server;
pub mod validate;

pub use client::{
    parse_frame, parse_http_messages, parse_message, AgentState, ClientMessage, Frame, FrameError, Since,
};
pub use codes::{CloseCode, ErrorCode};
pub use server::ServerMessage;

/// The protocol version announced in `welcome.protocol`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Most inner messages a `batch` may carry.
pub const MAX_BATCH: usize = 100;
