//! Percent-encoding and the canonical URI and query string of SDK-HMAC-SHA256.
//!
//! The vendor SDK encodes with Python's `quote(s, safe='~')`, which is RFC 3986: only the
//! unreserved characters stay as they are. The canonical query is also the query the SDK sends,
//! so one encoder serves both the signature and the wire (see
//! <https://support.huaweicloud.com/intl/en-us/devg-apisign/api-sign-algorithm-002.html>).

/// Upper-case hex digits, because the SDK's `%XY` escapes are upper-case and the server compares
/// the canonical request byte for byte.
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// RFC 3986 percent-encoding: only `A-Z a-z 0-9 - _ . ~` unescaped, upper-case `%XY` over UTF-8.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &byte in text.as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX_UPPER[usize::from(byte >> 4)]));
            out.push(char::from(HEX_UPPER[usize::from(byte & 0x0f)]));
        }
    }
    out
}

/// Decodes `%XY` escapes; a malformed escape is kept literally and invalid UTF-8 becomes U+FFFD,
/// as Python's `unquote` does. `+` stays `+`: the SDK never sends a space as `+`, so a request
/// that does was not built by a compatible signer and must not verify.
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%'
            && let (Some(high), Some(low)) = (
                bytes.get(index + 1).and_then(|b| hex_value(*b)),
                bytes.get(index + 2).and_then(|b| hex_value(*b)),
            )
        {
            out.push(high << 4 | low);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Sorted by (key, value), each `enc(k)=enc(v)`, joined with `&`. This string is ALSO the query
/// sent on the wire.
///
/// The sort is on the raw strings (Python sorts the tuples before encoding); byte order of UTF-8
/// equals code-point order, so Rust's `String` ordering matches. A list value is several pairs
/// with the same key, a bool is `"true"`/`"false"`, an empty value gives `k=`.
pub fn canonical_query(params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    sorted
        .iter()
        .map(|(key, value)| format!("{}={}", encode(key), encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Unquote the path, split on `/`, encode each segment, re-join, append `/` if missing.
///
/// The trailing slash belongs to the signature only; the wire path keeps its own form.
pub fn canonical_uri(path: &str) -> String {
    let unquoted = percent_decode(path);
    let mut uri = unquoted
        .split('/')
        .map(encode)
        .collect::<Vec<_>>()
        .join("/");
    if !uri.ends_with('/') {
        uri.push('/');
    }
    uri
}

/// Percent-decodes a raw query string `a=b&c=d` into pairs (for the server side).
///
/// Empty pieces (`a=1&&b=2`) are skipped; a piece without `=` is a key with an empty value,
/// which the canonical query writes as `k=` like the SDK does.
pub fn decode_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| match piece.split_once('=') {
            Some((key, value)) => (percent_decode(key), percent_decode(value)),
            None => (percent_decode(piece), String::new()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn encode_keeps_only_unreserved_characters() {
        assert_eq!(encode("AZaz09-_.~"), "AZaz09-_.~");
        assert_eq!(encode(" "), "%20");
        assert_eq!(encode("+"), "%2B");
        assert_eq!(encode("*"), "%2A");
        assert_eq!(
            encode("/:?#[]@!$&'()=,;"),
            "%2F%3A%3F%23%5B%5D%40%21%24%26%27%28%29%3D%2C%3B"
        );
        assert_eq!(encode("%"), "%25");
        assert_eq!(encode(""), "");
    }

    #[test]
    fn encode_escapes_utf8_bytes_in_upper_case() {
        assert_eq!(encode("ä"), "%C3%A4");
        assert_eq!(encode("€"), "%E2%82%AC");
        assert_eq!(encode("😀"), "%F0%9F%98%80");
    }

    #[test]
    fn percent_decode_inverts_encode_and_keeps_bad_escapes() {
        let text = "my svc/ä+1 *~";
        assert_eq!(percent_decode(&encode(text)), text);
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("a%zz"), "a%zz");
        assert_eq!(percent_decode("a+b"), "a+b");
        assert_eq!(percent_decode("%2f"), "/");
        assert_eq!(percent_decode("%FF"), "\u{FFFD}");
    }

    #[test]
    fn canonical_query_sorts_by_key_then_value_before_encoding() {
        let params = pairs(&[
            ("b", "z"),
            ("b", "a"),
            ("a", "true"),
            ("c", ""),
            ("d", "x~y*z"),
        ]);
        assert_eq!(canonical_query(&params), "a=true&b=a&b=z&c=&d=x~y%2Az");
        assert_eq!(canonical_query(&[]), "");
        // `B` (0x42) sorts before `a` (0x61): byte order, not case-insensitive order.
        assert_eq!(
            canonical_query(&pairs(&[("a", "1"), ("B", "2")])),
            "B=2&a=1"
        );
    }

    #[test]
    fn canonical_uri_encodes_segments_and_appends_a_slash() {
        assert_eq!(canonical_uri("/v1/p/services"), "/v1/p/services/");
        assert_eq!(canonical_uri("/v1/p/services/"), "/v1/p/services/");
        assert_eq!(canonical_uri("/v1/a%20b:c/events"), "/v1/a%20b%3Ac/events/");
        assert_eq!(canonical_uri("/v1/a b/x"), "/v1/a%20b/x/");
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/"), "/");
    }

    #[test]
    fn decode_query_splits_and_decodes_pairs() {
        assert_eq!(
            decode_query("service_name=my%20svc%2F%C3%A4%2B1&c=&flag&&d=x~y%2Az"),
            pairs(&[
                ("service_name", "my svc/ä+1"),
                ("c", ""),
                ("flag", ""),
                ("d", "x~y*z")
            ])
        );
        assert_eq!(decode_query(""), Vec::<(String, String)>::new());
        assert_eq!(decode_query("a=b=c"), pairs(&[("a", "b=c")]));
    }
}
