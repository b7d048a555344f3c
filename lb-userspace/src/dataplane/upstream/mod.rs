//! Talking to origins: connecting (attempts × timeout), the per-worker connection pool
//! (HTTP/1.1) and shared connections (HTTP/2),
//! and typed errors that say whether a retry is safe.

mod connect;
mod error;
mod h2;
mod pool;

pub(super) use connect::connect;
pub(super) use error::{
    ErrorSource, LocalResource, RequestProgress, TlsFailure, UpstreamError, UpstreamErrorKind,
};
pub(super) use h2::H2Connections;
pub(super) use pool::Pool;
