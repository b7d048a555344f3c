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
    let timeout = view.snap.config.limits.header_timeout;
    let metrics = view.metrics();
    let mut tcp = tcp;
    let handshake = async {
        let mut conn = rustls::ServerConnection::new(config)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        super::poll_tls::handshake(&mut tcp, &mut conn).await?;
        Ok::<_, std::io::Error>(conn)
    };
    match monoio::time::timeout(timeout, handshake).await {
        Ok(Ok(conn)) => {
            metrics.tls_handshakes.fetch_add(1, Ordering::Relaxed);
            drop(view);
            counted.hand_over();
            if conn.alpn_protocol() == Some(crate::tls::H2) {
                let from = super::h2_viewer::Viewer {
                    peer,
                    tls: true,
                    fd,
                };
                let tls =
                    super::poll_tls::PollTls::new(monoio_compat::StreamWrapper::new(tcp), conn);
                let io = super::h2_viewer::Prefixed::new(Vec::new(), tls);
                super::h2_viewer::serve_h2(worker, io, from).await;
                return;
            }
            let stream = monoio_rustls::ServerTlsStream::new(tcp, conn);
            serve_client(worker, Stream::ServerTls(Tls::new(stream, fd)), peer).await;
        }
        Ok(Err(e)) => {
            metrics
                .tls_handshake_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, error = %e, "viewer TLS handshake failed");
        }
        Err(_elapsed) => {
            metrics
                .tls_handshake_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "viewer TLS handshake timed out");
        }
    }
}
