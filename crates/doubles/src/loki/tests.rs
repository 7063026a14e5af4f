//! The double refuses what Loki refuses: each test pushes straight into the handler (no
//! socket) at a fixed clock, except the last ones, which go over real HTTP.

use super::*;
use http_body_util::BodyExt;
use prost::Message as _;
use serde_json::json;
use std::io::Write as _;

/// 2024-06-10T06:13:20Z.
const NOW: i64 = 1_718_000_000_000_000_000;
const SECOND: i64 = 1_000_000_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

fn loki() -> State {
    State::new(LokiSettings::default())
}

fn loki_with(limits: LokiLimits) -> State {
    State::new(LokiSettings {
        auth_enabled: false,
        limits,
    })
}

fn request(
    content_type: Option<&str>,
    encoding: Option<&str>,
    tenant: Option<&str>,
    body: Vec<u8>,
) -> Request<Bytes> {
    let mut builder = Request::builder().method(Method::POST).uri(PUSH_PATH);
    if let Some(content_type) = content_type {
        builder = builder.header(CONTENT_TYPE, content_type);
    }
    if let Some(encoding) = encoding {
        builder = builder.header(CONTENT_ENCODING, encoding);
    }
    if let Some(tenant) = tenant {
        builder = builder.header("X-Scope-OrgID", tenant);
    }
    builder.body(Bytes::from(body)).unwrap()
}

fn json_push(body: serde_json::Value) -> Request<Bytes> {
    request(
        Some("application/json"),
        None,
        None,
        body.to_string().into_bytes(),
    )
}

fn entry(ts: i64, line: &str) -> proto::EntryAdapter {
    proto::EntryAdapter {
        timestamp: Some(proto::Timestamp {
            seconds: ts.div_euclid(SECOND),
            nanos: i32::try_from(ts.rem_euclid(SECOND)).unwrap(),
        }),
        line: line.to_owned(),
        structured_metadata: Vec::new(),
        parsed: Vec::new(),
    }
}

fn stream(labels: &str, entries: Vec<proto::EntryAdapter>) -> proto::StreamAdapter {
    proto::StreamAdapter {
        labels: labels.to_owned(),
        entries,
        hash: 0,
    }
}

fn snappy_proto(streams: Vec<proto::StreamAdapter>) -> Vec<u8> {
    let raw = proto::PushRequest {
        streams,
        format: String::new(),
    }
    .encode_to_vec();
    snap::raw::Encoder::new().compress_vec(&raw).unwrap()
}

fn proto_push(streams: Vec<proto::StreamAdapter>) -> Request<Bytes> {
    request(
        Some("application/x-protobuf"),
        None,
        None,
        snappy_proto(streams),
    )
}

/// Status and body of an answer.
fn read(answer: Answer) -> (u16, String) {
    let status = answer.status().as_u16();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let body = runtime
        .block_on(answer.into_body().collect())
        .unwrap()
        .to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn push(loki: &mut State, request: Request<Bytes>) -> (u16, String) {
    read(loki.handle(&request, NOW))
}

/// (tenant, label string, timestamp, line) of every stored entry.
fn stored(loki: &State) -> Vec<(String, String, i64, String)> {
    loki.streams
        .iter()
        .flat_map(|((tenant, labels), s)| {
            s.entries.iter().map(move |e| {
                (
                    tenant.clone(),
                    labels.clone(),
                    e.timestamp_ns,
                    e.line.clone(),
                )
            })
        })
        .collect()
}

fn lines(loki: &State) -> Vec<String> {
    stored(loki)
        .into_iter()
        .map(|(_, _, _, line)| line)
        .collect()
}

#[test]
fn protobuf_with_snappy_is_stored_with_labels_timestamps_and_metadata() {
    let mut loki = loki();
    let mut first = entry(NOW - MINUTE + 123, "one");
    first.structured_metadata.push(proto::LabelPairAdapter {
        name: "service_id".to_owned(),
        value: "svc-42".to_owned(),
    });
    let push_request = proto_push(vec![stream(
        "{service_name=\"billing\", event_type=\"normal\"}",
        vec![first, entry(NOW, "two")],
    )]);
    assert_eq!(push(&mut loki, push_request), (204, String::new()));
    assert_eq!(
        stored(&loki),
        vec![
            (
                "fake".to_owned(),
                "{event_type=\"normal\", service_name=\"billing\"}".to_owned(),
                NOW - MINUTE + 123,
                "one".to_owned()
            ),
            (
                "fake".to_owned(),
                "{event_type=\"normal\", service_name=\"billing\"}".to_owned(),
                NOW,
                "two".to_owned()
            ),
        ]
    );
    let stream = loki.streams.values().next().unwrap();
    assert_eq!(
        stream.entries[0].structured_metadata,
        BTreeMap::from([("service_id".to_owned(), "svc-42".to_owned())])
    );
    assert!(stream.entries[1].structured_metadata.is_empty());
}

#[test]
fn json_plain_gzip_and_deflate_are_stored_alike() {
    let body = json!({"streams": [{
        "stream": {"service_name": "billing", "event_type": "abnormal"},
        "values": [
            [(NOW - SECOND).to_string(), "{\"a\":1}"],
            [NOW.to_string(), "line", {"service_id": "svc-42"}],
        ]
    }]});
    let mut plain = loki();
    assert_eq!(push(&mut plain, json_push(body.clone())).0, 204);

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.to_string().as_bytes()).unwrap();
    let mut gzipped = loki();
    let answer = push(
        &mut gzipped,
        request(
            Some("application/json; charset=utf-8"),
            Some("gzip"),
            None,
            gz.finish().unwrap(),
        ),
    );
    assert_eq!(answer.0, 204);

    let mut df = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    df.write_all(body.to_string().as_bytes()).unwrap();
    let mut deflated = loki();
    let answer = push(
        &mut deflated,
        request(
            Some("application/json"),
            Some("deflate"),
            None,
            df.finish().unwrap(),
        ),
    );
    assert_eq!(answer.0, 204);

    assert_eq!(stored(&plain).len(), 2);
    assert_eq!(stored(&plain), stored(&gzipped));
    assert_eq!(stored(&plain), stored(&deflated));
    assert_eq!(stored(&plain)[1].2, NOW);
    let metadata = &plain.streams.values().next().unwrap().entries[1].structured_metadata;
    assert_eq!(
        metadata.get("service_id").map(String::as_str),
        Some("svc-42")
    );
}

#[test]
fn tenancy_needs_a_valid_org_id() {
    let mut loki = State::new(LokiSettings {
        auth_enabled: true,
        limits: LokiLimits::default(),
    });
    let body = || snappy_proto(vec![stream("{job=\"x\"}", vec![entry(NOW, "l")])]);
    let proto = Some("application/x-protobuf");
    assert_eq!(
        push(&mut loki, request(proto, None, None, body())),
        (401, "no org id\n".to_owned())
    );
    assert_eq!(
        push(&mut loki, request(proto, None, Some(""), body())),
        (401, "no org id\n".to_owned())
    );
    let (status, text) = push(&mut loki, request(proto, None, Some("team a"), body()));
    assert_eq!(status, 400);
    assert_eq!(
        text,
        "tenant ID 'team a' contains unsupported character ' '\n"
    );
    assert_eq!(
        push(&mut loki, request(proto, None, Some("a|b"), body())).0,
        400
    );
    assert_eq!(
        push(&mut loki, request(proto, None, Some(".."), body())).0,
        400
    );
    assert!(stored(&loki).is_empty());

    assert_eq!(
        push(&mut loki, request(proto, None, Some("team-a"), body())).0,
        204
    );
    assert_eq!(
        push(&mut loki, request(proto, None, Some("team_b"), body())).0,
        204
    );
    let tenants: Vec<String> = stored(&loki).into_iter().map(|e| e.0).collect();
    assert_eq!(tenants, ["team-a", "team_b"]);
    // The same entry under two tenants is no duplicate.
    assert_eq!(loki.duplicates, 0);

    // Without auth the header is ignored.
    let mut single = self::loki();
    assert_eq!(
        push(&mut single, request(proto, None, Some("team-a"), body())).0,
        204
    );
    assert_eq!(stored(&single)[0].0, "fake");
}

#[test]
fn content_type_and_encoding_are_checked() {
    let mut loki = loki();
    let body = || snappy_proto(vec![stream("{job=\"x\"}", vec![entry(NOW, "l")])]);
    assert_eq!(
        push(&mut loki, request(None, None, None, body())),
        (400, "mime: no media type\n".to_owned())
    );
    assert_eq!(
        push(&mut loki, request(Some("protobuf"), None, None, body())).0,
        400
    );
    let (status, text) = push(
        &mut loki,
        request(Some("application/x-protobuf"), Some("br"), None, body()),
    );
    assert_eq!(
        (status, text.as_str()),
        (400, "Content-Encoding \"br\" not supported\n")
    );
    // A typo in the JSON type makes it protobuf, which this is not.
    let json = json!({"streams": [{"stream": {"job": "x"}, "values": [[NOW.to_string(), "l"]]}]});
    let (status, _) = push(
        &mut loki,
        request(
            Some("application/jsonn"),
            None,
            None,
            json.to_string().into_bytes(),
        ),
    );
    assert_eq!(status, 400);
    // JSON is never snappy.
    let (status, _) = push(
        &mut loki,
        request(
            Some("application/json"),
            Some("snappy"),
            None,
            json.to_string().into_bytes(),
        ),
    );
    assert_eq!(status, 400);
    // Protobuf that is not snappy-compressed.
    let raw = proto::PushRequest {
        streams: vec![stream("{job=\"x\"}", vec![entry(NOW, "l")])],
        format: String::new(),
    }
    .encode_to_vec();
    assert_eq!(
        push(
            &mut loki,
            request(Some("application/x-protobuf"), None, None, raw)
        )
        .0,
        400
    );
    // `Content-Encoding: snappy` on protobuf is accepted and ignored.
    assert_eq!(
        push(
            &mut loki,
            request(Some("application/x-protobuf"), Some("snappy"), None, body())
        )
        .0,
        204
    );
    assert_eq!(stored(&loki).len(), 1);
}

#[test]
fn json_is_strict_about_timestamps_lines_and_metadata() {
    let refused = |values: serde_json::Value| {
        let mut loki = loki();
        let (status, _) = push(
            &mut loki,
            json_push(json!({"streams": [{"stream": {"job": "x"}, "values": values}]})),
        );
        assert!(stored(&loki).is_empty());
        status
    };
    // A number, not a string of nanoseconds.
    assert_eq!(refused(json!([[NOW, "l"]])), 400);
    assert_eq!(refused(json!([["0171", "l"]])), 400);
    assert_eq!(refused(json!([["1.5", "l"]])), 400);
    assert_eq!(refused(json!([["17e9", "l"]])), 400);
    assert_eq!(refused(json!([["99999999999999999999", "l"]])), 400);
    assert_eq!(refused(json!([[NOW.to_string(), 5]])), 400);
    assert_eq!(refused(json!([[NOW.to_string(), "l", ["a"]]])), 400);
    assert_eq!(refused(json!([[NOW.to_string(), "l", {"a": 1}]])), 400);
    assert_eq!(refused(json!([[NOW.to_string()]])), 400);
    // One bad entry refuses the whole push: nothing of it is stored.
    assert_eq!(refused(json!([[NOW.to_string(), "ok"], [NOW, "bad"]])), 400);
    // A fourth element is ignored.
    let mut loki = loki();
    let values = json!([[NOW.to_string(), "l", {"a": "b"}, "extra"]]);
    assert_eq!(
        push(
            &mut loki,
            json_push(json!({"streams": [{"stream": {"job": "x"}, "values": values}]}))
        )
        .0,
        204
    );
}

#[test]
fn stream_keys_must_be_label_names() {
    let mut loki = loki();
    let (status, text) = push(
        &mut loki,
        json_push(json!({"streams": [
            {"stream": {"job": "x"}, "values": [[NOW.to_string(), "kept?"]]},
            {"stream": {"service-id": "x"}, "values": [[NOW.to_string(), "l"]]},
        ]})),
    );
    assert_eq!(status, 400);
    assert!(text.starts_with("couldn't parse labels: "), "{text}");
    // The parse stage refuses the whole push.
    assert!(stored(&loki).is_empty());

    let (status, text) = push(
        &mut loki,
        proto_push(vec![stream("{service.id=\"x\"}", vec![entry(NOW, "l")])]),
    );
    assert_eq!(status, 400);
    assert!(text.starts_with("couldn't parse labels: 1:"), "{text}");
    let (status, _) = push(
        &mut loki,
        proto_push(vec![stream("{job=\"x}", vec![entry(NOW, "l")])]),
    );
    assert_eq!(status, 400);
}

#[test]
fn a_push_without_streams_is_422() {
    let mut loki = loki();
    let (status, text) = push(&mut loki, json_push(json!({"streams": []})));
    assert_eq!(
        (status, text.as_str()),
        (
            422,
            "error at least one valid stream is required for ingestion\n"
        )
    );
    assert_eq!(push(&mut loki, proto_push(Vec::new())).0, 422);
}

#[test]
fn invalid_entries_are_refused_and_valid_ones_of_the_same_push_kept() {
    let mut loki = loki_with(LokiLimits {
        max_line_size: 10,
        ..LokiLimits::default()
    });
    let labels = "{job=\"x\"}";
    let (status, text) = push(
        &mut loki,
        proto_push(vec![stream(
            labels,
            vec![
                entry(NOW - 8 * DAY, "too old"),
                entry(NOW - HOUR, "valid 1"),
                entry(NOW + 11 * MINUTE, "too new"),
                entry(NOW - MINUTE, "far too long a line"),
                entry(NOW + 9 * MINUTE, "valid 2"),
            ],
        )]),
    );
    assert_eq!(status, 400);
    assert_eq!(lines(&loki), ["valid 1", "valid 2"]);
    assert_eq!(loki.rejected, 3);
    assert!(text.ends_with('\n'));
    let groups: Vec<&str> = text.trim_end().split("; ").collect();
    assert_eq!(groups.len(), 3, "{text}");
    assert!(groups.contains(&"entry for stream '{job=\"x\"}' has timestamp too old: 2024-06-02T06:13:20Z, oldest acceptable timestamp is: 2024-06-03T06:13:20Z"), "{text}");
    assert!(
        groups.contains(
            &"entry for stream '{job=\"x\"}' has timestamp too new: 2024-06-10T06:24:20Z"
        ),
        "{text}"
    );
    assert!(groups.contains(&"max entry size '10' bytes exceeded for stream '{job=\"x\"}' while adding an entry with length '19' bytes"), "{text}");
}

#[test]
fn identical_errors_are_grouped() {
    let mut loki = loki_with(LokiLimits {
        max_line_size: 1,
        ..LokiLimits::default()
    });
    let entries = (0..5).map(|i| entry(NOW - i, "0123456789")).collect();
    let (status, text) = push(
        &mut loki,
        proto_push(vec![stream("{foo=\"bar\"}", entries)]),
    );
    assert_eq!(status, 400);
    assert_eq!(
        text,
        "5 errors like: max entry size '1' bytes exceeded for stream '{foo=\"bar\"}' while adding an entry with length '10' bytes\n"
    );
    assert!(stored(&loki).is_empty());
}

#[test]
fn stream_labels_are_validated() {
    let mut loki = loki_with(LokiLimits {
        max_label_names_per_series: 2,
        max_label_name_length: 12,
        max_label_value_length: 5,
        ..LokiLimits::default()
    });
    let mut refuse = |labels: &str| {
        let (status, text) = push(
            &mut loki,
            proto_push(vec![
                stream(labels, vec![entry(NOW, "refused")]),
                stream("{ok=\"yes\"}", vec![entry(NOW, "kept")]),
            ]),
        );
        assert_eq!(status, 400, "{labels}");
        text
    };
    assert_eq!(
        refuse("{a=\"1\", b=\"2\", c=\"3\"}"),
        "entry for stream '{a=\"1\", b=\"2\", c=\"3\"}' has 3 label names; limit 2\n"
    );
    assert_eq!(
        refuse("{much_too_long_name=\"1\"}"),
        "stream '{much_too_long_name=\"1\"}' has label name too long: 'much_too_long_name'\n"
    );
    assert_eq!(
        refuse("{a=\"123456\"}"),
        "stream '{a=\"123456\"}' has label value too long: '123456'\n"
    );
    assert_eq!(
        refuse("{a=\"1\", a=\"2\"}"),
        "stream '{a=\"1\", a=\"2\"}' has duplicate label name: 'a'\n"
    );
    // Empty values are dropped, and a stream needs one label left.
    assert_eq!(
        refuse("{a=\"\"}"),
        "error at least one label pair is required per stream\n"
    );
    // `service_name` does not count toward the limit.
    let (status, _) = push(
        &mut loki,
        proto_push(vec![stream(
            "{a=\"1\", b=\"2\", service_name=\"s\", empty=\"\"}",
            vec![entry(NOW, "three names")],
        )]),
    );
    assert_eq!(status, 204);
    assert_eq!(loki.rejected, 5);
    let streams: Vec<String> = stored(&loki).into_iter().map(|e| e.1).collect();
    assert_eq!(
        streams,
        [
            "{a=\"1\", b=\"2\", service_name=\"s\"}",
            "{ok=\"yes\", service_name=\"unknown_service\"}"
        ]
    );
    assert_eq!(lines(&loki), ["three names", "kept"]);
}

#[test]
fn service_name_is_discovered_like_loki() {
    let mut loki = loki();
    let answer = push(
        &mut loki,
        json_push(json!({"streams": [
            {"stream": {"app": "billing", "env": "prod"}, "values": [[NOW.to_string(), "l"]]},
        ]})),
    );
    assert_eq!(answer.0, 204);
    assert_eq!(
        stored(&loki)[0].1,
        "{app=\"billing\", env=\"prod\", service_name=\"billing\"}"
    );
}

#[test]
fn entries_too_far_behind_their_stream_are_refused() {
    let mut loki = loki();
    let labels = "{job=\"x\"}";
    assert_eq!(
        push(
            &mut loki,
            proto_push(vec![stream(labels, vec![entry(NOW, "newest")])])
        )
        .0,
        204
    );
    let (status, text) = push(
        &mut loki,
        proto_push(vec![
            stream(
                labels,
                vec![
                    entry(NOW - 2 * HOUR, "behind"),
                    entry(NOW - 30 * MINUTE, "inside the window"),
                ],
            ),
            // Another stream has its own window.
            stream("{job=\"y\"}", vec![entry(NOW - 2 * HOUR, "other stream")]),
        ]),
    );
    assert_eq!(status, 400);
    assert_eq!(
        text,
        "entry with timestamp 2024-06-10 04:13:20 +0000 UTC ignored, reason: 'entry too far behind, \
         entry timestamp is: 2024-06-10T04:13:20Z, oldest acceptable timestamp is: 2024-06-10T05:13:20Z',\n\
         user 'fake', total ignored: 1 out of 2 for stream: {job=\"x\", service_name=\"x\"}\n"
    );
    let mut kept = lines(&loki);
    kept.sort();
    assert_eq!(kept, ["inside the window", "newest", "other stream"]);

    // The window is checked before duplicates are dropped: an exact copy of a stored entry
    // that has fallen behind is refused, not dropped.
    let z = "{job=\"z\"}";
    let mut one = |ts: i64, line: &str| {
        push(
            &mut loki,
            proto_push(vec![stream(z, vec![entry(ts, line)])]),
        )
        .0
    };
    assert_eq!(one(NOW - 3 * HOUR, "old"), 204);
    assert_eq!(one(NOW, "new"), 204);
    assert_eq!(one(NOW - 3 * HOUR, "old"), 400);
    assert_eq!(loki.duplicates, 0);
}

#[test]
fn exact_duplicates_are_dropped_silently() {
    let mut loki = loki();
    let push_once = |loki: &mut State| {
        push(
            loki,
            proto_push(vec![stream(
                "{job=\"x\"}",
                vec![
                    entry(NOW - 2 * SECOND, "a"),
                    entry(NOW - SECOND, "b"),
                    entry(NOW, "c"),
                ],
            )]),
        )
    };
    assert_eq!(push_once(&mut loki).0, 204);
    assert_eq!(push_once(&mut loki), (204, String::new()));
    assert_eq!(loki.duplicates, 3);
    assert_eq!(lines(&loki), ["a", "b", "c"]);
    // Same timestamp, another line: both kept. Same line, another timestamp: both kept.
    let (status, _) = push(
        &mut loki,
        json_push(json!({"streams": [{"stream": {"job": "x"}, "values": [
            [NOW.to_string(), "c twin"],
            [(NOW - SECOND + 1).to_string(), "b"],
        ]}]})),
    );
    assert_eq!(status, 204);
    assert_eq!(lines(&loki), ["a", "b", "c", "c twin", "b"]);
    assert_eq!(loki.duplicates, 3);
    // A copy in JSON of an entry pushed as protobuf is the same entry.
    let (status, _) = push(
        &mut loki,
        json_push(
            json!({"streams": [{"stream": {"job": "x"}, "values": [[NOW.to_string(), "c"]]}]}),
        ),
    );
    assert_eq!(status, 204);
    assert_eq!(loki.duplicates, 4);
}

#[test]
fn faults_answer_the_next_pushes_then_stop() {
    let mut loki = loki();
    loki.faults.extend(
        [
            LokiFault::TooManyRequests {
                retry_after: Some(7),
            },
            LokiFault::InternalError,
            LokiFault::Unavailable,
            LokiFault::Blocked,
            LokiFault::TooLarge,
        ]
        .map(Some),
    );
    let body = || proto_push(vec![stream("{job=\"x\"}", vec![entry(NOW, "l")])]);
    let answer = loki.handle(&body(), NOW);
    assert_eq!(answer.status().as_u16(), 429);
    assert_eq!(answer.headers().get(RETRY_AFTER).unwrap(), "7");
    assert_eq!(push(&mut loki, body()).0, 500);
    assert_eq!(
        push(&mut loki, body()),
        (503, "circuit breaker open, request denied\n".to_owned())
    );
    assert_eq!(push(&mut loki, body()).0, 260);
    assert_eq!(push(&mut loki, body()).0, 413);
    assert!(stored(&loki).is_empty());
    assert_eq!(push(&mut loki, body()).0, 204);
    assert_eq!(loki.statuses, [429, 500, 503, 260, 413, 204]);
    assert_eq!(loki.pushes, 6);
}

#[test]
fn a_push_over_the_burst_stores_nothing() {
    let mut loki = loki_with(LokiLimits {
        ingestion_burst_size: Some(10),
        ..LokiLimits::default()
    });
    let (status, text) = push(
        &mut loki,
        proto_push(vec![stream(
            "{job=\"x\"}",
            vec![entry(NOW - 1, "123456"), entry(NOW, "7890ab")],
        )]),
    );
    assert_eq!(status, 429);
    assert!(text.contains("'2' lines totaling '12' bytes"), "{text}");
    assert!(stored(&loki).is_empty());
    assert_eq!(
        push(
            &mut loki,
            proto_push(vec![stream("{job=\"x\"}", vec![entry(NOW, "123")])])
        )
        .0,
        204
    );
}

/// `n` letters that snappy cannot shrink much.
fn noise(n: usize) -> String {
    let mut x: u32 = 12345;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            char::from(b'a' + u8::try_from((x >> 16) % 26).unwrap())
        })
        .collect()
}

#[test]
fn bodies_over_the_limit_are_413() {
    let mut loki = loki_with(LokiLimits {
        max_request_bytes: 64,
        ..LokiLimits::default()
    });
    let (status, text) = push(
        &mut loki,
        proto_push(vec![stream("{job=\"x\"}", vec![entry(NOW, &noise(200))])]),
    );
    assert_eq!(status, 413, "{text}");
    assert!(text.starts_with("request body too large"), "{text}");
}

#[test]
fn structured_metadata_limits() {
    let mut loki = loki_with(LokiLimits {
        max_structured_metadata_entries_count: 1,
        ..LokiLimits::default()
    });
    let values = json!([[NOW.to_string(), "l", {"a": "1", "b": "2"}]]);
    let (status, text) = push(
        &mut loki,
        json_push(json!({"streams": [{"stream": {"job": "x"}, "values": values}]})),
    );
    assert_eq!(status, 400);
    assert!(
        text.contains("too many structured metadata labels: '2', limit: '1'"),
        "{text}"
    );
    let mut refusing = loki_with(LokiLimits {
        allow_structured_metadata: false,
        ..LokiLimits::default()
    });
    let values = json!([[NOW.to_string(), "l", {"a": "1"}]]);
    let (status, text) = push(
        &mut refusing,
        json_push(json!({"streams": [{"stream": {"job": "x"}, "values": values}]})),
    );
    assert_eq!(status, 400);
    assert!(text.contains("feature is disallowed"), "{text}");
}

#[test]
fn ready_and_routes() {
    let mut loki = loki();
    let get = |path: &str| {
        Request::builder()
            .method(Method::GET)
            .uri(path)
            .body(Bytes::new())
            .unwrap()
    };
    assert_eq!(
        read(loki.handle(&get("/ready"), NOW)),
        (200, "ready\n".to_owned())
    );
    loki.ready = false;
    assert_eq!(read(loki.handle(&get("/ready"), NOW)).0, 503);
    assert_eq!(read(loki.handle(&get(PUSH_PATH), NOW)).0, 405);
    assert_eq!(read(loki.handle(&get("/loki/api/v1/query"), NOW)).0, 404);
    assert_eq!(loki.pushes, 0);
}

#[test]
fn label_strings_round_trip_with_go_escapes() {
    let labels = vec![
        (
            "a".to_owned(),
            "quote \" back \\ nl \n tab \t bell \u{7} esc \u{1b} 部署".to_owned(),
        ),
        ("b".to_owned(), "x".to_owned()),
    ];
    let text = label_string(&labels);
    assert_eq!(
        text,
        "{a=\"quote \\\" back \\\\ nl \\n tab \\t bell \\a esc \\x1b 部署\", b=\"x\"}"
    );
    assert_eq!(parse_labels(&text).unwrap(), labels);
    assert_eq!(
        parse_labels(" { a = 'x' , b=`y\\n` } ").unwrap(),
        vec![
            ("a".to_owned(), "x".to_owned()),
            ("b".to_owned(), "y\\n".to_owned())
        ]
    );
    assert_eq!(parse_labels("{a=\"\\u00e9\\101\"}").unwrap()[0].1, "éA");
    assert_eq!(parse_labels("{}").unwrap(), Vec::new());
    for bad in [
        "",
        "a=\"b\"",
        "{a=\"b\"",
        "{a=b}",
        "{1a=\"b\"}",
        "{a=\"b\" c=\"d\"}",
        "{a=\"\\q\"}",
        "{a=\"b\"} x",
    ] {
        assert!(parse_labels(bad).is_err(), "{bad}");
    }
}

#[test]
fn times_print_as_go_prints_them() {
    assert_eq!(rfc3339(NOW), "2024-06-10T06:13:20Z");
    assert_eq!(go_time(NOW), "2024-06-10 06:13:20 +0000 UTC");
    assert_eq!(
        go_time(NOW + 123_000_000),
        "2024-06-10 06:13:20.123 +0000 UTC"
    );
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(-SECOND), "1969-12-31T23:59:59Z");
    // 2000-02-29, a leap day of a century year.
    assert_eq!(rfc3339(951_782_400 * SECOND), "2000-02-29T00:00:00Z");
}

/// One raw HTTP/1.1 exchange with `Connection: close`; the status line's code.
fn exchange(address: SocketAddr, request: &[u8]) -> io::Result<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.write_all(request)?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, answer))
}

fn raw_push(body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {PUSH_PATH} HTTP/1.1\r\nHost: loki\r\nContent-Type: application/x-protobuf\r\n\
         X-Scope-OrgID: t1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

#[test]
fn serves_real_http_and_goes_down_and_up_on_the_same_port() {
    let double = LokiDouble::with(LokiSettings {
        auth_enabled: true,
        limits: LokiLimits::default(),
    })
    .unwrap();
    let now = now_ns();
    let body = snappy_proto(vec![stream("{job=\"x\"}", vec![entry(now, "over http")])]);
    let (status, _) = exchange(double.address, &raw_push(&body)).unwrap();
    assert_eq!(status, 204);
    assert_eq!(double.last_header("x-scope-orgid").as_deref(), Some("t1"));
    let entries = double.entries_of("t1");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].line, "over http");
    assert_eq!(entries[0].timestamp_ns, now);
    assert_eq!(
        entries[0].labels,
        BTreeMap::from([
            ("job".to_owned(), "x".to_owned()),
            ("service_name".to_owned(), "x".to_owned())
        ])
    );

    double.set_down(true).unwrap();
    let refused = std::net::TcpStream::connect(double.address).unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    double.set_down(false).unwrap();
    let (status, answer) = exchange(
        double.address,
        b"GET /ready HTTP/1.1\r\nHost: loki\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(status, 200, "{answer}");
    // What it stored survived.
    let (status, _) = exchange(double.address, &raw_push(&body)).unwrap();
    assert_eq!(status, 204);
    assert_eq!(double.duplicates(), 1);
    assert_eq!(double.entries().len(), 1);
    assert_eq!(double.pushes(), 2);
    assert_eq!(double.statuses(), [204, 204]);
}

#[test]
fn duplicates_are_found_among_many_lines_of_one_nanosecond() {
    let mut loki = loki();
    let same_time = |lines: &[&str]| {
        proto_push(vec![stream(
            "{job=\"x\"}",
            lines.iter().map(|line| entry(NOW, line)).collect(),
        )])
    };
    assert_eq!(push(&mut loki, same_time(&["a", "b", "c", "d"])).0, 204);
    assert_eq!(loki.duplicates, 0);
    // Each of them again, the first, a middle one and the newest of the nanosecond.
    assert_eq!(
        push(&mut loki, same_time(&["b", "a", "d", "c", "e"])).0,
        204
    );
    assert_eq!(loki.duplicates, 4);
    assert_eq!(lines(&loki), ["a", "b", "c", "d", "e"]);
    // The same line at the next nanosecond is another entry.
    let (status, _) = push(
        &mut loki,
        proto_push(vec![stream("{job=\"x\"}", vec![entry(NOW + 1, "a")])]),
    );
    assert_eq!(status, 204);
    assert_eq!(loki.duplicates, 4);
    assert_eq!(lines(&loki), ["a", "b", "c", "d", "e", "a"]);
}
