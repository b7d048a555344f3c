//! The HTTPS listener's side of a connection: the TLS handshake, bounded by the header
//! timeout (a client that stalls in the handshake is a slowloris like any other), with the
//! certificates of the snapshot in force, so reloaded certificates apply to the next
//! handshake. Then the connection is served like a plain one, or as HTTP/2 when the
//! client chose `h2` by ALPN.

use std::{net::SocketAddr, os::fd::AsRawFd, rc::Rc, sync::atomic::Ordering};

use monoio::net::TcpStream;

use super::{
    client::serve_client,
    stream::{Stream, Tls},
    worker::Worker,
};

/// Runs the TLS handshake of an accepted (and counted) connection, then serves it.
pub(super) async fn serve_tls_client(worker: Rc<Worker>, tcp: TcpStream, peer: SocketAddr) {
    // Released if the handshake fails; handed to the connection loop if it succeeds.
    let counted = worker.adopt_connection();
    let view = worker.view();
    let Some(config) = view.snap.tls.server.clone() else {
        // Only possible if a reload removed [tls]; the listener stays until restart.
        return;
    };
    let _ = tcp.set_nodelay(true);
    let fd = tcp.as_raw_fd();
    let acceptor = monoio_rustls::TlsAcceptor::from(config);
    let timeout = view.snap.config.limits.header_timeout;
    let metrics = view.metrics();
    match monoio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => {
            metrics.tls_handshakes.fetch_add(1, Ordering::Relaxed);
            drop(view);
            counted.hand_over();
            if stream.alpn_protocol().as_deref() == Some(crate::tls::H2) {
                let from = super::h2_viewer::Origin {
                    peer,
                    tls: true,
                    fd,
                };
                let io = super::h2_viewer::Prefixed::new(
                    Vec::new(),
                    monoio_compat::StreamWrapper::new(stream),
                );
                super::h2_viewer::serve_h2(worker, io, from).await;
                return;
            }
            serve_client(worker, Stream::ServerTls(Tls::new(stream, fd)), peer).await;
        }
        Ok(Err(e)) => {
            metrics
                .tls_handshake_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, error = %describe(&e), "viewer TLS handshake failed");
        }
        Err(_elapsed) => {
            metrics
                .tls_handshake_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "viewer TLS handshake timed out");
        }
    }
}

fn describe(e: &monoio_rustls::TlsError) -> String {
    match e {
        monoio_rustls::TlsError::Io(io) => io.to_string(),
        monoio_rustls::TlsError::Rustls(r) => r.to_string(),
    }
}
