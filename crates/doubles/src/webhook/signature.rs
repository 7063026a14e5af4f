//! Checking the signatures a webhook receiver checks, written from the platforms'
//! descriptions (`shared/reference/sink-wire-contracts.md` §3.3, §3.4, §4) independently
//! of the sink's signing code, and compared in constant time (`Mac::verify_slice`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).expect("HMAC-SHA256 accepts keys of any length")
}

/// Standard Webhooks: whether `signatures` (the space-separated `webhook-signature`
/// header, `v1,<base64>` entries) holds a valid HMAC of `"{id}.{timestamp}.{body}"`
/// under the key of `secret` (`whsec_` + base64).
pub fn standard(secret: &str, id: &str, timestamp: &str, body: &[u8], signatures: &str) -> bool {
    let Some(key) = secret
        .strip_prefix("whsec_")
        .and_then(|encoded| STANDARD.decode(encoded).ok())
    else {
        return false;
    };
    signatures.split(' ').any(|entry| {
        let Some(encoded) = entry.strip_prefix("v1,") else {
            return false;
        };
        let Ok(signature) = STANDARD.decode(encoded) else {
            return false;
        };
        let mut mac = mac(&key);
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(&signature).is_ok()
    })
}

/// GitHub: whether `header` is `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn github(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(signature) = header
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    let mut mac = mac(secret.as_bytes());
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

/// Feishu: whether `sign` is base64 HMAC-SHA256 keyed with `"{timestamp}\n{secret}"`
/// over an empty message.
pub fn feishu(secret: &str, timestamp: &str, sign: &str) -> bool {
    let Ok(signature) = STANDARD.decode(sign) else {
        return false;
    };
    mac(format!("{timestamp}\n{secret}").as_bytes())
        .verify_slice(&signature)
        .is_ok()
}

/// DingTalk: whether `sign` (already URL-decoded) is base64 HMAC-SHA256 keyed with the
/// secret over `"{timestamp}\n{secret}"`.
pub fn dingtalk(secret: &str, timestamp: &str, sign: &str) -> bool {
    let Ok(signature) = STANDARD.decode(sign) else {
        return false;
    };
    let mut mac = mac(secret.as_bytes());
    mac.update(format!("{timestamp}\n{secret}").as_bytes());
    mac.verify_slice(&signature).is_ok()
}

/// A query value decoded as `application/x-www-form-urlencoded`: `%XX` is the byte, and
/// `+` is a space (which is why an unencoded base64 `+` breaks a signature). `None` for a
/// broken escape or bytes that are not UTF-8.
pub fn form_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let text = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(text, 16).ok()?);
                i += 2;
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The query's `name=value` pairs, values as written (not decoded).
pub fn raw_query_pairs(query: &str) -> Vec<(&str, &str)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .collect()
}
