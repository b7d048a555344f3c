//! HTTP/2 origins (`protocol_version = "h2"` or `"h2c"`): each worker keeps one
//! connection per origin and multiplexes its requests on it as streams, within the
//! origin's SETTINGS_MAX_CONCURRENT_STREAMS (h2 holds a stream beyond it until one
//! ends, bounded here by the connect timeout). A connection that went away (GOAWAY,
//! reset, idle close) is replaced at the next request. The connection's I/O runs in a
//! task of its own on the worker's runtime.

use std::{cell::RefCell, net::SocketAddr, os::fd::AsRawFd, os::fd::RawFd, sync::Arc};

use bytes::Bytes;
use futures_channel::oneshot;
use h2::client::SendRequest;
use rustls::ClientConfig;

use rustls::pki_types::ServerName;

use crate::resolver::OriginAddresses;

use super::{RequestProgress, TlsFailure, UpstreamError, UpstreamErrorKind, connect::connect_tcp};
use crate::{
    config::Origin,
    dataplane::{
        h2_upstream::H2Upstream,
        poll_tls::{PollTls, handshake as handshake_tls},
        stream::Stream,
    },
};

/// Each origin's HTTP/2 connection on this worker, by origin index.
#[derive(Default)]
pub(in crate::dataplane) struct H2Connections {
    by_origin: RefCell<Vec<Option<Slot>>>,
}

/// An origin's connection, or the attempts waiting while one is made: requests that
/// arrive together share the one connection instead of each opening their own.
enum Slot {
    Ready(Shared),
    Connecting(Vec<oneshot::Sender<Result<(), UpstreamError>>>),
}

#[derive(Clone)]
struct Shared {
    send: SendRequest<Bytes>,
    fd: RawFd,
    /// When a stream last started on it (for the origin's `keepalive_timeout`).
    used: std::rc::Rc<std::cell::Cell<std::time::Instant>>,
    /// The origin's address epoch it was made in: after the name moves, a new one.
    epoch: u64,
}

/// What an attempt finds in an origin's slot.
enum Found {
    Ready(Shared),
    Wait(oneshot::Receiver<Result<(), UpstreamError>>),
    Connect,
}

impl H2Connections {
    /// Forgets every connection (origins changed, or shutdown); each closes once its
    /// streams in flight end.
    pub fn clear(&self) {
        self.by_origin.borrow_mut().clear();
    }

    fn find(&self, index: usize, epoch: u64) -> Found {
        let mut all = self.by_origin.borrow_mut();
        if all.len() <= index {
            all.resize_with(index + 1, || None);
        }
        if matches!(&all[index], Some(Slot::Ready(shared)) if shared.epoch != epoch) {
            // The origin's name moved: streams go to a connection at its new address
            // (the old one closes once its streams end).
            all[index] = None;
        }
        match &mut all[index] {
            Some(Slot::Ready(shared)) => Found::Ready(shared.clone()),
            Some(Slot::Connecting(waiters)) => {
                let (tx, rx) = oneshot::channel();
                waiters.push(tx);
                Found::Wait(rx)
            }
            slot @ None => {
                *slot = Some(Slot::Connecting(Vec::new()));
                Found::Connect
            }
        }
    }

    /// Ends a connect: stores the connection (or clears the slot) and tells the waiters.
    fn settle(&self, index: usize, result: Result<Shared, UpstreamError>) {
        let mut all = self.by_origin.borrow_mut();
        let Some(slot) = all.get_mut(index) else {
            return; // cleared by a reload meanwhile
        };
        let waiters = match slot.take() {
            Some(Slot::Connecting(waiters)) => waiters,
            other => {
                *slot = other;
                Vec::new()
            }
        };
        let told = result.as_ref().map(|_| ()).map_err(|e| *e);
        if let Ok(shared) = result {
            *slot = Some(Slot::Ready(shared));
        }
        drop(all);
        for waiter in waiters {
            let _ = waiter.send(told);
        }
    }

    /// Lets go of connections no stream started on for their origin's
    /// `keepalive_timeout`: each closes once its streams in flight (a long gRPC stream)
    /// end, and the next request opens a new one.
    pub fn sweep(&self, keepalive: impl Fn(usize) -> std::time::Duration) {
        let now = std::time::Instant::now();
        for (index, slot) in self.by_origin.borrow_mut().iter_mut().enumerate() {
            if let Some(Slot::Ready(shared)) = slot {
                if now.duration_since(shared.used.get()) >= keepalive(index) {
                    *slot = None;
                }
            }
        }
    }

    fn forget(&self, index: usize) {
        if let Some(slot) = self.by_origin.borrow_mut().get_mut(index) {
            if matches!(slot, Some(Slot::Ready(_))) {
                *slot = None;
            }
        }
    }

    /// A new stream to origin `index` (at its current `addresses`), on its connection
    /// (opened if there is none, or it went away). With `tls`, the connection is HTTPS
    /// and must agree to `h2` by ALPN. `opened` is set when a new connection was made.
    pub async fn stream(
        &self,
        origin: &Origin,
        index: usize,
        addresses: &OriginAddresses,
        tls: Option<&Arc<ClientConfig>>,
        opened: &mut bool,
    ) -> Result<Stream, UpstreamError> {
        let port = origin.port(tls.is_some());
        let authority = match &origin.host {
            Some(host) => format!("{host}:{port}"),
            None => SocketAddr::new(origin.address.ip(), port).to_string(),
        };
        let timed_out =
            || UpstreamError::new(UpstreamErrorKind::ConnectTimeout, RequestProgress::NotSent);
        // Twice at most: a connection found gone is replaced once.
        for _ in 0..2 {
            let shared = match self.find(index, addresses.epoch(index)) {
                Found::Ready(shared) => shared,
                Found::Wait(rx) => {
                    match monoio::time::timeout(origin.connect_timeout, rx).await {
                        Ok(Ok(Ok(()))) => continue,
                        Ok(Ok(Err(e))) => return Err(e),
                        // The connecting attempt was cancelled: try again.
                        Ok(Err(_cancelled)) => continue,
                        Err(_elapsed) => return Err(timed_out()),
                    }
                }
                Found::Connect => {
                    let mut settled = Settle {
                        conns: self,
                        index,
                        done: false,
                    };
                    let connected = connect_h2(origin, addresses, index, tls).await;
                    settled.done = true;
                    match connected {
                        Ok(shared) => {
                            *opened = true;
                            self.settle(index, Ok(shared.clone()));
                            shared
                        }
                        Err(e) => {
                            self.settle(index, Err(e));
                            return Err(e);
                        }
                    }
                }
            };
            match monoio::time::timeout(origin.connect_timeout, shared.send.clone().ready()).await {
                Ok(Ok(send)) => {
                    shared.used.set(std::time::Instant::now());
                    let stream = H2Upstream::new(send, tls.is_some(), authority, shared.fd);
                    return Ok(Stream::H2Up(Box::new(stream)));
                }
                // The connection has gone away: a new one.
                Ok(Err(_)) => self.forget(index),
                // Every stream the origin allows stayed busy for longer than a connect.
                Err(_elapsed) => return Err(timed_out()),
            }
        }
        Err(UpstreamError::new(
            UpstreamErrorKind::ClosedBeforeResponse,
            RequestProgress::NotSent,
        ))
    }
}

/// Clears a slot left `Connecting` by an attempt dropped mid-connect (its client went
/// away, a timeout): its waiters then connect themselves.
struct Settle<'a> {
    conns: &'a H2Connections,
    index: usize,
    done: bool,
}

impl Drop for Settle<'_> {
    fn drop(&mut self) {
        if !self.done {
            if let Some(slot) = self.conns.by_origin.borrow_mut().get_mut(self.index) {
                // Dropping the waiters' senders wakes them (cancelled).
                *slot = None;
            }
        }
    }
}

/// Opens a connection to an HTTP/2 origin: TCP (attempts × timeout), TLS with ALPN `h2`
/// when `tls`, the HTTP/2 handshake.
async fn connect_h2(
    origin: &Origin,
    addresses: &OriginAddresses,
    index: usize,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<Shared, UpstreamError> {
    let mut tcp = connect_tcp(origin, addresses, index, tls.is_some()).await?;
    let fd = tcp.as_raw_fd();
    let send = match tls {
        Some(config) => {
            let conn = tls_handshake_h2(origin, &mut tcp, config).await?;
            let tls = PollTls::new(monoio_compat::StreamWrapper::new(tcp), conn);
            handshake(origin, tls).await?
        }
        None => handshake(origin, monoio_compat::StreamWrapper::new(tcp)).await?,
    };
    Ok(Shared {
        epoch: addresses.epoch(index),
        send,
        fd,
        used: std::rc::Rc::new(std::cell::Cell::new(std::time::Instant::now())),
    })
}

/// The TLS handshake with an HTTP/2 origin, within the connect timeout, which must end
/// with `h2` chosen by ALPN.
async fn tls_handshake_h2(
    origin: &Origin,
    tcp: &mut monoio::net::TcpStream,
    config: &Arc<ClientConfig>,
) -> Result<rustls::ClientConnection, UpstreamError> {
    let failed = |why| {
        UpstreamError::new(
            UpstreamErrorKind::TlsHandshake(why),
            RequestProgress::NotSent,
        )
    };
    // Validated when the config was loaded.
    let name = ServerName::try_from(origin.tls_server_name.clone())
        .map_err(|_| failed(TlsFailure::NameMismatch))?;
    let mut conn = rustls::ClientConnection::new(Arc::clone(config), name)
        .map_err(|e| failed(TlsFailure::classify(&monoio_rustls::TlsError::Rustls(e))))?;
    match monoio::time::timeout(origin.connect_timeout, handshake_tls(tcp, &mut conn)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return Err(failed(TlsFailure::classify(&monoio_rustls::TlsError::Io(
                e,
            ))));
        }
        Err(_elapsed) => return Err(failed(TlsFailure::Timeout)),
    }
    if conn.alpn_protocol() != Some(crate::tls::H2) {
        return Err(failed(TlsFailure::NoHttp2));
    }
    Ok(conn)
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
    monoio::spawn(crate::dataplane::task_guard::Guarded::new(
        "http2 origin connection",
        async move {
            if let Err(e) = connection.await {
                tracing::debug!(origin = %id, error = %e, "HTTP/2 origin connection ended");
            }
        },
    ));
    match monoio::time::timeout(origin.connect_timeout, send.ready()).await {
        Ok(Ok(send)) => Ok(send),
        Ok(Err(_)) => Err(failed(UpstreamErrorKind::ClosedBeforeResponse)),
        Err(_elapsed) => Err(failed(UpstreamErrorKind::ConnectTimeout)),
    }
}
