//! After `101 Switching Protocols`, the exchange becomes a byte tunnel: each direction is
//! copied until its sender closes, then the close is passed on (half-close), so both
//! sides see an orderly end. Either side may be TLS; each stream is split into read and
//! write halves (monoio-rustls streams split like TCP ones).

use monoio::io::{AsyncReadRent, AsyncWriteRent, Splitable, copy};

use super::{conn::BufferedStream, stream::Stream};

pub(super) async fn tunnel(mut client: BufferedStream, mut origin: BufferedStream) {
    // Bytes that arrived with the heads belong to the new protocol.
    let pending = client.data().len();
    if pending > 0 && client.forward(&mut origin.stream, pending).await.is_err() {
        return;
    }
    let pending = origin.data().len();
    if pending > 0 && origin.forward(&mut client.stream, pending).await.is_err() {
        return;
    }
    let (client, _) = client.into_parts();
    let (origin, _) = origin.into_parts();
    match (client, origin) {
        (Stream::Plain(c), Stream::Plain(o)) => pump(c, o).await,
        (Stream::Plain(c), Stream::ClientTls(o)) if o.intact() => pump(c, *o.stream).await,
        (Stream::ServerTls(c), Stream::Plain(o)) if c.intact() => pump(*c.stream, o).await,
        (Stream::ServerTls(c), Stream::ClientTls(o)) if c.intact() && o.intact() => {
            pump(*c.stream, *o.stream).await
        }
        // A TLS stream cut short cannot carry a tunnel.
        (Stream::ServerTls(_), _) | (_, Stream::ClientTls(_)) => {}
        // Client connections are never ClientTls and origin ones never ServerTls.
        _ => debug_assert!(false, "tunnel between streams of the wrong sides"),
    }
}

/// Copies both directions concurrently until both have ended.
async fn pump<C, O>(client: C, origin: O)
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
    let upstream = async {
        let _ = copy(&mut client_read, &mut origin_write).await;
        let _ = origin_write.shutdown().await;
    };
    let downstream = async {
        let _ = copy(&mut origin_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    };
    monoio::join!(upstream, downstream);
}
