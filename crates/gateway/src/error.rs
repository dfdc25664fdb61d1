//! Why the gateway could not start or run.

use crate::config::ConfigError;
use crate::store::StoreError;

/// A fatal gateway error. Everything else is answered on the wire.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A configuration value cannot work: fix it and start again.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be opened (bad `--data-dir`, locked by another
    /// process, corrupt file): fix the directory and start again.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Serving failed at the socket level.
    #[error("serving failed: {0}")]
    Io(#[from] std::io::Error),
}
