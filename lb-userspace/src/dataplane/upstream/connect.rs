//! Opening a connection to an origin: up to `connection_attempts` tries of
//! `connect_timeout` each, as CloudFront does.

use std::io;

use monoio::net::TcpStream;

use super::{RequestProgress, UpstreamError, UpstreamErrorKind};
use crate::config::Origin;

/// Connects to `origin` at `address` (its current, possibly re-resolved, address).
pub(in crate::dataplane) async fn connect(
    origin: &Origin,
    address: std::net::SocketAddr,
) -> Result<TcpStream, UpstreamError> {
    let mut last = UpstreamErrorKind::ConnectTimeout;
    for _ in 0..origin.connection_attempts.max(1) {
        match monoio::time::timeout(origin.connect_timeout, TcpStream::connect_addr(address)).await
        {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                last = UpstreamErrorKind::ConnectRefused;
            }
            Ok(Err(e)) => last = UpstreamErrorKind::ConnectFailed(e.kind()),
            Err(_elapsed) => last = UpstreamErrorKind::ConnectTimeout,
        }
    }
    Err(UpstreamError::new(last, RequestProgress::NotSent))
}
