//! What a finished HTTP answer means for the batch it answered: accepted (2xx), worth
//! retrying (408, 429, 5xx but 501, with the server's `Retry-After`), or refused for good
//! (every other status). Pure: no I/O, the clock is a parameter.
//!
//! `Retry-After` is RFC 9110 §10.2.3
//! (<https://www.rfc-editor.org/rfc/rfc9110#name-retry-after>): delta-seconds or an
//! HTTP-date (IMF-fixdate, or the obsolete RFC 850 and asctime forms recipients must
//! accept). The engine caps the wait at `retry.max_backoff`.

use crate::{ErrorKind, SinkError};
use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use std::time::{Duration, SystemTime};

/// Most characters of an answer's body quoted in an error.
pub const EXCERPT_CHARS: usize = 300;

/// A finished answer: status, headers and the whole body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// `Ok` for a 2xx answer; otherwise the error the status means, carrying the status,
/// `Retry-After` (retryable errors only) and an excerpt of the body. `request` says
/// what was sent (`POST https://loki:3100`), for the message.
pub fn classify(
    sink: &str,
    request: &str,
    response: HttpResponse,
    now: SystemTime,
) -> Result<HttpResponse, SinkError> {
    let Some((kind, meaning)) = status_kind(response.status) else {
        return Ok(response);
    };
    let excerpt = excerpt(&response.body);
    let message = if excerpt.is_empty() {
        format!("{request}: {meaning}")
    } else {
        format!("{request}: {meaning}: {excerpt}")
    };
    let error = match kind {
        ErrorKind::Retryable => SinkError::retryable(sink, message)
            .with_retry_after(retry_after(&response.headers, now)),
        ErrorKind::Permanent => SinkError::permanent(sink, message),
    };
    Err(error.with_status(response.status.as_u16()))
}

/// The classification table: `None` for a 2xx; otherwise whether the same request may
/// succeed later, and what the status means in a few words.
///
/// | status | kind | why |
/// |---|---|---|
/// | 2xx | accepted | |
/// | 408, 429 | retryable | the server asks to come back |
/// | 5xx except 501 | retryable | the server (or a proxy before it) failed |
/// | 501 | permanent | the server cannot do this at all |
/// | 3xx | permanent | redirects are not followed: a 301/302 would resend a POST as a bodiless GET whose 2xx would look like an acknowledgement |
/// | 401, 403, 404, 410, 413, other 4xx | permanent | the same request gets the same answer |
pub fn status_kind(status: StatusCode) -> Option<(ErrorKind, &'static str)> {
    use ErrorKind::{Permanent, Retryable};
    Some(match status.as_u16() {
        200..=299 => return None,
        408 => (Retryable, "the server timed out waiting for the request"),
        429 => (Retryable, "throttled by the server"),
        501 => (Permanent, "not implemented by the server"),
        500..=599 => (Retryable, "server error"),
        300..=399 => (
            Permanent,
            "redirected, and redirects are not followed (set the sink's URL to the final one)",
        ),
        401 => (Permanent, "credentials refused (check auth)"),
        403 => (Permanent, "forbidden (the credentials lack a permission)"),
        404 => (Permanent, "not found (check the sink's URL)"),
        410 => (Permanent, "gone (the endpoint was removed)"),
        413 => (
            Permanent,
            "request too large (lower batch.max_bytes or batch.max_events)",
        ),
        _ => (Permanent, "refused"),
    })
}

/// How long the server asked us to wait, from `Retry-After`: delta-seconds, or an
/// HTTP-date (a date already past is zero). Anything else is ignored.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The start of a body as one line: at most [`EXCERPT_CHARS`] characters (`…` marking a
/// cut), surrounding whitespace trimmed, control characters escaped (`\n`, `\u{1b}`),
/// invalid UTF-8 replaced.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut pieces: Vec<String> = Vec::new();
    let mut count = 0;
    for c in text.trim().chars() {
        let piece: String = if c.is_control() {
            c.escape_default().collect()
        } else {
            c.to_string()
        };
        count += piece.chars().count();
        pieces.push(piece);
        if count > EXCERPT_CHARS {
            break;
        }
    }
    if count <= EXCERPT_CHARS {
        return pieces.concat();
    }
    // Whole pieces only, so that an escape is never cut in half; room for the `…`.
    while count > EXCERPT_CHARS - 1 {
        count -= pieces.pop().map_or(0, |p| p.chars().count());
    }
    pieces.concat() + "…"
}

/// An answer for the unit tests of the sinks' answer readers: `status`, an optional
/// `Retry-After`, and `body`.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn test_answer(status: u16, retry: Option<&str>, body: &str) -> HttpResponse {
    let mut headers = HeaderMap::new();
    if let Some(retry) = retry {
        headers.insert(
            RETRY_AFTER,
            reqwest::header::HeaderValue::from_str(retry).unwrap(),
        );
    }
    HttpResponse {
        status: StatusCode::from_u16(status).unwrap(),
        headers,
        body: Bytes::from(body.to_owned()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::test_answer as answer;
    use super::*;
    use reqwest::header::HeaderValue;

    fn now() -> SystemTime {
        // Sun, 06 Nov 1994 08:49:37 GMT, the date RFC 9110 uses in its examples.
        SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777)
    }

    #[test]
    fn the_status_table() {
        let kind = |s: u16| status_kind(StatusCode::from_u16(s).unwrap()).map(|(k, _)| k);
        for ok in [200, 201, 202, 204, 260, 299] {
            assert_eq!(kind(ok), None, "{ok}");
        }
        for retry in [408, 429, 500, 502, 503, 504, 507, 599] {
            assert_eq!(kind(retry), Some(ErrorKind::Retryable), "{retry}");
        }
        for permanent in [
            301, 302, 303, 307, 308, 400, 401, 403, 404, 405, 409, 410, 413, 415, 422, 451, 501,
        ] {
            assert_eq!(kind(permanent), Some(ErrorKind::Permanent), "{permanent}");
        }
    }

    #[test]
    fn success_passes_the_answer_through() {
        let ok = classify("loki", "POST http://l", answer(204, None, ""), now()).unwrap();
        assert_eq!(ok.status, StatusCode::NO_CONTENT);
    }

    #[test]
    fn retryable_errors_carry_status_retry_after_and_excerpt() {
        let e = classify(
            "loki",
            "POST http://l",
            answer(429, Some("3"), "rate limited\n"),
            now(),
        )
        .unwrap_err();
        assert!(e.is_retryable());
        assert_eq!(e.status, Some(429));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(e.sink(), "loki");
        assert_eq!(
            e.to_string(),
            "sink loki: POST http://l: throttled by the server: rate limited (HTTP 429, retryable)"
        );
        let e = classify("es", "POST http://e", answer(503, None, ""), now()).unwrap_err();
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), None);
        assert_eq!(
            e.to_string(),
            "sink es: POST http://e: server error (HTTP 503, retryable)"
        );
    }

    #[test]
    fn permanent_errors_ignore_retry_after() {
        let e = classify(
            "es",
            "POST http://e",
            answer(401, Some("5"), "{\"error\":\"missing authentication\"}"),
            now(),
        )
        .unwrap_err();
        assert!(!e.is_retryable());
        assert_eq!(e.status, Some(401));
        assert_eq!(e.retry_after, None);
        assert!(e.message.contains("credentials refused"), "{e}");
        assert!(e.message.contains("missing authentication"), "{e}");
        let e = classify("w", "POST http://w", answer(501, None, ""), now()).unwrap_err();
        assert!(!e.is_retryable());
        assert_eq!(e.status, Some(501));
    }

    #[test]
    fn retry_after_in_both_forms() {
        let headers = |v: &str| answer(503, Some(v), "").headers;
        assert_eq!(
            retry_after(&headers("120"), now()),
            Some(Duration::from_secs(120))
        );
        assert_eq!(retry_after(&headers(" 0 "), now()), Some(Duration::ZERO));
        // IMF-fixdate, 90 s after `now`.
        assert_eq!(
            retry_after(&headers("Sun, 06 Nov 1994 08:51:07 GMT"), now()),
            Some(Duration::from_secs(90))
        );
        // The obsolete forms recipients must accept.
        assert_eq!(
            retry_after(&headers("Sunday, 06-Nov-94 08:51:07 GMT"), now()),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            retry_after(&headers("Sun Nov  6 08:51:07 1994"), now()),
            Some(Duration::from_secs(90))
        );
        // A date already past means "now".
        assert_eq!(
            retry_after(&headers("Sun, 06 Nov 1994 08:00:00 GMT"), now()),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_garbage_is_none() {
        let headers = |v: &str| answer(503, Some(v), "").headers;
        for garbage in [
            "",
            "soon",
            "-5",
            "1.5",
            "3s",
            "99999999999999999999999",
            "Sun, 32 Nov 1994 08:51:07 GMT",
        ] {
            assert_eq!(retry_after(&headers(garbage), now()), None, "{garbage:?}");
        }
        assert_eq!(retry_after(&HeaderMap::new(), now()), None);
        let mut binary = HeaderMap::new();
        binary.insert(RETRY_AFTER, HeaderValue::from_bytes(b"\xff3").unwrap());
        assert_eq!(retry_after(&binary, now()), None);
    }

    #[test]
    fn excerpt_is_one_short_line() {
        assert_eq!(
            excerpt(b"  line one\nline\ttwo\r\n"),
            "line one\\nline\\ttwo"
        );
        assert_eq!(excerpt(b"esc \x1b[31m"), "esc \\u{1b}[31m");
        assert_eq!(excerpt(b"bad \xff utf8"), "bad \u{fffd} utf8");
        let long = "é".repeat(1000);
        let cut = excerpt(long.as_bytes());
        assert_eq!(cut.chars().count(), EXCERPT_CHARS);
        assert!(cut.ends_with('…'));
        let exact = "a".repeat(EXCERPT_CHARS);
        assert_eq!(excerpt(exact.as_bytes()), exact);
        // Escapes count toward the limit and are never cut in half.
        let newlines = "\n".repeat(400);
        let cut = excerpt(format!("x{newlines}y").as_bytes());
        assert!(cut.chars().count() <= EXCERPT_CHARS);
        assert!(cut.ends_with("\\n…"), "{cut}");
    }
}
