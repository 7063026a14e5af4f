//! Signing vectors V0..V5 (produced by the vendor SDK's own signer, V0 being Huawei's published
//! signing-guide example), and the verifier's acceptance and refusals.
#![allow(clippy::unwrap_used)]

use super::*;

struct Vector {
    access_key: &'static str,
    secret_key: &'static str,
    method: &'static str,
    path: &'static str,
    /// As callers pass them: lists expanded to repeated keys, bools as `"true"`.
    params: &'static [(&'static str, &'static str)],
    /// What the SDK had before signing, plus the `Host` it adds.
    headers: &'static [(&'static str, &'static str)],
    body: &'static str,
    /// The query of the URL the SDK sent.
    wire_query: &'static str,
    canonical_request: &'static str,
    string_to_sign: &'static str,
    authorization: &'static str,
}

fn owned(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn check(vector: &Vector) {
    let params = owned(vector.params);
    let headers = owned(vector.headers);
    let signature = sign(
        vector.method,
        vector.path,
        &params,
        &headers,
        vector.body.as_bytes(),
        vector.access_key,
        vector.secret_key,
    )
    .unwrap();
    assert_eq!(signature.canonical_request, vector.canonical_request);
    assert_eq!(signature.string_to_sign, vector.string_to_sign);
    assert_eq!(signature.authorization, vector.authorization);
    assert_eq!(canonical_query(&params), vector.wire_query);

    // The server side, from what went over the wire, accepts it.
    let auth = parse_authorization(&signature.authorization).unwrap();
    assert_eq!(auth.access_key, vector.access_key);
    assert_eq!(auth.signed_headers.join(";"), signature.signed_headers);
    assert_eq!(auth.signature, signature.signature);
    assert!(verify(
        vector.method,
        vector.path,
        &decode_query(vector.wire_query),
        &headers,
        vector.body.as_bytes(),
        &auth,
        vector.secret_key,
    ));
}

/// V0 official Huawei signing-guide example (VPC list)
#[test]
fn vector_v0() {
    check(&Vector {
        access_key: "QTWAOYTTINDUT2QVKYUC",
        secret_key: "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc",
        method: "GET",
        path: "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs",
        params: &[
            ("limit", "2"),
            ("marker", "13551d6b-755d-4757-b956-536f674975c0"),
        ],
        headers: &[
            ("Content-Type", "application/json"),
            ("X-Sdk-Date", "20191115T033655Z"),
            ("Host", "service.region.example.com"),
        ],
        body: "",
        wire_query: "limit=2&marker=13551d6b-755d-4757-b956-536f674975c0",
        canonical_request: "GET\n/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs/\nlimit=2&marker=13551d6b-755d-4757-b956-536f674975c0\ncontent-type:application/json\nhost:service.region.example.com\nx-sdk-date:20191115T033655Z\n\ncontent-type;host;x-sdk-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        string_to_sign: "SDK-HMAC-SHA256\n20191115T033655Z\nb25362e603ee30f4f25e7858e8a7160fd36e803bb2dfe206278659d71a9bcd7a",
        authorization: "SDK-HMAC-SHA256 Access=QTWAOYTTINDUT2QVKYUC, SignedHeaders=content-type;host;x-sdk-date, Signature=7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe",
    });
}

/// V1 GET v1 service events (eu-de) + X-Project-Id
#[test]
fn vector_v1() {
    check(&Vector {
        access_key: "HPUAEXAMPLEAK1234567",
        secret_key: "ExampleSecretKey0123456789abcdefghijklmnop",
        method: "GET",
        path: "/v1/0123456789abcdef0123456789abcdef/services/8d8b7c3e-1f2a-4b5c-9d6e-7f8091a2b3c4/events",
        params: &[
            ("event_type", "abnormal"),
            ("start_time", "1705305600000"),
            ("end_time", "1705309200000"),
            ("offset", "0"),
            ("limit", "100"),
            ("sort_by", "occur_time"),
            ("order", "asc"),
        ],
        headers: &[
            ("Content-Type", "application/json"),
            ("X-Sdk-Date", "20240115T093000Z"),
            ("X-Project-Id", "0123456789abcdef0123456789abcdef"),
            ("Host", "modelarts.eu-de.otc.t-systems.com"),
        ],
        body: "",
        wire_query: "end_time=1705309200000&event_type=abnormal&limit=100&offset=0&order=asc&sort_by=occur_time&start_time=1705305600000",
        canonical_request: "GET\n/v1/0123456789abcdef0123456789abcdef/services/8d8b7c3e-1f2a-4b5c-9d6e-7f8091a2b3c4/events/\nend_time=1705309200000&event_type=abnormal&limit=100&offset=0&order=asc&sort_by=occur_time&start_time=1705305600000\ncontent-type:application/json\nhost:modelarts.eu-de.otc.t-systems.com\nx-project-id:0123456789abcdef0123456789abcdef\nx-sdk-date:20240115T093000Z\n\ncontent-type;host;x-project-id;x-sdk-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        string_to_sign: "SDK-HMAC-SHA256\n20240115T093000Z\n88fa01ac337eaf5477d64c38349413ca353d7d852acdc5f3b4b8bec595e551c9",
        authorization: "SDK-HMAC-SHA256 Access=HPUAEXAMPLEAK1234567, SignedHeaders=content-type;host;x-project-id;x-sdk-date, Signature=83ebecbeae84135d4514cb4c8714cfcf43ea116ed9222f4494eb4cc4c41d4b1e",
    });
}

/// V2 GET v1 list services, encoded query, temporary AK/SK (X-Security-Token)
#[test]
fn vector_v2() {
    check(&Vector {
        access_key: "HPUAEXAMPLEAK1234567",
        secret_key: "ExampleSecretKey0123456789abcdefghijklmnop",
        method: "GET",
        path: "/v1/0123456789abcdef0123456789abcdef/services",
        params: &[
            ("service_name", "my svc/ä+1"),
            ("status", "running"),
            ("limit", "50"),
            ("offset", "0"),
            ("order", "desc"),
            ("sort_by", "publish_at"),
        ],
        headers: &[
            ("Content-Type", "application/json"),
            ("X-Sdk-Date", "20240115T093000Z"),
            ("X-Project-Id", "0123456789abcdef0123456789abcdef"),
            ("X-Security-Token", "gQpjbi1ub3J0aC00EXAMPLEsecuritytoken=="),
            ("Host", "modelarts.eu-de.otc.t-systems.com"),
        ],
        body: "",
        wire_query: "limit=50&offset=0&order=desc&service_name=my%20svc%2F%C3%A4%2B1&sort_by=publish_at&status=running",
        canonical_request: "GET\n/v1/0123456789abcdef0123456789abcdef/services/\nlimit=50&offset=0&order=desc&service_name=my%20svc%2F%C3%A4%2B1&sort_by=publish_at&status=running\ncontent-type:application/json\nhost:modelarts.eu-de.otc.t-systems.com\nx-project-id:0123456789abcdef0123456789abcdef\nx-sdk-date:20240115T093000Z\nx-security-token:gQpjbi1ub3J0aC00EXAMPLEsecuritytoken==\n\ncontent-type;host;x-project-id;x-sdk-date;x-security-token\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        string_to_sign: "SDK-HMAC-SHA256\n20240115T093000Z\nc5dba7770f50391d2ef2a126d88607ad4390a1367716ed90c63d1b9075f6cd3c",
        authorization: "SDK-HMAC-SHA256 Access=HPUAEXAMPLEAK1234567, SignedHeaders=content-type;host;x-project-id;x-sdk-date;x-security-token, Signature=1ce2d467bcfc89880dce8eb7425378199457e3bd69db67530b9f377b03fb6e3e",
    });
}

/// V3 POST JSON body, no query
#[test]
fn vector_v3() {
    check(&Vector {
        access_key: "HPUAEXAMPLEAK1234567",
        secret_key: "ExampleSecretKey0123456789abcdefghijklmnop",
        method: "POST",
        path: "/v1/0123456789abcdef0123456789abcdef/services",
        params: &[],
        headers: &[
            ("Content-Type", "application/json;charset=UTF-8"),
            ("X-Sdk-Date", "20240115T093000Z"),
            ("X-Project-Id", "0123456789abcdef0123456789abcdef"),
            ("Host", "modelarts.eu-de.otc.t-systems.com"),
        ],
        body: "{\"name\":\"demo\",\"description\":\"test vector\"}",
        wire_query: "",
        canonical_request: "POST\n/v1/0123456789abcdef0123456789abcdef/services/\n\ncontent-type:application/json;charset=UTF-8\nhost:modelarts.eu-de.otc.t-systems.com\nx-project-id:0123456789abcdef0123456789abcdef\nx-sdk-date:20240115T093000Z\n\ncontent-type;host;x-project-id;x-sdk-date\nf636328ae4aed52f1157b4882cdddb70f64097cb581fe6c25ff80ede8a00ea20",
        string_to_sign: "SDK-HMAC-SHA256\n20240115T093000Z\n1a4d33f395828222bdf77e8d6897325601b174680d2cddbfebf53f9193994764",
        authorization: "SDK-HMAC-SHA256 Access=HPUAEXAMPLEAK1234567, SignedHeaders=content-type;host;x-project-id;x-sdk-date, Signature=42e187b2aa483e66b9ecbae79f11bee15c93fba56534d431f9c0202d14454de2",
    });
}

/// V4 GET IAM /v3/projects?name=eu-de (raw signer, only Host + X-Sdk-Date + Content-Type)
#[test]
fn vector_v4() {
    check(&Vector {
        access_key: "HPUAEXAMPLEAK1234567",
        secret_key: "ExampleSecretKey0123456789abcdefghijklmnop",
        method: "GET",
        path: "/v3/projects",
        params: &[("name", "eu-de")],
        headers: &[
            ("Content-Type", "application/json"),
            ("X-Sdk-Date", "20240115T093000Z"),
            ("Host", "iam.eu-de.otc.t-systems.com"),
        ],
        body: "",
        wire_query: "name=eu-de",
        canonical_request: "GET\n/v3/projects/\nname=eu-de\ncontent-type:application/json\nhost:iam.eu-de.otc.t-systems.com\nx-sdk-date:20240115T093000Z\n\ncontent-type;host;x-sdk-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        string_to_sign: "SDK-HMAC-SHA256\n20240115T093000Z\n9c8adfc0299fce69272563b65de7af11b87b937021df3d283b0ceb325bc1b550",
        authorization: "SDK-HMAC-SHA256 Access=HPUAEXAMPLEAK1234567, SignedHeaders=content-type;host;x-sdk-date, Signature=b5e4217bf55072901ee7c53bfcdc379e88a7eaf521bb5fe47bde58b65d47406c",
    });
}

/// V5 edge cases (encoded path segment, repeated key, bool, empty value, ~ and *)
#[test]
fn vector_v5() {
    check(&Vector {
        access_key: "HPUAEXAMPLEAK1234567",
        secret_key: "ExampleSecretKey0123456789abcdefghijklmnop",
        method: "GET",
        path: "/v1/0123456789abcdef0123456789abcdef/services/a%20b:c/events",
        params: &[
            ("b", "a"),
            ("b", "z"),
            ("a", "true"),
            ("c", ""),
            ("d", "x~y*z"),
        ],
        headers: &[
            ("X-Sdk-Date", "20240115T093000Z"),
            ("Host", "modelarts.eu-de.otc.t-systems.com"),
        ],
        body: "",
        wire_query: "a=true&b=a&b=z&c=&d=x~y%2Az",
        canonical_request: "GET\n/v1/0123456789abcdef0123456789abcdef/services/a%20b%3Ac/events/\na=true&b=a&b=z&c=&d=x~y%2Az\nhost:modelarts.eu-de.otc.t-systems.com\nx-sdk-date:20240115T093000Z\n\nhost;x-sdk-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        string_to_sign: "SDK-HMAC-SHA256\n20240115T093000Z\n2d44194381c280dfb4e083bffd56981c8293ea93d5b25fb08d6df0e329049ee3",
        authorization: "SDK-HMAC-SHA256 Access=HPUAEXAMPLEAK1234567, SignedHeaders=host;x-sdk-date, Signature=6353564bff814734382baa50b39103cbb6349aea00200b23c9840b71278e9433",
    });
}

const AK: &str = "HPUAEXAMPLEAK1234567";
const SK: &str = "ExampleSecretKey0123456789abcdefghijklmnop";
const PATH: &str = "/v1/0123456789abcdef0123456789abcdef/services";

/// A signed POST with a query, the headers as sent and the parsed `Authorization`.
type Pairs = Vec<(String, String)>;

fn signed_post() -> (Pairs, Pairs, &'static [u8], Authorization) {
    let params = owned(&[("service_name", "my svc/ä+1"), ("limit", "50")]);
    let mut headers = owned(&[
        ("Content-Type", "application/json"),
        ("Host", "127.0.0.1:8080"),
        ("X-Sdk-Date", "20240115T093000Z"),
        ("X-Project-Id", "0123456789abcdef0123456789abcdef"),
    ]);
    let body: &[u8] = br#"{"name":"demo"}"#;
    let signature = sign("POST", PATH, &params, &headers, body, AK, SK).unwrap();
    headers.push(("Authorization".to_owned(), signature.authorization.clone()));
    let auth = parse_authorization(&signature.authorization).unwrap();
    (params, headers, body, auth)
}

#[test]
fn verify_accepts_the_signed_request_with_headers_in_any_case() {
    let (params, headers, body, auth) = signed_post();
    assert!(verify("POST", PATH, &params, &headers, body, &auth, SK));
    let shouted: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_uppercase(), v.clone()))
        .collect();
    assert!(verify("POST", PATH, &params, &shouted, body, &auth, SK));
    // The query as it came over the wire, decoded, in any order.
    let wire = decode_query(&canonical_query(&params));
    let reversed: Vec<_> = wire.into_iter().rev().collect();
    assert!(verify("POST", PATH, &reversed, &headers, body, &auth, SK));
}

#[test]
fn verify_refuses_a_changed_query() {
    let (mut params, headers, body, auth) = signed_post();
    params[1].1 = "51".to_owned();
    assert!(!verify("POST", PATH, &params, &headers, body, &auth, SK));
    // Form encoding (space as `+`) is not what was signed.
    let form = decode_query("limit=50&service_name=my+svc%2F%C3%A4%2B1");
    assert!(!verify("POST", PATH, &form, &headers, body, &auth, SK));
    let (mut params, ..) = signed_post();
    params.push(("extra".to_owned(), String::new()));
    assert!(!verify("POST", PATH, &params, &headers, body, &auth, SK));
}

#[test]
fn verify_refuses_a_changed_or_missing_signed_header() {
    let (params, headers, body, auth) = signed_post();
    let changed: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            let v = if k == "X-Project-Id" {
                "other".to_owned()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();
    assert!(!verify("POST", PATH, &params, &changed, body, &auth, SK));
    let missing: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| k != "Host")
        .cloned()
        .collect();
    assert!(!verify("POST", PATH, &params, &missing, body, &auth, SK));
}

#[test]
fn verify_refuses_a_changed_body_method_path_or_key() {
    let (params, headers, body, auth) = signed_post();
    assert!(!verify(
        "POST",
        PATH,
        &params,
        &headers,
        br#"{"name":"demo2"}"#,
        &auth,
        SK
    ));
    assert!(!verify("POST", PATH, &params, &headers, b"", &auth, SK));
    assert!(!verify("PUT", PATH, &params, &headers, body, &auth, SK));
    assert!(!verify(
        "POST",
        "/v1/other/services",
        &params,
        &headers,
        body,
        &auth,
        SK
    ));
    assert!(!verify(
        "POST",
        PATH,
        &params,
        &headers,
        body,
        &auth,
        "wrong-secret"
    ));
    let mut forged = auth.clone();
    forged.signature = "zz".to_owned();
    assert!(!verify("POST", PATH, &params, &headers, body, &forged, SK));
}

#[test]
fn verify_ignores_an_unsigned_payload_override() {
    let (params, mut headers, _, auth) = signed_post();
    headers.push((
        CONTENT_SHA256_HEADER.to_owned(),
        "UNSIGNED-PAYLOAD".to_owned(),
    ));
    assert!(!verify(
        "POST",
        PATH,
        &params,
        &headers,
        b"tampered",
        &auth,
        SK
    ));
}

#[test]
fn unsigned_payload_replaces_the_body_hash_when_signed() {
    let headers = owned(&[
        ("Content-Type", "application/octet-stream"),
        ("Host", "example.com"),
        ("X-Sdk-Date", "20240115T093000Z"),
        ("X-Sdk-Content-Sha256", "UNSIGNED-PAYLOAD"),
    ]);
    let signature = sign("PUT", "/upload", &[], &headers, b"binary", AK, SK).unwrap();
    assert!(signature.canonical_request.ends_with("\nUNSIGNED-PAYLOAD"));
    assert!(signature.signed_headers.contains("x-sdk-content-sha256"));
    let auth = parse_authorization(&signature.authorization).unwrap();
    // The body is not covered, exactly as the SDK intends for uploads.
    assert!(verify(
        "PUT",
        "/upload",
        &[],
        &headers,
        b"other bytes",
        &auth,
        SK
    ));
}

#[test]
fn headers_with_underscores_are_not_signed_and_values_are_trimmed() {
    let headers = owned(&[
        ("Host", "example.com"),
        ("X-Sdk-Date", "20240115T093000Z"),
        ("X_Custom", "not signed"),
        ("X-Spaced", "  a  b  "),
    ]);
    let signature = sign("get", "/v3/projects", &[], &headers, b"", AK, SK).unwrap();
    assert_eq!(signature.signed_headers, "host;x-sdk-date;x-spaced");
    assert!(
        signature
            .canonical_request
            .starts_with("GET\n/v3/projects/\n\n")
    );
    assert!(signature.canonical_request.contains("\nx-spaced:a  b\n"));
}

#[test]
fn sign_needs_a_well_formed_date() {
    let no_date = owned(&[("Host", "example.com")]);
    assert_eq!(
        sign("GET", "/", &[], &no_date, b"", AK, SK),
        Err(SignError::MissingDate)
    );
    let bad = owned(&[("Host", "example.com"), ("x-sdk-date", "2024-01-15")]);
    let error = sign("GET", "/", &[], &bad, b"", AK, SK).unwrap_err();
    assert_eq!(error, SignError::BadDate("2024-01-15".to_owned()));
    assert!(!error.is_retryable());
    assert!(!error.to_string().contains(SK));
}

#[test]
fn the_secret_key_never_shows_in_debug_output() {
    let headers = owned(&[("Host", "example.com"), ("X-Sdk-Date", "20240115T093000Z")]);
    let signature = sign("GET", "/", &[], &headers, b"", AK, SK).unwrap();
    let auth = parse_authorization(&signature.authorization).unwrap();
    assert!(!format!("{signature:?} {auth:?}").contains(SK));
}

#[test]
fn parse_authorization_reads_the_three_fields() {
    let auth = parse_authorization(
        "SDK-HMAC-SHA256 Access=AK1, SignedHeaders=Host;x-sdk-date, Signature=abc",
    )
    .unwrap();
    assert_eq!(auth.access_key, "AK1");
    assert_eq!(auth.signed_headers, vec!["host", "x-sdk-date"]);
    assert_eq!(auth.signature, "abc");
    // Tight separators are tolerated.
    assert!(
        parse_authorization("SDK-HMAC-SHA256 Access=AK1,SignedHeaders=host,Signature=abc")
            .is_some()
    );
    for header in [
        "",
        "Bearer abc",
        "SDK-HMAC-SHA256",
        "SDK-HMAC-SHA256Access=AK1, SignedHeaders=host, Signature=abc",
        "SDK-HMAC-SM3 Access=AK1, SignedHeaders=host, Signature=abc",
        "SDK-HMAC-SHA256 Access=AK1, SignedHeaders=host",
        "SDK-HMAC-SHA256 Access=, SignedHeaders=host, Signature=abc",
        "SDK-HMAC-SHA256 Access=AK1, SignedHeaders=host;;x, Signature=abc",
        "SDK-HMAC-SHA256 Access=AK1, SignedHeaders=host, Signature",
    ] {
        assert_eq!(parse_authorization(header), None, "{header}");
    }
}
