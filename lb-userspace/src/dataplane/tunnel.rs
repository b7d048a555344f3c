//! After `101 Switching Protocols`, the exchange becomes a byte tunnel: each direction is
//! copied until its sender closes, then the close is passed on (half-close), so both
//! sides see an orderly end. Either side may be TLS; each stream is split into read and
//! write halves (monoio-rustls streams split like TCP ones).
//!
//! A tunnel ends when neither direction moved a byte for `limits.idle_timeout`. A drain
//! (SIGTERM, or an upgrade's old process) lets it run on like any exchange in flight,
//! until it ends or the drain timeout closes what is left: a WebSocket session survives
//! an upgrade if it ends within `listener.drain_timeout`.

use std::{
    cell::Cell,
    time::{Duration, Instant},
};

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Splitable};

use super::{conn::BufferedStream, stream::Stream, worker::Worker};

pub(super) async fn tunnel(
    worker: &Worker,
    mut client: BufferedStream,
    mut origin: BufferedStream,
) {
    // Bytes that arrived with the heads belong to the new protocol.
    let pending = client.data().len();
    if pending > 0 && client.forward(&mut origin.stream, pending).await.is_err() {
        return;
    }
    let pending = origin.data().len();
    if pending > 0 && origin.forward(&mut client.stream, pending).await.is_err() {
        return;
    }
    let idle = worker.view().snap.config.limits.idle_timeout;
    let (client, _) = client.into_parts();
    let (origin, _) = origin.into_parts();
    let pumped = async {
        match (client, origin) {
            (Stream::Plain(c), Stream::Plain(o)) => pump(c, o, idle).await,
            (Stream::Plain(c), Stream::ClientTls(o)) if o.intact() => {
                pump(c, *o.stream, idle).await
            }
            (Stream::ServerTls(c), Stream::Plain(o)) if c.intact() => {
                pump(*c.stream, o, idle).await
            }
            (Stream::ServerTls(c), Stream::ClientTls(o)) if c.intact() && o.intact() => {
                pump(*c.stream, *o.stream, idle).await
            }
            // A TLS stream cut short cannot carry a tunnel.
            (Stream::ServerTls(_), _) | (_, Stream::ClientTls(_)) => {}
            // Client connections are never ClientTls and origin ones never ServerTls.
            _ => debug_assert!(false, "tunnel between streams of the wrong sides"),
        }
    };
    pumped.await;
}

/// Copies both directions concurrently until both have ended, or until neither moved a
/// byte for `idle`.
async fn pump<C, O>(client: C, origin: O, idle: Duration)
where
    C: Splitable,
    O: Splitable,
    C::OwnedRead: AsyncReadRent,
    C::OwnedWrite: AsyncWriteRent,
    O::OwnedRead: AsyncReadRent,
    O::OwnedWrite: AsyncWriteRent,
{
    let (mut client_read, mut client_write) = client.into_split();
    let (mut origin_read, mut origin_write) = origin.into_split();
    let last_activity = Cell::new(Instant::now());
    let both = async {
        let upstream = async {
            copy(&mut client_read, &mut origin_write, &last_activity).await;
            let _ = origin_write.shutdown().await;
        };
        let downstream = async {
            copy(&mut origin_read, &mut client_write, &last_activity).await;
            let _ = client_write.shutdown().await;
        };
        monoio::join!(upstream, downstream);
    };
    let watchdog = async {
        loop {
            let quiet = last_activity.get().elapsed();
            if quiet >= idle {
                return;
            }
            monoio::time::sleep(idle - quiet).await;
        }
    };
    monoio::select! {
        _ = both => {}
        _ = watchdog => {}
    }
}

/// Copies `r` to `w` until EOF or an error, noting when bytes move.
async fn copy<R: AsyncReadRent, W: AsyncWriteRent>(r: &mut R, w: &mut W, last: &Cell<Instant>) {
    let mut buf = Vec::with_capacity(16 * 1024);
    loop {
        buf.clear();
        // monoio reads into the whole capacity and sets the length.
        let (result, b) = r.read(buf).await;
        buf = b;
        if !matches!(result, Ok(n) if n > 0) {
            return;
        }
        last.set(Instant::now());
        let (result, b) = w.write_all(buf).await;
        buf = b;
        if result.is_err() {
            return;
        }
    }
}
