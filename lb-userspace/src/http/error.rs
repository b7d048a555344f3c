//! Why a message head was refused, mapped to the status a client sees.

/// A refused request head: the status to answer with and a reason for the body and log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {reason}")]
pub struct HeadError {
    pub status: u16,
    pub reason: RejectReason,
}

/// Every reason lb refuses a request head. Each maps to exactly one status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    Malformed,
    BareCr,
    ObsFold,
    InvalidHeaderName,
    InvalidHeaderValue,
    InvalidMethod,
    InvalidTarget,
    UnsupportedVersion,
    MissingHost,
    DuplicateHost,
    InvalidHost,
    ContentLengthWithTransferEncoding,
    DifferingContentLengths,
    InvalidContentLength,
    TransferEncodingNotChunkedLast,
    TransferEncodingInHttp10,
    UnsupportedTransferCoding,
    TooManyHeaders,
    RequestLineTooLong,
    HeadersTooLarge,
    BodyTooLarge,
    ConnectNotSupported,
    InvalidUpgrade,
    UnsupportedExpectation,
}

impl RejectReason {
    /// The status lb answers with.
    pub const fn status(self) -> u16 {
        match self {
            Self::RequestLineTooLong => 414,
            Self::HeadersTooLarge | Self::TooManyHeaders => 431,
            Self::BodyTooLarge => 413,
            Self::UnsupportedTransferCoding => 501,
            Self::ConnectNotSupported => 405,
            Self::UnsupportedVersion => 505,
            Self::UnsupportedExpectation => 417,
            _ => 400,
        }
    }

    /// The reason text, sent in the response body and written to the access log.
    pub const fn text(self) -> &'static str {
        match self {
            Self::Malformed => "malformed request head",
            Self::BareCr => "bare CR in request head",
            Self::ObsFold => "obsolete line folding (obs-fold) in header",
            Self::InvalidHeaderName => "invalid byte in header name",
            Self::InvalidHeaderValue => "invalid byte in header value",
            Self::InvalidMethod => "invalid method or request-line delimiter",
            Self::InvalidTarget => "invalid request target",
            Self::UnsupportedVersion => "HTTP version not supported",
            Self::MissingHost => "missing Host header (required in HTTP/1.1)",
            Self::DuplicateHost => "more than one Host header",
            Self::InvalidHost => "invalid Host header",
            Self::ContentLengthWithTransferEncoding => {
                "both Content-Length and Transfer-Encoding present"
            }
            Self::DifferingContentLengths => "differing Content-Length values",
            Self::InvalidContentLength => "invalid Content-Length",
            Self::TransferEncodingNotChunkedLast => "Transfer-Encoding must end with chunked",
            Self::TransferEncodingInHttp10 => "Transfer-Encoding in an HTTP/1.0 request",
            Self::UnsupportedTransferCoding => "transfer coding other than chunked",
            Self::TooManyHeaders => "too many header fields",
            Self::RequestLineTooLong => "request line too long",
            Self::HeadersTooLarge => "request header fields too large",
            Self::BodyTooLarge => "request body too large",
            Self::ConnectNotSupported => "CONNECT is not supported",
            Self::InvalidUpgrade => "invalid Upgrade request",
            Self::UnsupportedExpectation => "only Expect: 100-continue is supported",
        }
    }

    pub const fn error(self) -> HeadError {
        HeadError {
            status: self.status(),
            reason: self,
        }
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text())
    }
}
