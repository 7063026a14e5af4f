//! The four ways a webhook post is signed, as pure functions of the secret, the time and
//! the bytes sent (`shared/reference/sink-wire-contracts.md` §3.3, §3.4, §4; each test
//! below checks the reference's vector):
//!
//! - **Standard Webhooks** (<https://www.standardwebhooks.com/>, spec v1.0.0): the key is
//!   the base64 after `whsec_`; `webhook-signature: v1,<base64 HMAC-SHA256(key,
//!   "{id}.{timestamp}.{body}")>`, the timestamp in Unix seconds.
//! - **GitHub** (<https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries>):
//!   `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`.
//! - **Feishu / Lark**: HMAC-SHA256 with `"{timestamp}\n{secret}"` as the *key* and an
//!   empty message, base64; sent in the body with the timestamp in seconds.
//! - **DingTalk**: HMAC-SHA256 with the secret as the key and `"{timestamp}\n{secret}"`
//!   as the message, base64, then URL-encoded; sent in the query with the timestamp in
//!   milliseconds.
//!
//! Every signature is computed again for every attempt, with the time of that attempt:
//! the platforms refuse a timestamp more than an hour (Standard Webhooks receivers:
//! minutes) away from their clock.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The prefix of a Standard Webhooks secret.
pub const WHSEC_PREFIX: &str = "whsec_";

/// HMAC-SHA256 of `message` under `key`.
fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    // `new_from_slice` refuses only keys of the wrong length for fixed-key MACs; HMAC
    // hashes long keys and pads short ones.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC-SHA256 accepts keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// The key bytes of a `whsec_` secret, or why it is not one (the message never quotes
/// the secret).
pub fn standard_key(secret: &str) -> Result<Vec<u8>, String> {
    let Some(encoded) = secret.strip_prefix(WHSEC_PREFIX) else {
        return Err(
            "is not a Standard Webhooks secret: it must start with \"whsec_\" followed by \
             base64 (for a plain shared secret, set signature = \"github\")"
                .to_owned(),
        );
    };
    let key = STANDARD
        .decode(encoded.trim())
        .map_err(|_| "is not valid base64 after \"whsec_\"".to_owned())?;
    if key.is_empty() {
        return Err("holds no key after \"whsec_\"".to_owned());
    }
    Ok(key)
}

/// `v1,<base64>`: the `webhook-signature` value for message `id` sent at `timestamp`
/// (Unix seconds) with `body`.
pub fn standard(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut content = format!("{id}.{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    format!("v1,{}", STANDARD.encode(hmac(key, &content)))
}

/// `sha256=<hex>`: the `X-Hub-Signature-256` value for `body`.
pub fn github(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac(secret.as_bytes(), body)))
}

/// Feishu's `sign` for `timestamp` (Unix seconds).
pub fn feishu(secret: &str, timestamp: i64) -> String {
    let key = format!("{timestamp}\n{secret}");
    STANDARD.encode(hmac(key.as_bytes(), b""))
}

/// DingTalk's `sign` for `timestamp_ms`, base64 and not yet URL-encoded.
pub fn dingtalk(secret: &str, timestamp_ms: i64) -> String {
    let message = format!("{timestamp_ms}\n{secret}");
    STANDARD.encode(hmac(secret.as_bytes(), message.as_bytes()))
}

/// `text` percent-encoded for a query value (`application/x-www-form-urlencoded`, as
/// Python's `quote_plus` that DingTalk's sample uses): everything but ASCII letters,
/// digits and `*-._` is `%XX`; a base64 `+` must not reach the server raw, where it
/// would decode to a space.
pub fn query_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3 / 2);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'*' | b'-' | b'.' | b'_') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_vector() {
        let key = standard_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(key.len(), 24);
        assert_eq!(
            standard(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn standard_secrets_are_checked_without_quoting_them() {
        for bad in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_***not base64***",
            "whsec_",
        ] {
            let error = standard_key(bad).unwrap_err();
            assert!(
                !error.contains("MfKQ") && !error.contains("not base64***"),
                "{error}"
            );
        }
    }

    #[test]
    fn github_vector() {
        assert_eq!(
            github("It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn feishu_vector_and_not_the_dingtalk_computation() {
        assert_eq!(
            feishu("demo-secret", 1599360473),
            "3/MaVZ8JLIy4TUG+7KSFJqvUkTKd+HWY8g+56DZWq8s="
        );
        // The DingTalk-style computation gives what the reference calls the wrong one.
        let dingtalk_style = STANDARD.encode(hmac(b"demo-secret", b"1599360473\ndemo-secret"));
        assert_eq!(
            dingtalk_style,
            "+y4hoW+2wrJQJ+Ccwm+K1OKBY3kTQ7fsX6PjcCKo06U="
        );
    }

    #[test]
    fn dingtalk_vector_raw_and_url_encoded() {
        let sign = dingtalk("SECdemo", 1599360473000);
        assert_eq!(sign, "tGWkA5eQOQNCNPDgphtxIoNLO+/gD8Lcb705KQoRzeY=");
        assert_eq!(
            query_encode(&sign),
            "tGWkA5eQOQNCNPDgphtxIoNLO%2B%2FgD8Lcb705KQoRzeY%3D"
        );
    }
}
