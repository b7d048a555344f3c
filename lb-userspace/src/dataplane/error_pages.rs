//! Custom error responses (CloudFront CustomErrorResponses): when the final answer is an
//! error, serve the configured page with the configured status. Pages are local files read
//! at start-up, or paths fetched through lb's own behaviors and kept per worker for
//! `PAGE_TTL` (CloudFront's default ErrorCachingMinTTL), so an outage does not turn into a
//! page fetch per request.

use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};

use super::{
    client::ClientConn,
    fate::Next,
    respond::{self, Answer},
    upstream::connect,
    worker::{View, Worker},
};
use crate::{
    config::{Config, CustomErrorResponse, ErrorPage},
    http::{ChunkedDecoder, MAX_HEADERS, ResponseFraming, parse_response_head},
};

const PAGE_TTL: Duration = Duration::from_secs(10);
const PAGE_MAX_BYTES: usize = 1 << 20;

pub(super) struct CachedPage {
    fetched: Instant,
    content_type: Vec<u8>,
    body: Vec<u8>,
}

pub(super) fn lookup(config: &Config, status: u16) -> Option<&CustomErrorResponse> {
    config.custom_errors.iter().find(|c| c.error_code == status)
}

/// Answers with `custom`'s page instead of an error with `status`.
pub(super) async fn serve(
    worker: &Worker,
    view: &View,
    conn: &mut ClientConn,
    custom: &CustomErrorResponse,
    status: u16,
) -> (Next, u16) {
    let code = custom.response_code.unwrap_or(status);
    match &custom.page {
        ErrorPage::File { path, body } => {
            let page = Answer::Page {
                status: code,
                content_type: content_type_for(&path.to_string_lossy()),
                headers: &[],
                body,
            };
            (respond::answer(worker, conn, page).await, code)
        }
        ErrorPage::Path(page_path) => {
            let fresh = worker
                .error_pages
                .borrow()
                .get(page_path)
                .is_some_and(|p| p.fetched.elapsed() < PAGE_TTL);
            if !fresh {
                match fetch(view, page_path).await {
                    Some((content_type, body)) => {
                        worker.error_pages.borrow_mut().insert(
                            page_path.clone(),
                            CachedPage {
                                fetched: Instant::now(),
                                content_type,
                                body,
                            },
                        );
                    }
                    None => {
                        let reason = format!(
                            "error {status}; the custom error page {page_path} could not be fetched either"
                        );
                        return respond::error(worker, conn, status, &reason).await;
                    }
                }
            }
            // Copy out of the cache so the await below holds no RefCell borrow.
            let (content_type, body) = {
                let pages = worker.error_pages.borrow();
                let page = pages.get(page_path).expect("just cached");
                (page.content_type.clone(), page.body.clone())
            };
            let page = Answer::Page {
                status: code,
                content_type: &content_type,
                headers: &[],
                body: &body,
            };
            (respond::answer(worker, conn, page).await, code)
        }
    }
}

fn content_type_for(path: &str) -> &'static [u8] {
    let ext = path.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => b"text/html; charset=utf-8",
        "json" => b"application/json",
        "txt" => b"text/plain; charset=utf-8",
        "css" => b"text/css",
        "svg" => b"image/svg+xml",
        "png" => b"image/png",
        _ => b"application/octet-stream",
    }
}

/// GETs `path` through the behavior that matches it, trying its members in order, and
/// returns the content type and body of the first 2xx answer.
async fn fetch(view: &View, path: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let config = &view.snap.config;
    let behavior = config.behavior_for(path);
    let (members, _) = config.members(behavior.target);
    for &index in members {
        let origin = &config.origins[index];
        // Pages are cached for every viewer: match-viewer origins are asked over HTTP.
        let tls = origin.uses_tls(false);
        let tls_config = tls.then_some(&view.snap.tls.origin);
        let Ok(mut stream) = connect(origin, &view.snap.addresses, index, tls_config).await else {
            continue;
        };
        let host = origin.own_request_host();
        let mut request = Vec::with_capacity(256);
        crate::http::HeaderRewrite::lb_request(
            &mut request,
            &origin.origin_path,
            path,
            &host,
            &origin.custom_headers,
            "lb-error-page",
        );
        if stream.write_all(request).await.0.is_err() {
            continue;
        }
        let deadline = Instant::now() + origin.response_timeout;
        let mut raw: Vec<u8> = Vec::with_capacity(16 * 1024);
        loop {
            if raw.len() > PAGE_MAX_BYTES {
                break;
            }
            let buf = Vec::with_capacity(16 * 1024);
            match monoio::time::timeout_at(deadline.into(), stream.read(buf)).await {
                Ok((Ok(0), _)) | Err(_) => break,
                Ok((Ok(_), buf)) => raw.extend_from_slice(&buf),
                Ok((Err(_), _)) => break,
            }
        }
        if let Some(page) = extract_page(&raw) {
            return Some(page);
        }
    }
    None
}

/// The content type and decoded body of a complete 2xx response in `raw`.
fn extract_page(raw: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let r = parse_response_head(raw, 64 * 1024, &mut slots, false).ok()??;
    if !(200..300).contains(&r.status) {
        return None;
    }
    let content_type = r
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-type"))
        .map_or_else(
            || b"text/html; charset=utf-8".to_vec(),
            |h| h.value.to_vec(),
        );
    let rest = &raw[r.head_len..];
    let body = match r.framing {
        ResponseFraming::ContentLength(n) => rest.get(..n as usize)?.to_vec(),
        ResponseFraming::Chunked => {
            let mut out = Vec::new();
            let p = ChunkedDecoder::new().decode(rest, &mut out).ok()?;
            if !p.done {
                return None;
            }
            out
        }
        ResponseFraming::CloseDelimited => rest.to_vec(),
        ResponseFraming::None => Vec::new(),
    };
    Some((content_type, body))
}
