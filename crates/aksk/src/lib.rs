//! SDK-HMAC-SHA256 request signing (AK/SK) of Huawei Cloud and Open Telekom Cloud, byte for byte
//! as the vendor SDK's `Signer` does it, and its server-side verification for the simulator.
//!
//! Algorithm: <https://support.huaweicloud.com/intl/en-us/devg-apisign/api-sign-algorithm-002.html>;
//! SDK: `huaweicloudsdkcore/signer/signer.py`. Unlike AWS SigV4 there is no derived key and no
//! credential scope: the signature is HMAC-SHA256 keyed with the secret key itself.

mod date;
mod encoding;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub use date::{parse_sdk_date, sdk_date};
pub use encoding::{canonical_query, canonical_uri, decode_query, encode};

/// The algorithm name, first word of the `Authorization` header and of the string to sign.
pub const ALGORITHM: &str = "SDK-HMAC-SHA256";
/// The header carrying the signing time; the server accepts ±15 minutes of skew.
pub const SDK_DATE_HEADER: &str = "X-Sdk-Date";
/// The header that, set to `UNSIGNED-PAYLOAD`, replaces the body hash (non-JSON uploads).
pub const CONTENT_SHA256_HEADER: &str = "X-Sdk-Content-Sha256";

type HmacSha256 = Hmac<Sha256>;

/// A computed signature with the intermediate strings, so that a rejected request can be
/// compared with the canonical request the server logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The whole `Authorization` header value.
    pub authorization: String,
    /// Lower-case header names joined with `;`.
    pub signed_headers: String,
    /// Lower-case hex HMAC-SHA256.
    pub signature: String,
    pub canonical_request: String,
    pub string_to_sign: String,
}

/// Why a request could not be signed. Never retryable: the request itself must change.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignError {
    #[error("the request has no {SDK_DATE_HEADER} header to sign")]
    MissingDate,
    #[error("the {SDK_DATE_HEADER} header {0:?} is not of the form YYYYMMDDTHHMMSSZ")]
    BadDate(String),
}

impl SignError {
    /// Always `false`: signing fails on the request's own content.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// `headers`: every header to sign, any case, INCLUDING Host and X-Sdk-Date (the caller adds
/// them); names containing `_` are not signed (as the SDK). Payload hash: sha256 of body;
/// `UNSIGNED-PAYLOAD` when an `X-Sdk-Content-Sha256` header says so. The secret key is never
/// part of any error or Debug output.
///
/// A header named twice (in any case) is signed once, with its first value: that is the value a
/// server reading the first occurrence will check.
pub fn sign(
    method: &str,
    path: &str,
    params: &[(String, String)],
    headers: &[(String, String)],
    body: &[u8],
    access_key: &str,
    secret_key: &str,
) -> Result<Signature, SignError> {
    let date = header_value(headers, SDK_DATE_HEADER).ok_or(SignError::MissingDate)?;
    let date = date.trim();
    if parse_sdk_date(date).is_none() {
        return Err(SignError::BadDate(date.to_owned()));
    }

    let mut names: Vec<String> = Vec::new();
    for (name, _) in headers {
        let lower = name.to_ascii_lowercase();
        if !lower.contains('_') && !names.contains(&lower) {
            names.push(lower);
        }
    }
    names.sort();
    let signed: Vec<(String, &str)> = names
        .into_iter()
        .filter_map(|name| header_value(headers, &name).map(|value| (name, value)))
        .collect();

    let payload_hash = payload_hash(body, header_value(headers, CONTENT_SHA256_HEADER));
    let parts = CanonicalParts {
        method,
        path,
        params,
        headers: &signed,
        payload_hash: &payload_hash,
        date,
    };
    let (canonical_request, string_to_sign) = parts.build();
    let signature = hex::encode(hmac(secret_key, &string_to_sign).finalize().into_bytes());
    let signed_headers = parts.signed_headers();
    let authorization = format!(
        "{ALGORITHM} Access={access_key}, SignedHeaders={signed_headers}, Signature={signature}"
    );
    Ok(Signature {
        authorization,
        signed_headers,
        signature,
        canonical_request,
        string_to_sign,
    })
}

/// Server side: the parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key: String,
    /// Lower-cased names, in the order the client listed them.
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Parses `SDK-HMAC-SHA256 Access=AK, SignedHeaders=a;b, Signature=hex`; `None` for another
/// algorithm or a missing or empty field. Spaces around the `,` separators are tolerated.
pub fn parse_authorization(header: &str) -> Option<Authorization> {
    let rest = header.trim().strip_prefix(ALGORITHM)?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let (mut access_key, mut signed_headers, mut signature) = (None, None, None);
    for field in rest.split(',') {
        let (name, value) = field.trim().split_once('=')?;
        let value = value.trim();
        match name.trim() {
            "Access" => access_key = Some(value.to_owned()),
            "SignedHeaders" => {
                signed_headers = Some(
                    value
                        .split(';')
                        .map(|name| name.trim().to_ascii_lowercase())
                        .collect::<Vec<_>>(),
                );
            }
            "Signature" => signature = Some(value.to_owned()),
            _ => {}
        }
    }
    let authorization = Authorization {
        access_key: access_key.filter(|key| !key.is_empty())?,
        signed_headers: signed_headers.filter(|names| names.iter().all(|name| !name.is_empty()))?,
        signature: signature.filter(|signature| !signature.is_empty())?,
    };
    Some(authorization)
}

/// Server side: recompute with the headers named in `auth.signed_headers` (values looked up
/// case-insensitively in `headers`) and the query pairs as received (percent-decoded), compare in
/// constant time.
///
/// `false` when a named header is absent, `X-Sdk-Date` is not signed or malformed, or the
/// signature is not hex. The skew window and which headers must be signed are the caller's
/// policy. The `X-Sdk-Content-Sha256` override only counts when it is itself signed, so that an
/// added header cannot detach the body from the signature.
pub fn verify(
    method: &str,
    path: &str,
    params: &[(String, String)],
    headers: &[(String, String)],
    body: &[u8],
    auth: &Authorization,
    secret_key: &str,
) -> bool {
    let mut signed: Vec<(String, &str)> = Vec::with_capacity(auth.signed_headers.len());
    for name in &auth.signed_headers {
        match header_value(headers, name) {
            Some(value) => signed.push((name.clone(), value)),
            None => return false,
        }
    }
    let date_name = SDK_DATE_HEADER.to_ascii_lowercase();
    let Some(date) = signed
        .iter()
        .find(|(name, _)| *name == date_name)
        .map(|(_, value)| value.trim())
    else {
        return false;
    };
    if parse_sdk_date(date).is_none() {
        return false;
    }
    let content_name = CONTENT_SHA256_HEADER.to_ascii_lowercase();
    let content_hash = signed
        .iter()
        .find(|(name, _)| *name == content_name)
        .map(|(_, value)| *value);
    let payload_hash = payload_hash(body, content_hash);
    let parts = CanonicalParts {
        method,
        path,
        params,
        headers: &signed,
        payload_hash: &payload_hash,
        date,
    };
    let (_, string_to_sign) = parts.build();
    let Ok(claimed) = hex::decode(&auth.signature) else {
        return false;
    };
    // `verify_slice` compares in constant time.
    hmac(secret_key, &string_to_sign)
        .verify_slice(&claimed)
        .is_ok()
}

/// Everything that goes into the canonical request, with the headers already chosen.
struct CanonicalParts<'a> {
    method: &'a str,
    path: &'a str,
    params: &'a [(String, String)],
    /// Lower-case names with their values, in signing order.
    headers: &'a [(String, &'a str)],
    payload_hash: &'a str,
    date: &'a str,
}

impl CanonicalParts<'_> {
    fn signed_headers(&self) -> String {
        self.headers
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(";")
    }

    /// The canonical request and the string to sign.
    fn build(&self) -> (String, String) {
        let canonical_headers: String = self
            .headers
            .iter()
            .map(|(name, value)| format!("{name}:{}\n", value.trim()))
            .collect();
        let canonical_request = format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            self.method.to_ascii_uppercase(),
            canonical_uri(self.path),
            canonical_query(self.params),
            canonical_headers,
            self.signed_headers(),
            self.payload_hash
        );
        let string_to_sign = format!(
            "{ALGORITHM}\n{}\n{}",
            self.date,
            hex::encode(Sha256::digest(canonical_request.as_bytes()))
        );
        (canonical_request, string_to_sign)
    }
}

/// The SDK's order: an empty body always hashes as empty, then the override header, then the
/// body's own hash.
fn payload_hash(body: &[u8], content_sha256: Option<&str>) -> String {
    match content_sha256 {
        Some(value) if !body.is_empty() => value.trim().to_owned(),
        _ => hex::encode(Sha256::digest(body)),
    }
}

fn hmac(secret_key: &str, message: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret_key.as_bytes())
        .expect("HMAC-SHA256 accepts a key of any length");
    mac.update(message.as_bytes());
    mac
}

/// The first value of a header, matched case-insensitively.
fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

#[cfg(test)]
mod tests;
