//! HTTP/2 origins (`protocol_version = "h2"` or `"h2c"`): each worker keeps one
//! connection per origin and multiplexes its requests on it as streams, within the
//! origin's SETTINGS_MAX_CONCURRENT_STREAMS (h2 holds a stream beyond it until one
//! ends, bounded here by the connect timeout). A connection that went away (GOAWAY,
//! reset, idle close) is replaced at the next request. The connection's I/O runs in a
//! task of its own on the worker's runtime.

use std::{cell::RefCell, net::SocketAddr, os::fd::AsRawFd, os::fd::RawFd, sync::Arc};

use bytes::Bytes;
use h2::client::SendRequest;
use rustls::ClientConfig;

use super::{
    RequestProgress, TlsFailure, UpstreamError, UpstreamErrorKind,
    connect::{connect_tcp, tls_handshake},
};
use crate::{
    config::Origin,
    dataplane::{h2_upstream::H2Upstream, stream::Stream},
};

/// Each origin's HTTP/2 connection on this worker, by origin index.
#[derive(Default)]
pub(in crate::dataplane) struct H2Connections {
    by_origin: RefCell<Vec<Option<Shared>>>,
}

#[derive(Clone)]
struct Shared {
    send: SendRequest<Bytes>,
    fd: RawFd,
}

impl H2Connections {
    /// Forgets every connection (origins changed, or shutdown); each closes once its
    /// streams in flight end.
    pub fn clear(&self) {
        self.by_origin.borrow_mut().clear();
    }

    fn get(&self, index: usize) -> Option<Shared> {
        self.by_origin.borrow().get(index).cloned().flatten()
    }

    fn set(&self, index: usize, shared: Option<Shared>) {
        let mut all = self.by_origin.borrow_mut();
        if all.len() <= index {
            all.resize_with(index + 1, || None);
        }
        all[index] = shared;
    }

    /// A new stream to origin `index` at `address`, on its connection (opened if there
    /// is none, or it went away). With `tls`, the connection is HTTPS and must agree to
    /// `h2` by ALPN. `opened` is set when a new connection was made.
    pub async fn stream(
        &self,
        origin: &Origin,
        index: usize,
        address: SocketAddr,
        tls: Option<&Arc<ClientConfig>>,
        opened: &mut bool,
    ) -> Result<Stream, UpstreamError> {
        let authority = match &origin.host {
            Some(host) => format!("{host}:{}", address.port()),
            None => address.to_string(),
        };
        if let Some(shared) = self.get(index) {
            match monoio::time::timeout(origin.connect_timeout, shared.send.clone().ready()).await {
                Ok(Ok(send)) => {
                    let stream = H2Upstream::new(send, tls.is_some(), authority, shared.fd);
                    return Ok(Stream::H2Up(Box::new(stream)));
                }
                // The connection has gone away: a new one below.
                Ok(Err(_)) => self.set(index, None),
                Err(_elapsed) => {
                    // Every stream the origin allows is busy for longer than a connect.
                    return Err(UpstreamError::new(
                        UpstreamErrorKind::ConnectTimeout,
                        RequestProgress::NotSent,
                    ));
                }
            }
        }
        let tcp = connect_tcp(origin, address).await?;
        let fd = tcp.as_raw_fd();
        let send = match tls {
            Some(config) => {
                let stream = tls_handshake(origin, tcp, config).await?;
                if stream.alpn_protocol().as_deref() != Some(crate::tls::H2) {
                    return Err(UpstreamError::new(
                        UpstreamErrorKind::TlsHandshake(TlsFailure::NoHttp2),
                        RequestProgress::NotSent,
                    ));
                }
                handshake(origin, monoio_compat::StreamWrapper::new(stream)).await?
            }
            None => handshake(origin, monoio_compat::StreamWrapper::new(tcp)).await?,
        };
        *opened = true;
        self.set(
            index,
            Some(Shared {
                send: send.clone(),
                fd,
            }),
        );
        let stream = H2Upstream::new(send, tls.is_some(), authority, fd);
        Ok(Stream::H2Up(Box::new(stream)))
    }
}

/// The HTTP/2 handshake on a connected stream, within the connect timeout; the
/// connection then runs in a task of its own until it closes.
async fn handshake<IO>(origin: &Origin, io: IO) -> Result<SendRequest<Bytes>, UpstreamError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    let failed = |kind| UpstreamError::new(kind, RequestProgress::NotSent);
    let mut builder = h2::client::Builder::new();
    builder
        .initial_window_size(256 * 1024)
        .initial_connection_window_size(1024 * 1024)
        .max_send_buffer_size(64 * 1024);
    let (send, connection) = match monoio::time::timeout(
        origin.connect_timeout,
        builder.handshake::<_, Bytes>(io),
    )
    .await
    {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => {
            tracing::debug!(origin = %origin.id, error = %e, "HTTP/2 handshake failed");
            return Err(failed(UpstreamErrorKind::ClosedBeforeResponse));
        }
        Err(_elapsed) => return Err(failed(UpstreamErrorKind::ConnectTimeout)),
    };
    let id = origin.id.clone();
    monoio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(origin = %id, error = %e, "HTTP/2 origin connection ended");
        }
    });
    match monoio::time::timeout(origin.connect_timeout, send.ready()).await {
        Ok(Ok(send)) => Ok(send),
        Ok(Err(_)) => Err(failed(UpstreamErrorKind::ClosedBeforeResponse)),
        Err(_elapsed) => Err(failed(UpstreamErrorKind::ConnectTimeout)),
    }
}
