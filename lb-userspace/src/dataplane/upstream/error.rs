//! Upstream failures, recording how far the request got: whether any of its bytes reached
//! the origin decides whether trying again (or elsewhere) is allowed.

use std::io;

use crate::http::Method;
pub(in crate::dataplane) use crate::local_resource::LocalResource;

/// How much of the request had been written to the origin when the failure happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::dataplane) enum RequestProgress {
    /// Nothing was written: any request may go elsewhere.
    NotSent,
    /// Some or all request bytes were written: only idempotent requests may be repeated,
    /// and only if their body can be replayed.
    Sent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::dataplane) enum UpstreamErrorKind {
    /// Every connection attempt was refused (RST to our SYN).
    ConnectRefused,
    /// Every connection attempt timed out.
    ConnectTimeout,
    /// Connecting failed otherwise (unreachable, ...).
    ConnectFailed(io::ErrorKind),
    /// TCP connected but the TLS handshake failed: a connect failure for failover.
    TlsHandshake(TlsFailure),
    /// The origin reset or closed the connection before any response byte.
    ClosedBeforeResponse,
    /// No response head within the origin's response timeout.
    ResponseTimeout,
    /// The response head was not valid HTTP/1.1.
    MalformedResponse(&'static str),
    /// Writing the request failed.
    WriteFailed(io::ErrorKind),
    /// The origin did not take the request within the body timeout.
    WriteTimeout,
    /// lb itself ran out of a resource while connecting (file descriptors, local ports,
    /// kernel buffers): not the origin's failure.
    LocalResource(LocalResource),
    /// The kernel retransmitted a SYN to the origin while this connect waited: nothing
    /// answers there (a black hole), so the connect was given up at once.
    SynRetransmitted,
    /// An HTTP/2 origin refused the stream (REFUSED_STREAM, or a GOAWAY before it was
    /// processed): like a connect failure, nothing of the request was processed.
    StreamRefused,
    /// The origin's name resolves to no address now: nothing was tried.
    Unresolved,
}

/// Who a failure belongs to (as Pingora's errors record it): only the origin's own
/// failures count against its health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::dataplane) enum ErrorSource {
    Origin,
    /// lb itself (overloaded, out of resources).
    Local,
}

/// Why a TLS handshake with an origin failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::dataplane) enum TlsFailure {
    /// The chain does not lead to a trusted CA (self-signed, private CA not configured).
    UntrustedCertificate,
    /// Expired, or not yet valid.
    CertificateExpired,
    /// Valid, but not for the origin's TLS server name.
    NameMismatch,
    /// Any other certificate problem (revoked, bad encoding, wrong usage, ...).
    BadCertificate,
    /// The origin sent an alert or broke the protocol (no common version or cipher, ...).
    Protocol,
    /// The connection closed or failed during the handshake.
    Closed,
    /// The handshake took longer than the connect timeout.
    Timeout,
    /// The origin is configured for HTTP/2 but did not choose `h2` by ALPN.
    NoHttp2,
}

impl TlsFailure {
    /// Classifies a monoio-rustls handshake error.
    pub fn classify(e: &monoio_rustls::TlsError) -> Self {
        let rustls_error = match e {
            monoio_rustls::TlsError::Rustls(r) => Some(r),
            // Errors found while reading come wrapped in io::Error.
            monoio_rustls::TlsError::Io(io) => io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        };
        use rustls::CertificateError as C;
        match rustls_error {
            None => Self::Closed,
            Some(rustls::Error::InvalidCertificate(c)) => match c {
                C::UnknownIssuer | C::BadSignature => Self::UntrustedCertificate,
                C::Expired | C::ExpiredContext { .. } | C::NotValidYet => Self::CertificateExpired,
                C::NotValidYetContext { .. } => Self::CertificateExpired,
                C::NotValidForName | C::NotValidForNameContext { .. } => Self::NameMismatch,
                _ => Self::BadCertificate,
            },
            Some(_) => Self::Protocol,
        }
    }

    fn text(self) -> &'static str {
        match self {
            Self::UntrustedCertificate => "certificate not issued by a trusted CA",
            Self::CertificateExpired => "certificate expired or not yet valid",
            Self::NameMismatch => "certificate not valid for the origin's name",
            Self::BadCertificate => "certificate rejected",
            Self::Protocol => "TLS protocol error or alert",
            Self::Closed => "connection closed during the TLS handshake",
            Self::Timeout => "TLS handshake timed out",
            Self::NoHttp2 => "the origin did not agree to HTTP/2 (ALPN h2)",
        }
    }
}

/// An upstream failure before any response byte reached the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::dataplane) struct UpstreamError {
    pub kind: UpstreamErrorKind,
    pub progress: RequestProgress,
}

impl UpstreamError {
    pub fn new(kind: UpstreamErrorKind, progress: RequestProgress) -> Self {
        Self { kind, progress }
    }

    /// This error on a later connection of a request whose bytes were already written
    /// elsewhere (`sent`): the request counts as sent.
    pub fn after(mut self, sent: bool) -> Self {
        if sent {
            self.progress = RequestProgress::Sent;
        }
        self
    }

    pub fn source(&self) -> ErrorSource {
        match self.kind {
            UpstreamErrorKind::LocalResource(_) => ErrorSource::Local,
            _ => ErrorSource::Origin,
        }
    }

    /// Whether the same request may be sent again (to this or another origin): always if
    /// nothing was sent; after bytes were sent only for idempotent methods.
    pub fn retry_safe(&self, method: Method) -> bool {
        self.progress == RequestProgress::NotSent || method.is_idempotent()
    }

    /// The status the client gets if this is the final outcome.
    pub fn status(&self) -> u16 {
        match self.kind {
            UpstreamErrorKind::ResponseTimeout => 504,
            UpstreamErrorKind::LocalResource(_) => 503,
            _ => 502,
        }
    }

    /// Short outcome label for access logs and metrics.
    pub fn label(&self) -> &'static str {
        match self.kind {
            UpstreamErrorKind::ConnectRefused => "refused",
            UpstreamErrorKind::ConnectTimeout => "connect-timeout",
            UpstreamErrorKind::ConnectFailed(_) => "connect-error",
            UpstreamErrorKind::TlsHandshake(_) => "tls-error",
            UpstreamErrorKind::ClosedBeforeResponse => "reset",
            UpstreamErrorKind::ResponseTimeout => "timeout",
            UpstreamErrorKind::MalformedResponse(_) => "bad-response",
            UpstreamErrorKind::WriteFailed(_) => "write-error",
            UpstreamErrorKind::WriteTimeout => "write-timeout",
            UpstreamErrorKind::LocalResource(_) => "lb-overloaded",
            UpstreamErrorKind::SynRetransmitted => "syn-retransmit",
            UpstreamErrorKind::StreamRefused => "refused-stream",
            UpstreamErrorKind::Unresolved => "dns",
        }
    }

    /// The reason a client reads in lb's error body.
    pub fn reason(&self, origin: &str) -> String {
        match self.kind {
            UpstreamErrorKind::ConnectRefused => {
                format!("could not connect to origin {origin}: connection refused")
            }
            UpstreamErrorKind::ConnectTimeout => {
                format!("could not connect to origin {origin}: timed out")
            }
            UpstreamErrorKind::ConnectFailed(k) => {
                format!("could not connect to origin {origin}: {k}")
            }
            UpstreamErrorKind::TlsHandshake(why) => {
                format!(
                    "could not connect to origin {origin}: TLS handshake failed: {}",
                    why.text()
                )
            }
            UpstreamErrorKind::ClosedBeforeResponse => {
                format!("origin {origin} closed the connection before responding")
            }
            UpstreamErrorKind::ResponseTimeout => {
                format!("origin {origin} did not respond in time")
            }
            UpstreamErrorKind::MalformedResponse(why) => {
                format!("origin {origin} sent an invalid response: {why}")
            }
            UpstreamErrorKind::WriteFailed(k) => {
                format!("sending the request to origin {origin} failed: {k}")
            }
            UpstreamErrorKind::WriteTimeout => {
                format!("origin {origin} did not take the request in time")
            }
            UpstreamErrorKind::SynRetransmitted => {
                format!("could not connect to origin {origin}: no answer to the SYN (black hole)")
            }
            UpstreamErrorKind::StreamRefused => {
                format!("origin {origin} refused the HTTP/2 stream (nothing was processed)")
            }
            UpstreamErrorKind::Unresolved => {
                format!("could not connect to origin {origin}: its name does not resolve")
            }
            UpstreamErrorKind::LocalResource(r) => {
                format!(
                    "lb is overloaded: {} (origin {origin} was not tried)",
                    r.text()
                )
            }
        }
    }
}
