//! Streaming chunked transfer coding (RFC 9112 §7.1): a strict incremental decoder, and
//! the framing for re-encoding. lb decodes every chunked body and re-encodes it, so what it
//! forwards is always canonical: no extensions, no odd sizes, no trailers.

/// Longest chunk-size lb accepts, in hex digits (a u64).
const MAX_SIZE_DIGITS: u8 = 16;
/// Longest chunk extension lb accepts on one chunk line.
const MAX_EXTENSION_BYTES: usize = 1024;
/// Largest trailer section lb reads (and drops).
const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// Why a chunked body was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChunkedError {
    #[error("invalid chunk size")]
    BadSize,
    #[error("chunk size too large")]
    SizeOverflow,
    #[error("invalid chunk extension")]
    BadExtension,
    #[error("missing CRLF after chunk data")]
    BadDataEnd,
    #[error("invalid line ending in chunked body")]
    BadLineEnd,
    #[error("trailer section too large or malformed")]
    BadTrailer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading hex digits of the chunk size.
    Size,
    /// After the size: whitespace before `;`, or CR. `ws`: whitespace was seen.
    AfterSize {
        ws: bool,
    },
    /// Inside `;name[=value]` extensions.
    Extension {
        in_quotes: bool,
        escaped: bool,
    },
    /// Saw CR ending the size line.
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final blank line).
    TrailerLineStart,
    /// Inside a trailer field line.
    TrailerLine,
    /// Saw CR at the end of a trailer line.
    TrailerLf {
        blank: bool,
    },
    Done,
}

/// Incremental decoder: feed it whatever bytes arrived; it appends payload to `out`.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    digits: u8,
    remaining: u64,
    extension_bytes: usize,
    trailer_bytes: usize,
    /// The trailer section's lines (`name: value\n`), when kept: lb passes trailers on
    /// (gRPC's status is in them) where the other side can carry them.
    trailers: Option<Vec<u8>>,
}

/// How far one [`ChunkedDecoder::decode`] call got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkedProgress {
    /// Input bytes consumed. Less than the input only when `done` (the rest belongs to
    /// the next message).
    pub consumed: usize,
    /// The terminating chunk and trailers were read.
    pub done: bool,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        Self {
            state: State::Size,
            size: 0,
            digits: 0,
            remaining: 0,
            extension_bytes: 0,
            trailer_bytes: 0,
            trailers: None,
        }
    }

    /// A decoder that keeps the trailer section (see [`Self::take_trailers`]).
    pub fn keeping_trailers() -> Self {
        Self {
            trailers: Some(Vec::new()),
            ..Self::new()
        }
    }

    /// The trailer fields read (after `done`) that may be passed on: well-formed
    /// `name: value` lines whose field is allowed in a trailer. Empty if none, or if
    /// they were not kept.
    pub fn take_trailers(&mut self) -> Vec<(String, Vec<u8>)> {
        let Some(raw) = self.trailers.as_mut().map(std::mem::take) else {
            return Vec::new();
        };
        raw.split(|b| *b == b'\n')
            .filter_map(|line| {
                let colon = memchr::memchr(b':', line)?;
                let name = std::str::from_utf8(&line[..colon]).ok()?;
                if name.is_empty() || !name.bytes().all(is_token_char) || !trailer_allowed(name) {
                    return None;
                }
                let value = line[colon + 1..].trim_ascii();
                Some((name.to_ascii_lowercase(), value.to_vec()))
            })
            .collect()
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes `input`, appending chunk payload to `out`.
    pub fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<ChunkedProgress, ChunkedError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Size => match hex_value(b) {
                    Some(v) => {
                        if self.digits == MAX_SIZE_DIGITS {
                            return Err(ChunkedError::SizeOverflow);
                        }
                        self.size = (self.size << 4) | u64::from(v);
                        self.digits += 1;
                    }
                    None if self.digits == 0 => return Err(ChunkedError::BadSize),
                    None => {
                        self.state = State::AfterSize { ws: false };
                        continue; // re-examine b in AfterSize
                    }
                },
                State::AfterSize { ws } => match b {
                    b' ' | b'\t' => self.state = State::AfterSize { ws: true },
                    b';' => {
                        self.state = State::Extension {
                            in_quotes: false,
                            escaped: false,
                        };
                        self.extension_bytes = 0;
                    }
                    b'\r' if !ws => self.state = State::SizeLf,
                    // Whitespace is only allowed before an extension (BWS ";").
                    _ => return Err(ChunkedError::BadSize),
                },
                State::Extension { in_quotes, escaped } => {
                    self.extension_bytes += 1;
                    if self.extension_bytes > MAX_EXTENSION_BYTES {
                        return Err(ChunkedError::BadExtension);
                    }
                    self.state = match (in_quotes, escaped, b) {
                        (_, _, b'\n') => return Err(ChunkedError::BadLineEnd),
                        (false, _, b'\r') => State::SizeLf,
                        (true, _, b'\r') => return Err(ChunkedError::BadExtension),
                        (true, true, _) => State::Extension {
                            in_quotes: true,
                            escaped: false,
                        },
                        (true, false, b'\\') => State::Extension {
                            in_quotes: true,
                            escaped: true,
                        },
                        (true, false, b'"') => State::Extension {
                            in_quotes: false,
                            escaped: false,
                        },
                        (false, _, b'"') => State::Extension {
                            in_quotes: true,
                            escaped: false,
                        },
                        (false, _, c)
                            if is_token_char(c) || matches!(c, b';' | b'=' | b' ' | b'\t') =>
                        {
                            self.state
                        }
                        (true, false, c) if c == b'\t' || c >= 0x20 && c != 0x7f => self.state,
                        _ => return Err(ChunkedError::BadExtension),
                    };
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkedError::BadLineEnd);
                    }
                    self.digits = 0;
                    if self.size == 0 {
                        self.state = State::TrailerLineStart;
                    } else {
                        self.remaining = self.size;
                        self.size = 0;
                        self.state = State::Data;
                    }
                }
                State::Data => {
                    let available = (input.len() - i) as u64;
                    let take = available.min(self.remaining) as usize;
                    out.extend_from_slice(&input[i..i + take]);
                    self.remaining -= take as u64;
                    i += take;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                    continue;
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkedError::BadDataEnd);
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkedError::BadDataEnd);
                    }
                    self.state = State::Size;
                }
                State::TrailerLineStart | State::TrailerLine => {
                    self.trailer_bytes += 1;
                    if self.trailer_bytes > MAX_TRAILER_BYTES {
                        return Err(ChunkedError::BadTrailer);
                    }
                    let blank = self.state == State::TrailerLineStart;
                    if b != b'\r' {
                        if let Some(kept) = &mut self.trailers {
                            kept.push(b);
                        }
                    }
                    self.state = match b {
                        b'\r' => State::TrailerLf { blank },
                        b'\n' => return Err(ChunkedError::BadLineEnd),
                        // obs-fold in trailers is as ambiguous as in headers.
                        b' ' | b'\t' if blank => return Err(ChunkedError::BadTrailer),
                        c if c < 0x20 && c != b'\t' || c == 0x7f => {
                            return Err(ChunkedError::BadTrailer);
                        }
                        _ => State::TrailerLine,
                    };
                }
                State::TrailerLf { blank } => {
                    if b != b'\n' {
                        return Err(ChunkedError::BadLineEnd);
                    }
                    if !blank {
                        if let Some(kept) = &mut self.trailers {
                            kept.push(b'\n');
                        }
                    }
                    if blank {
                        self.state = State::Done;
                        return Ok(ChunkedProgress {
                            consumed: i + 1,
                            done: true,
                        });
                    }
                    self.state = State::TrailerLineStart;
                }
                State::Done => {
                    return Ok(ChunkedProgress {
                        consumed: i,
                        done: true,
                    });
                }
            }
            i += 1;
        }
        Ok(ChunkedProgress {
            consumed: i,
            done: self.state == State::Done,
        })
    }
}

/// Whether a field may travel in a trailer section (RFC 9110 §6.5.1): not one that
/// frames, routes, authenticates or describes the content, which a recipient could only
/// misapply after the body.
fn trailer_allowed(name: &str) -> bool {
    const DENIED: [&str; 18] = [
        "content-length",
        "transfer-encoding",
        "host",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "content-encoding",
        "content-type",
        "content-range",
        "authorization",
        "proxy-authorization",
        "proxy-authenticate",
        "www-authenticate",
        "set-cookie",
        "cookie",
        "cache-control",
    ];
    !DENIED.iter().any(|d| name.eq_ignore_ascii_case(d))
}

/// The value of one hexadecimal digit (chunk sizes, percent-escapes).
pub(super) fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Bytes to leave free before chunk payload so [`encode_chunk_header`] can write the size
/// line in place (16 hex digits + CRLF).
pub const CHUNK_HEADER_RESERVE: usize = 18;

/// Frames `buf[CHUNK_HEADER_RESERVE..]` as one chunk: writes the size line right before
/// the payload and CRLF after it. Returns where the framed chunk starts in `buf`.
pub fn encode_chunk_header(buf: &mut Vec<u8>) -> usize {
    let len = buf.len() - CHUNK_HEADER_RESERVE;
    debug_assert!(len > 0, "a zero-length chunk would end the body");
    let mut digits = [0u8; 16];
    let mut n = len;
    let mut count = 0;
    loop {
        digits[15 - count] = b"0123456789abcdef"[n & 0xf];
        count += 1;
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    let start = CHUNK_HEADER_RESERVE - count - 2;
    buf[start..start + count].copy_from_slice(&digits[16 - count..]);
    buf[CHUNK_HEADER_RESERVE - 2] = b'\r';
    buf[CHUNK_HEADER_RESERVE - 1] = b'\n';
    buf.extend_from_slice(b"\r\n");
    start
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_are_kept_when_asked_and_only_allowed_fields() {
        let input = b"3\r\nabc\r\n0\r\ngrpc-status: 14\r\nGrpc-Message:  down \r\ncontent-length: 9\r\nbad line\r\n\r\nNEXT";
        let mut d = ChunkedDecoder::keeping_trailers();
        let mut out = Vec::new();
        let p = d.decode(input, &mut out).unwrap();
        assert!(p.done);
        assert_eq!(&input[p.consumed..], b"NEXT");
        assert_eq!(out, b"abc");
        assert_eq!(
            d.take_trailers(),
            [
                ("grpc-status".to_owned(), b"14".to_vec()),
                ("grpc-message".to_owned(), b"down".to_vec())
            ]
        );
        // Split anywhere, the same.
        let mut d = ChunkedDecoder::keeping_trailers();
        for b in input.iter().take(p.consumed) {
            d.decode(std::slice::from_ref(b), &mut out).unwrap();
        }
        assert_eq!(d.take_trailers().len(), 2);
        // Not kept by default.
        let mut d = ChunkedDecoder::new();
        d.decode(input, &mut out).unwrap();
        assert!(d.take_trailers().is_empty());
    }

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, usize, bool), ChunkedError> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let p = d.decode(input, &mut out)?;
        Ok((out, p.consumed, p.done))
    }

    /// Feeds the input one byte at a time: the result must be the same as all at once.
    fn decode_bytewise(input: &[u8]) -> Result<(Vec<u8>, usize, bool), ChunkedError> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut consumed = 0;
        for (i, b) in input.iter().enumerate() {
            let p = d.decode(std::slice::from_ref(b), &mut out)?;
            consumed += p.consumed;
            if p.done {
                return Ok((out, consumed.max(i + p.consumed), true));
            }
        }
        Ok((out, consumed, d.is_done()))
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers_whole_and_bytewise() {
        let body = b"5\r\nhello\r\n6;name=val;q=\"a;b\\\"c\"\r\n world\r\nA \t;x\r\n0123456789\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        for f in [decode_all, decode_bytewise] {
            let (out, consumed, done) = f(body).unwrap();
            assert_eq!(out, b"hello world0123456789");
            assert!(done);
            assert_eq!(&body[consumed..], b"NEXT");
        }
    }

    #[test]
    fn rejects_ambiguous_framing() {
        let cases: &[(&[u8], ChunkedError)] = &[
            (b"x\r\n", ChunkedError::BadSize),
            (b"-1\r\n", ChunkedError::BadSize),
            (b"0x5\r\n", ChunkedError::BadSize),
            (b" 5\r\n", ChunkedError::BadSize),
            (b"5 \r\nhello\r\n", ChunkedError::BadSize),
            (b"5\nhello\r\n", ChunkedError::BadSize),
            (b"11111111111111111\r\n", ChunkedError::SizeOverflow),
            (b"5\r\nhelloXX", ChunkedError::BadDataEnd),
            (b"5\r\nhello\n", ChunkedError::BadDataEnd),
            (b"5\rX", ChunkedError::BadLineEnd),
            (b"5;a\x01b\r\n", ChunkedError::BadExtension),
            (b"5;a=\"x\ry\"\r\n", ChunkedError::BadExtension),
            (b"0\r\nx: 1\n\r\n", ChunkedError::BadLineEnd),
            (b"0\r\nx: 1\r\n folded\r\n\r\n", ChunkedError::BadTrailer),
        ];
        for (input, want) in cases {
            assert_eq!(
                decode_all(input).unwrap_err(),
                *want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(
                decode_bytewise(input).unwrap_err(),
                *want,
                "bytewise {:?}",
                String::from_utf8_lossy(input)
            );
        }
        let long_ext = format!("1;{}\r\n", "a".repeat(2000));
        assert_eq!(
            decode_all(long_ext.as_bytes()).unwrap_err(),
            ChunkedError::BadExtension
        );
    }

    #[test]
    fn encoder_frames_in_place() {
        for len in [1usize, 15, 16, 255, 4096, 65536] {
            let mut buf = vec![0u8; CHUNK_HEADER_RESERVE];
            buf.extend(std::iter::repeat_n(b'z', len));
            let start = encode_chunk_header(&mut buf);
            let framed = &buf[start..];
            let (out, _, done) = decode_all(&[framed, b"0\r\n\r\n"].concat()).unwrap();
            assert_eq!(out.len(), len);
            assert!(done);
            assert!(framed.starts_with(format!("{len:x}\r\n").as_bytes()));
        }
    }
}
