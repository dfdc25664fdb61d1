//! `tether-client`: what a Rust service, agent or tool uses to talk to a Tether
//! gateway.
//!
//! Layers, top-down: [`Client`] (the typed API) → the driver task (I/O and
//! timers) → [`state::Machine`] (sans-IO connection state), with [`backoff`],
//! [`circuit`] and [`offline_queue`] as plain parts it consults.

pub mod backoff;
pub mod circuit;
pub mod offline_queue;
