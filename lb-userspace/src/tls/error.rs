//! Errors loading TLS material: each names the file at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("TLS setup: {0}")]
    Rustls(rustls::Error),
}
