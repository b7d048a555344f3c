//! Talking to origins: connecting (attempts × timeout), the per-worker connection pool,
//! and typed errors that say whether a retry is safe.

mod connect;
mod error;
mod pool;

pub(super) use connect::connect;
pub(super) use error::{
    ErrorSource, LocalResource, RequestProgress, TlsFailure, UpstreamError, UpstreamErrorKind,
};
pub(super) use pool::Pool;
