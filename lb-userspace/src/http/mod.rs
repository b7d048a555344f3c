//! HTTP/1.1 message framing, pure and I/O-free so it can be unit-tested and fuzzed.
//!
//! The parser is strict on purpose: anything a downstream or upstream parser might read
//! differently (request smuggling material) is rejected with a 4xx and a reason, never
//! forwarded. See RFC 9112 sections 2-7.

mod chunked;
mod date;
mod error;
mod headers;
mod path;
mod request;
mod response;

pub use chunked::{
    CHUNK_HEADER_RESERVE, ChunkedDecoder, ChunkedError, ChunkedProgress, encode_chunk_header,
};
pub use date::put_date;
pub use error::{HeadError, RejectReason};
pub use headers::{
    ConnectionHeader, ForwardedFor, HeaderRewrite, Headers, HopByHop, OnBehalfOf,
    ResponseConnection, UpstreamRequest, httparse_headers, is_hop_by_hop,
};
pub use path::normalize_path;
pub use request::{
    BodyFraming, HeadLimits, HeadScan, Method, ParsedRequest, Version, downgrade_minor_version,
    parse_request_head,
};
pub use response::{
    ParsedResponse, ResponseFraming, ResponseHeadError, Reuse, parse_response_head,
};

/// Upper bound on header fields per message; httparse needs the slot array up front.
pub const MAX_HEADERS: usize = 128;
