//! The webhook doubles check what the platforms check and answer as they answer. Most
//! tests call the handler straight (no socket) at a chosen clock, so the reference's
//! signature vectors (dated 2020) can be used as they are; the last one goes over real
//! HTTP.

#![allow(clippy::unwrap_used)]

use super::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use hyper::Method;
use serde_json::json;
use sha2::Sha256;
use std::io::{Read as _, Write as _};

/// The time of the Feishu and DingTalk vectors: 2020-09-06T02:47:53Z.
const VECTOR_SECONDS: u64 = 1_599_360_473;

fn at_seconds(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
}

fn state(settings: WebhookSettings) -> Mutex<State> {
    Mutex::new(State {
        settings,
        requests: Vec::new(),
        faults: VecDeque::new(),
        removed: false,
        remove_after: None,
        throttled_until: None,
    })
}

fn post(uri: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Request<Bytes> {
    let mut builder = Request::builder().method(Method::POST).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(body.into()).unwrap()
}

fn json_post(uri: &str, body: &Value) -> Request<Bytes> {
    post(
        uri,
        &[("content-type", "application/json")],
        body.to_string(),
    )
}

/// Status and body of the answer to `request` at `now`.
fn send(
    state: &Mutex<State>,
    request: Request<Bytes>,
    now: SystemTime,
) -> (u16, String, Option<String>) {
    let answer = handle_at(state, request, Instant::now(), now);
    let retry_after = answer
        .headers()
        .get(hyper::header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_owned());
    (answer.status().as_u16(), answer_text(&answer), retry_after)
}

fn code(body: &str, key: &str) -> i64 {
    serde_json::from_str::<Value>(body).unwrap()[key]
        .as_i64()
        .unwrap()
}

const TOKEN: &str = "T0KEN-s3cret-Abc123";

// ---- signatures ----

#[test]
fn standard_webhooks_vector_is_accepted_and_a_wrong_secret_refused() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let (id, ts, body) = (
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "1614265330",
        br#"{"test": 2432232314}"#,
    );
    let good = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    assert!(signature::standard(secret, id, ts, body, good));
    // Any entry of a space-separated list (key rotation).
    assert!(signature::standard(
        secret,
        id,
        ts,
        body,
        &format!("v1,AAAA {good}")
    ));
    assert!(!signature::standard(
        "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        id,
        ts,
        body,
        good
    ));
    assert!(!signature::standard(secret, id, "1614265331", body, good));
    assert!(!signature::standard(
        secret,
        id,
        ts,
        br#"{"test": 2432232315}"#,
        good
    ));
    assert!(!signature::standard(
        secret,
        id,
        ts,
        body,
        "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    ));
}

#[test]
fn github_vector() {
    let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert!(signature::github(
        "It's a Secret to Everybody",
        b"Hello, World!",
        header
    ));
    assert!(!signature::github(
        "It's a Secret to Everybody!",
        b"Hello, World!",
        header
    ));
    assert!(!signature::github(
        "It's a Secret to Everybody",
        b"Hello, World!",
        &header[7..]
    ));
}

#[test]
fn feishu_vector_and_the_dingtalk_style_mistake() {
    let ts = VECTOR_SECONDS.to_string();
    assert!(signature::feishu(
        "demo-secret",
        &ts,
        "3/MaVZ8JLIy4TUG+7KSFJqvUkTKd+HWY8g+56DZWq8s="
    ));
    assert!(!signature::feishu(
        "demo-secret",
        &ts,
        "+y4hoW+2wrJQJ+Ccwm+K1OKBY3kTQ7fsX6PjcCKo06U="
    ));
}

#[test]
fn dingtalk_vector_and_a_raw_plus() {
    let ts = "1599360473000";
    let raw = "tGWkA5eQOQNCNPDgphtxIoNLO+/gD8Lcb705KQoRzeY=";
    assert!(signature::dingtalk("SECdemo", ts, raw));
    let encoded = "tGWkA5eQOQNCNPDgphtxIoNLO%2B%2FgD8Lcb705KQoRzeY%3D";
    assert_eq!(signature::form_decode(encoded).as_deref(), Some(raw));
    // Unencoded in a query, the `+` decodes to a space.
    let decoded = signature::form_decode(raw).unwrap();
    assert!(!signature::dingtalk("SECdemo", ts, &decoded));
}

// ---- Slack ----

fn slack_uri(token: &str) -> String {
    format!("{}{token}", slack::PATH_PREFIX)
}

fn slack_message(text: &str) -> Value {
    json!({
        "text": "fallback &lt;b&gt;",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Title"}},
            {"type": "section", "text": {"type": "plain_text", "text": text}},
        ]
    })
}

#[test]
fn slack_accepts_blocks_and_answers_ok() {
    let double = state(WebhookSettings::slack().limits(&[]));
    let (status, body, _) = send(
        &double,
        json_post(&slack_uri(TOKEN), &slack_message("<b> & *x*")),
        SystemTime::now(),
    );
    assert_eq!((status, body.as_str()), (200, "ok"));
    let text = lock(&double).requests[0].text.clone();
    assert_eq!(text.as_deref(), Some("Title\n<b> & *x*"));
    // Text alone is a message too, with Slack's escapes undone for the reader.
    let (status, _, _) = send(
        &double,
        json_post(&slack_uri(TOKEN), &json!({"text": "a &lt; b &amp;"})),
        SystemTime::now(),
    );
    assert_eq!(status, 200);
    assert_eq!(lock(&double).requests[1].text.as_deref(), Some("a < b &"));
}

#[test]
fn slack_refuses_like_slack() {
    let double = state(WebhookSettings::slack().limits(&[]));
    let now = SystemTime::now();
    let check = |request, expected: (u16, &str)| {
        let (status, body, _) = send(&double, request, now);
        assert_eq!((status, body.as_str()), expected);
    };
    check(
        json_post(&slack_uri("wrong"), &slack_message("x")),
        (403, "invalid_token"),
    );
    check(
        json_post(&slack_uri(TOKEN), &json!({"text": " "})),
        (400, "no_text"),
    );
    let blocks: Vec<Value> = (0..51).map(|_| json!({"type": "divider"})).collect();
    check(
        json_post(&slack_uri(TOKEN), &json!({"text": "x", "blocks": blocks})),
        (400, "invalid_blocks"),
    );
    let long = "x".repeat(151);
    check(
        json_post(
            &slack_uri(TOKEN),
            &json!({"blocks": [{"type": "header", "text": {"type": "plain_text", "text": long}}]}),
        ),
        (400, "invalid_blocks"),
    );
    check(
        post(&slack_uri(TOKEN), &[("content-type", "text/plain")], "x"),
        (400, "invalid_payload"),
    );
    check(
        post(
            &slack_uri(TOKEN),
            &[("content-type", "application/json")],
            "{nope",
        ),
        (400, "invalid_payload"),
    );
    assert!(lock(&double).requests.iter().all(|r| !r.accepted()));
}

#[test]
fn slack_throttles_the_second_message_in_a_second_with_retry_after() {
    let double = state(WebhookSettings {
        retry_after: 3,
        ..WebhookSettings::slack()
    });
    let now = SystemTime::now();
    let (status, _, _) = send(
        &double,
        json_post(&slack_uri(TOKEN), &slack_message("1")),
        now,
    );
    assert_eq!(status, 200);
    let (status, body, retry_after) = send(
        &double,
        json_post(&slack_uri(TOKEN), &slack_message("2")),
        now,
    );
    assert_eq!(
        (status, body.as_str(), retry_after.as_deref()),
        (429, "rate_limited", Some("3"))
    );
}

#[test]
fn injected_faults_and_a_removed_hook() {
    let double = state(WebhookSettings::slack().limits(&[]));
    let now = SystemTime::now();
    lock(&double).faults.push_back(Fault::ServerError);
    let (status, body, _) = send(
        &double,
        json_post(&slack_uri(TOKEN), &slack_message("x")),
        now,
    );
    assert_eq!((status, body.as_str()), (500, "rollup_error"));
    let (status, _, _) = send(
        &double,
        json_post(&slack_uri(TOKEN), &slack_message("x")),
        now,
    );
    assert_eq!(status, 200);
    lock(&double).removed = true;
    let (status, body, _) = send(
        &double,
        json_post(&slack_uri(TOKEN), &slack_message("x")),
        now,
    );
    assert_eq!((status, body.as_str()), (404, "no_service"));
    assert_eq!(lock(&double).requests[2].refused, Some(Fault::RemovedHook));
}

// ---- Teams ----

fn card(text: &str) -> Value {
    json!({"type": "message", "attachments": [{
        "contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": null,
        "content": {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard", "version": "1.2",
            "body": [{"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": text}]}]}}]})
}

#[test]
fn teams_takes_an_adaptive_card_with_202_and_the_query_byte_for_byte() {
    let double = state(WebhookSettings::teams());
    let now = SystemTime::now();
    let uri = format!("{}?{}", teams::PATH, teams::query(TOKEN));
    let (status, body, _) = send(&double, json_post(&uri, &card("hello <b>")), now);
    assert_eq!((status, body.as_str()), (202, ""));
    assert_eq!(lock(&double).requests[0].text.as_deref(), Some("hello <b>"));
    // The same query decoded (`/` for `%2F`) is another signature: refused.
    let decoded = uri.replace("%2F", "/");
    let (status, body, _) = send(&double, json_post(&decoded, &card("x")), now);
    assert_eq!(status, 401);
    assert!(body.contains("DirectApiAuthorizationRequired"), "{body}");
    let (status, body, _) = send(
        &double,
        json_post(&uri, &json!({"text": "legacy connector card"})),
        now,
    );
    assert_eq!(status, 400);
    assert!(body.contains("InvalidRequestContent"), "{body}");
    let big = card(&"x".repeat(30_000));
    let (status, _, _) = send(&double, json_post(&uri, &big), now);
    assert_eq!(status, 413);
}

// ---- Feishu ----

fn feishu_uri() -> String {
    format!("{}{TOKEN}", feishu::PATH_PREFIX)
}

fn feishu_signed(ts: u64, sign: &str) -> Value {
    json!({"timestamp": ts.to_string(), "sign": sign, "msg_type": "text", "content": {"text": "部署失败 <at>"}})
}

#[test]
fn feishu_checks_the_signature_and_answers_200_with_a_code() {
    let double = state(WebhookSettings::feishu().signed("demo-secret", GenericSignature::None));
    let now = at_seconds(VECTOR_SECONDS + 60);
    let good = "3/MaVZ8JLIy4TUG+7KSFJqvUkTKd+HWY8g+56DZWq8s=";
    let (status, body, _) = send(
        &double,
        json_post(&feishu_uri(), &feishu_signed(VECTOR_SECONDS, good)),
        now,
    );
    assert_eq!(status, 200);
    assert_eq!(code(&body, "code"), 0);
    assert_eq!(
        lock(&double).requests[0].text.as_deref(),
        Some("部署失败 <at>")
    );
    // The DingTalk-style computation, no signature, or a timestamp over an hour off.
    let wrong = "+y4hoW+2wrJQJ+Ccwm+K1OKBY3kTQ7fsX6PjcCKo06U=";
    for body in [
        feishu_signed(VECTOR_SECONDS, wrong),
        json!({"msg_type": "text", "content": {"text": "x"}}),
    ] {
        let (status, answer, _) = send(&double, json_post(&feishu_uri(), &body), now);
        assert_eq!((status, code(&answer, "code")), (200, 19021));
    }
    let late = at_seconds(VECTOR_SECONDS + 3601);
    let (status, answer, _) = send(
        &double,
        json_post(&feishu_uri(), &feishu_signed(VECTOR_SECONDS, good)),
        late,
    );
    assert_eq!((status, code(&answer, "code")), (200, 19021));
}

#[test]
fn feishu_refusals_are_codes_in_a_200() {
    let double = state(WebhookSettings::feishu().limits(&[(1, Duration::from_secs(60))]));
    let now = SystemTime::now();
    let post_message = json!({"msg_type": "post", "content": {"post": {"zh_cn": {"title": "T", "content": [[{"tag": "text", "text": "a"}, {"tag": "text", "text": "b"}]]}}}});
    let (_, answer, _) = send(&double, json_post(&feishu_uri(), &post_message), now);
    assert_eq!(code(&answer, "code"), 0);
    assert_eq!(lock(&double).requests[0].text.as_deref(), Some("T\nab"));
    let cases = [
        (
            json_post(&feishu_uri(), &json!({"msg_type": "text1", "content": {}})),
            10208,
        ),
        (json_post(&feishu_uri(), &json!({"msg_type": "text"})), 9499),
        (
            json_post(&format!("{}other", feishu::PATH_PREFIX), &post_message),
            19001,
        ),
        (json_post(&feishu_uri(), &post_message), 11232),
    ];
    for (request, expected) in cases {
        let (status, answer, _) = send(&double, request, now);
        assert_eq!((status, code(&answer, "code")), (200, expected), "{answer}");
    }
}

// ---- DingTalk ----

fn dingtalk_uri(token: &str, signature: Option<(&str, &str)>) -> String {
    let mut uri = format!("{}?access_token={token}", dingtalk::PATH);
    if let Some((ts, sign)) = signature {
        uri.push_str(&format!("&timestamp={ts}&sign={sign}"));
    }
    uri
}

fn dingtalk_text(text: &str) -> Value {
    json!({"msgtype": "text", "text": {"content": text}, "at": {"isAtAll": false}})
}

#[test]
fn dingtalk_checks_the_signed_query() {
    let double = state(WebhookSettings::dingtalk().signed("SECdemo", GenericSignature::None));
    let now = at_seconds(VECTOR_SECONDS + 10);
    let ts = "1599360473000";
    let encoded = "tGWkA5eQOQNCNPDgphtxIoNLO%2B%2FgD8Lcb705KQoRzeY%3D";
    let (status, answer, _) = send(
        &double,
        json_post(
            &dingtalk_uri(TOKEN, Some((ts, encoded))),
            &dingtalk_text("告警 & <x>"),
        ),
        now,
    );
    assert_eq!((status, code(&answer, "errcode")), (200, 0));
    assert_eq!(
        lock(&double).requests[0].text.as_deref(),
        Some("告警 & <x>")
    );
    let raw = "tGWkA5eQOQNCNPDgphtxIoNLO+/gD8Lcb705KQoRzeY=";
    let (_, answer, _) = send(
        &double,
        json_post(&dingtalk_uri(TOKEN, Some((ts, raw))), &dingtalk_text("x")),
        now,
    );
    assert_eq!(code(&answer, "errcode"), 310000);
    assert!(answer.contains("sign not match"), "{answer}");
    let late = at_seconds(VECTOR_SECONDS + 3700);
    let (_, answer, _) = send(
        &double,
        json_post(
            &dingtalk_uri(TOKEN, Some((ts, encoded))),
            &dingtalk_text("x"),
        ),
        late,
    );
    assert!(answer.contains("invalid timestamp"), "{answer}");
    let (_, answer, _) = send(
        &double,
        json_post(
            &dingtalk_uri("revoked", Some((ts, encoded))),
            &dingtalk_text("x"),
        ),
        now,
    );
    assert_eq!(code(&answer, "errcode"), 300005);
    let (_, answer, _) = send(
        &double,
        json_post(
            &dingtalk_uri(TOKEN, Some((ts, encoded))),
            &json!({"msgtype": "bogus"}),
        ),
        now,
    );
    assert_eq!(code(&answer, "errcode"), 300001);
    let huge = dingtalk_text(&"x".repeat(20_001));
    let (_, answer, _) = send(
        &double,
        json_post(&dingtalk_uri(TOKEN, Some((ts, encoded))), &huge),
        now,
    );
    assert_eq!(code(&answer, "errcode"), 460101);
}

#[test]
fn dingtalk_throttles_for_its_penalty_after_the_limit() {
    let double = state(WebhookSettings {
        penalty: Duration::from_secs(600),
        ..WebhookSettings::dingtalk().limits(&[(2, Duration::from_secs(60))])
    });
    let now = SystemTime::now();
    let start = Instant::now();
    let at = |seconds: u64| start + Duration::from_secs(seconds);
    let request = || json_post(&dingtalk_uri(TOKEN, None), &dingtalk_text("x"));
    let codes: Vec<i64> = [0, 1, 2, 100, 603, 605]
        .into_iter()
        .map(|s| {
            code(
                &answer_text(&handle_at(&double, request(), at(s), now)),
                "errcode",
            )
        })
        .collect();
    // Two pass; the third is over the limit and starts ten minutes of throttling,
    // through which even a post outside the window is refused.
    assert_eq!(codes, [0, 0, 130101, 130101, 0, 0]);
}

// ---- WeCom ----

#[test]
fn wecom_checks_its_key_and_content_length() {
    let double = state(WebhookSettings::wecom().limits(&[]));
    let now = SystemTime::now();
    let uri = |key: &str| format!("{}?key={key}", wecom::PATH);
    let text = |content: &str| json!({"msgtype": "text", "text": {"content": content}});
    let (_, answer, _) = send(
        &double,
        json_post(&uri(TOKEN), &text(&"好".repeat(682))),
        now,
    );
    assert_eq!(code(&answer, "errcode"), 0);
    let cases = [
        (json_post(&uri(TOKEN), &text(&"好".repeat(683))), 40058),
        (json_post(&uri("other"), &text("x")), 93000),
        (
            json_post(&uri(TOKEN), &json!({"msgtype": "sticker"})),
            40008,
        ),
    ];
    for (request, expected) in cases {
        let (status, answer, _) = send(&double, request, now);
        assert_eq!(
            (status, code(&answer, "errcode")),
            (200, expected),
            "{answer}"
        );
    }
}

// ---- generic ----

fn hmac_base64(key: &[u8], message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(message);
    STANDARD.encode(mac.finalize().into_bytes())
}

#[test]
fn the_generic_receiver_checks_standard_webhooks() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let double = state(WebhookSettings::generic().signed(secret, GenericSignature::Standard));
    let now = SystemTime::now();
    let ts = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let key = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let body = br#"{"events":[]}"#;
    let signed = |id: &str, ts: &str, key: &[u8]| {
        let signature = format!(
            "v1,{}",
            hmac_base64(key, format!("{id}.{ts}.{{\"events\":[]}}").as_bytes())
        );
        post(
            &format!("{}{TOKEN}", generic::PATH_PREFIX),
            &[
                ("webhook-id", id),
                ("webhook-timestamp", ts),
                ("webhook-signature", &signature),
                ("content-type", "application/json"),
            ],
            body.to_vec(),
        )
    };
    assert_eq!(send(&double, signed("msg_1", &ts, &key), now).0, 200);
    assert_eq!(send(&double, signed("msg_1", &ts, &key), now).0, 200);
    assert_eq!(
        send(&double, signed("msg_2", &ts, b"another key"), now).0,
        401
    );
    let old = (now - Duration::from_secs(301))
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    assert_eq!(send(&double, signed("msg_3", &old, &key), now).0, 401);
    // The same webhook-id twice: a re-send.
    assert_eq!(duplicate_ids(&lock(&double).requests), 1);
}

#[test]
fn the_generic_receiver_checks_github_signatures_and_answers_410_when_removed() {
    let double = state(
        WebhookSettings::generic().signed("It's a Secret to Everybody", GenericSignature::GitHub),
    );
    let now = SystemTime::now();
    let uri = format!("{}{TOKEN}", generic::PATH_PREFIX);
    let request = |signature: &str| {
        post(
            &uri,
            &[("x-hub-signature-256", signature)],
            "\"Hello, World!\"".to_owned(),
        )
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(b"It's a Secret to Everybody").unwrap();
    mac.update(b"\"Hello, World!\"");
    let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(send(&double, request(&good), now).0, 200);
    assert_eq!(send(&double, request("sha256=00"), now).0, 401);
    lock(&double).removed = true;
    assert_eq!(send(&double, request(&good), now).0, 410);
}

// ---- over HTTP ----

#[test]
fn serves_real_http_and_records_what_it_got() {
    let double = WebhookDouble::start(WebhookSettings::wecom().limits(&[])).unwrap();
    let url = double.url();
    assert!(
        url.ends_with(&format!("/cgi-bin/webhook/send?key={TOKEN}")),
        "{url}"
    );
    let target = url.trim_start_matches(&double.base_url()).to_owned();
    let body = json!({"msgtype": "text", "text": {"content": "over http"}}).to_string();
    let request = format!(
        "POST {target} HTTP/1.1\r\nHost: wecom\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = std::net::TcpStream::connect(double.server.address()).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.ends_with(r#"{"errcode":0,"errmsg":"ok"}"#),
        "{answer}"
    );
    assert_eq!(double.texts(), ["over http"]);
    let received = &double.requests()[0];
    assert_eq!(received.query.as_deref(), Some(&*format!("key={TOKEN}")));
    assert_eq!(received.header("Content-Type"), Some("application/json"));
    assert_eq!(received.status, 200);
    assert_eq!(double.most_in_window(Duration::from_secs(1)), 1);
}
