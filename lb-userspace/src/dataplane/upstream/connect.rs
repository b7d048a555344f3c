//! Opening a connection to an origin: up to `connection_attempts` tries of
//! `connect_timeout` each, as CloudFront does; then, for HTTPS, the TLS handshake, also
//! bounded by `connect_timeout`. A failed handshake is a connect failure (failover moves
//! on) but is not retried on the same origin: a certificate problem does not go away.

use std::{io, os::fd::AsRawFd, sync::Arc};

use monoio::net::TcpStream;
use rustls::{ClientConfig, pki_types::ServerName};

use super::{LocalResource, RequestProgress, TlsFailure, UpstreamError, UpstreamErrorKind};
use crate::{
    config::Origin,
    dataplane::stream::{Stream, Tls},
    resolver::OriginAddresses,
};

/// Connects to `origin` (number `index`) at its current addresses, on the port for the
/// scheme; with `tls`, completes a handshake verified by that config.
pub(in crate::dataplane) async fn connect(
    origin: &Origin,
    addresses: &OriginAddresses,
    index: usize,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<Stream, UpstreamError> {
    let tcp = connect_tcp(origin, addresses, index, tls.is_some()).await?;
    let Some(config) = tls else {
        return Ok(Stream::Plain(tcp));
    };
    let fd = tcp.as_raw_fd();
    let stream = tls_handshake(origin, tcp, config).await?;
    Ok(Stream::ClientTls(Tls::new(stream, fd)))
}

/// The TLS handshake with an origin over a connected socket, bounded by the connect
/// timeout; the name verified is the origin's TLS server name.
pub(in crate::dataplane) async fn tls_handshake(
    origin: &Origin,
    tcp: TcpStream,
    config: &Arc<ClientConfig>,
) -> Result<monoio_rustls::ClientTlsStream<TcpStream>, UpstreamError> {
    let failed = |why| {
        UpstreamError::new(
            UpstreamErrorKind::TlsHandshake(why),
            RequestProgress::NotSent,
        )
    };
    // Validated when the config was loaded.
    let name = ServerName::try_from(origin.tls_server_name.clone())
        .map_err(|_| failed(TlsFailure::NameMismatch))?;
    let connector = monoio_rustls::TlsConnector::from(Arc::clone(config));
    match monoio::time::timeout(origin.connect_timeout, connector.connect(name, tcp)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(failed(TlsFailure::classify(&e))),
        Err(_elapsed) => Err(failed(TlsFailure::Timeout)),
    }
}

/// Up to `connection_attempts` connects of `connect_timeout` each, going round the
/// origin's addresses from the one that last answered; an address that fails at once
/// (refused, unreachable) does not use up an attempt while others are untried. The
/// address that answers is where the next connection starts.
pub(in crate::dataplane) async fn connect_tcp(
    origin: &Origin,
    addresses: &OriginAddresses,
    index: usize,
    tls: bool,
) -> Result<TcpStream, UpstreamError> {
    let endpoints = addresses.endpoints(index, origin.port(tls));
    if endpoints.is_empty() {
        return Err(UpstreamError::new(
            UpstreamErrorKind::Unresolved,
            RequestProgress::NotSent,
        ));
    }
    let mut last = UpstreamErrorKind::ConnectTimeout;
    let attempts = usize::from(origin.connection_attempts.max(1));
    // Time spent waiting stays within attempts × timeout; fast failures only move on.
    let mut timeouts = 0;
    for n in 0..attempts.max(endpoints.len()) {
        if timeouts == attempts {
            break;
        }
        let Some(address) = endpoints.attempt(n) else {
            break;
        };
        match monoio::time::timeout(origin.connect_timeout, TcpStream::connect_addr(address)).await
        {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                addresses.connected(index, address.ip());
                return Ok(stream);
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                last = UpstreamErrorKind::ConnectRefused;
            }
            Ok(Err(e)) => {
                if let Some(local) = LocalResource::classify(&e) {
                    // lb's own shortage: more attempts would only add to it.
                    return Err(UpstreamError::new(
                        UpstreamErrorKind::LocalResource(local),
                        RequestProgress::NotSent,
                    ));
                }
                last = UpstreamErrorKind::ConnectFailed(e.kind());
            }
            Err(_elapsed) => {
                last = UpstreamErrorKind::ConnectTimeout;
                timeouts += 1;
            }
        }
    }
    Err(UpstreamError::new(last, RequestProgress::NotSent))
}
