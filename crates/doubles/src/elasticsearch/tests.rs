//! The double over real HTTP, with a raw HTTP/1.1 client (so that a test can send
//! exactly the bytes it means, a missing newline or a wrong header included): what it
//! accepts, what it refuses and how, and what it stores.

use super::*;
use std::io::Write as _;
use std::net::TcpStream;

/// An answer as read off the socket.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `(op, status, error type)` of each item.
    fn items(&self) -> Vec<(String, u64, Option<String>)> {
        let body = self.json();
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| {
                let (op, inner) = item.as_object().unwrap().iter().next().unwrap();
                (
                    op.clone(),
                    inner["status"].as_u64().unwrap(),
                    inner["error"]["type"].as_str().map(str::to_owned),
                )
            })
            .collect()
    }
}

fn send(
    double: &ElasticsearchDouble,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let address = double.base_url().trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&address).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

const NDJSON: (&str, &str) = ("Content-Type", "application/x-ndjson");

fn bulk(double: &ElasticsearchDouble, body: &str) -> Reply {
    send(double, "POST", "/_bulk", &[NDJSON], body.as_bytes())
}

fn create(index: &str, id: &str, source: &str) -> String {
    format!("{{\"create\":{{\"_index\":\"{index}\",\"_id\":\"{id}\"}}}}\n{source}\n")
}

fn start(options: ElasticsearchOptions) -> ElasticsearchDouble {
    ElasticsearchDouble::with(options).unwrap()
}

#[test]
fn creates_answer_in_request_order_and_a_second_create_conflicts() {
    let double = ElasticsearchDouble::start().unwrap();
    let body = create("events", "a", r#"{"n":1}"#)
        + &create("events", "b", r#"{"n":2}"#)
        + &create("other", "a", r#"{"n":3}"#);
    let reply = bulk(&double, &body);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-elastic-product"), Some("Elasticsearch"));
    let json = reply.json();
    assert_eq!(json["errors"], false);
    assert!(json["took"].is_u64());
    assert_eq!(json["items"][0]["create"]["_id"], "a");
    assert_eq!(json["items"][0]["create"]["result"], "created");
    assert_eq!(json["items"][1]["create"]["_id"], "b");
    assert_eq!(json["items"][2]["create"]["_index"], "other");
    assert_eq!(
        reply.items(),
        vec![
            ("create".to_owned(), 201, None),
            ("create".to_owned(), 201, None),
            ("create".to_owned(), 201, None),
        ]
    );
    // The same `_id` again, between two new ones: only it conflicts, in its place.
    let again = create("events", "c", r#"{"n":4}"#)
        + &create("events", "a", r#"{"n":99}"#)
        + &create("events", "d", r#"{"n":5}"#);
    let reply = bulk(&double, &again);
    let json = reply.json();
    assert_eq!(json["errors"], true);
    let items = reply.items();
    assert_eq!(items[0].1, 201);
    assert_eq!(
        items[1],
        (
            "create".to_owned(),
            409,
            Some("version_conflict_engine_exception".to_owned())
        )
    );
    assert_eq!(
        json["items"][1]["create"]["error"]["reason"],
        "[a]: version conflict, document already exists (current version [1])"
    );
    assert_eq!(items[2].1, 201);
    // The conflicting create changed nothing.
    assert_eq!(double.document("events", "a").unwrap()["n"], 1);
    let ids: Vec<String> = double
        .documents("events")
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, ["a", "b", "c", "d"]);
    assert_eq!(double.count(), 5);
    assert_eq!(double.indices(), ["events", "other"]);
    let stats = double.stats();
    assert_eq!(
        (stats.requests, stats.items, stats.written, stats.conflicts),
        (2, 6, 5, 1)
    );
}

#[test]
fn index_replaces_and_delete_removes() {
    let double = ElasticsearchDouble::start().unwrap();
    bulk(&double, &create("i", "x", r#"{"v":1}"#));
    let reply = bulk(
        &double,
        "{\"index\":{\"_index\":\"i\",\"_id\":\"x\"}}\n{\"v\":2}\n{\"delete\":{\"_index\":\"i\",\"_id\":\"nope\"}}\n",
    );
    let json = reply.json();
    assert_eq!(json["items"][0]["index"]["status"], 200);
    assert_eq!(json["items"][0]["index"]["result"], "updated");
    assert_eq!(json["items"][0]["index"]["_version"], 2);
    assert_eq!(json["items"][1]["delete"]["status"], 404);
    assert_eq!(double.document("i", "x").unwrap()["v"], 2);
    let reply = bulk(&double, "{\"delete\":{\"_index\":\"i\",\"_id\":\"x\"}}\n");
    assert_eq!(reply.json()["items"][0]["delete"]["result"], "deleted");
    assert_eq!(double.count(), 0);
}

#[test]
fn the_body_must_end_with_a_newline() {
    let double = ElasticsearchDouble::start().unwrap();
    let body = create("events", "a", "{}");
    let reply = bulk(&double, body.trim_end());
    assert_eq!(reply.status, 400);
    let json = reply.json();
    assert_eq!(json["error"]["type"], "illegal_argument_exception");
    assert_eq!(
        json["error"]["reason"],
        "The bulk request must be terminated by a newline [\\n]"
    );
    assert_eq!(json["status"], 400);
    assert_eq!(double.count(), 0);
    // `\r\n` line ends are fine.
    let reply = bulk(&double, &body.replace('\n', "\r\n"));
    assert_eq!(reply.status, 200);
    assert_eq!(double.count(), 1);
    assert_eq!(double.stats().refused_requests, 1);
}

#[test]
fn content_type_must_be_ndjson_or_json() {
    let double = ElasticsearchDouble::start().unwrap();
    let body = create("events", "a", "{}");
    let reply = send(
        &double,
        "POST",
        "/_bulk",
        &[("Content-Type", "text/plain")],
        body.as_bytes(),
    );
    assert_eq!(reply.status, 406);
    assert_eq!(
        reply.json(),
        json!({"error": "Content-Type header [text/plain] is not supported", "status": 406})
    );
    let reply = send(&double, "POST", "/_bulk", &[], body.as_bytes());
    assert_eq!(reply.status, 406);
    assert_eq!(reply.json()["error"], "Content-Type header is missing");
    assert_eq!(double.count(), 0);
    for accepted in [
        "application/json",
        "application/x-ndjson; charset=UTF-8",
        "application/vnd.elasticsearch+x-ndjson; compatible-with=8",
    ] {
        let reply = send(
            &double,
            "POST",
            "/_bulk",
            &[("Content-Type", accepted)],
            body.as_bytes(),
        );
        assert_eq!(reply.status, 200, "{accepted}");
    }
    // OpenSearch does not know ES's vendor types.
    let opensearch = start(ElasticsearchOptions {
        flavour: Flavour::OpenSearch2,
        ..ElasticsearchOptions::default()
    });
    let reply = send(
        &opensearch,
        "POST",
        "/_bulk",
        &[(
            "Content-Type",
            "application/vnd.elasticsearch+x-ndjson; compatible-with=8",
        )],
        body.as_bytes(),
    );
    assert_eq!(reply.status, 406);
    assert_eq!(reply.header("x-elastic-product"), None);
}

#[test]
fn malformed_bodies_are_refused_whole_like_es() {
    let double = ElasticsearchDouble::start().unwrap();
    let reason = |body: &str| {
        let reply = bulk(&double, body);
        assert_eq!(reply.status, 400, "{body}");
        reply.json()["error"]["reason"].as_str().unwrap().to_owned()
    };
    assert_eq!(reason("\n"), "Validation Failed: 1: no requests added;");
    assert_eq!(
        reason("{\"upsert\":{\"_index\":\"i\"}}\n{}\n"),
        "Malformed action/metadata line [1], expected field [create], [delete], [index] or \
         [update] but found [upsert]"
    );
    assert_eq!(
        reason("{\"create\":{\"_index\":\"i\",\"_type\":\"_doc\"}}\n{}\n"),
        "Action/metadata line [1] contains an unknown parameter [_type]"
    );
    assert_eq!(
        reason("[1]\n{}\n"),
        "Malformed action/metadata line [1], expected START_OBJECT but found [START_ARRAY]"
    );
    assert_eq!(
        reason("{\"create\":{\"_index\":[\"i\"]}}\n{}\n"),
        "Malformed action/metadata line [1], expected a simple value for field [_index] but \
         found [START_ARRAY]"
    );
    assert_eq!(
        reason("{\"create\":{\"_id\":\"x\"}}\n{}\n"),
        "Validation Failed: 1: index is missing;"
    );
    assert_eq!(double.count(), 0);
    // ES 7 still takes `_type`, and answers with it.
    let seven = start(ElasticsearchOptions {
        flavour: Flavour::Elasticsearch7,
        ..ElasticsearchOptions::default()
    });
    let reply = bulk(
        &seven,
        "{\"create\":{\"_index\":\"i\",\"_type\":\"_doc\",\"_id\":\"1\"}}\n{}\n",
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["items"][0]["create"]["_type"], "_doc");
}

#[test]
fn the_path_index_is_the_default_and_sources_must_be_objects() {
    let double = ElasticsearchDouble::start().unwrap();
    let reply = send(
        &double,
        "POST",
        "/logs/_bulk",
        &[NDJSON],
        b"{\"create\":{\"_id\":\"1\"}}\n{\"a\":1}\n{\"create\":{\"_id\":\"2\"}}\n{\"a\":\n",
    );
    assert_eq!(reply.status, 200);
    let json = reply.json();
    assert_eq!(json["items"][0]["create"]["status"], 201);
    assert_eq!(json["items"][1]["create"]["status"], 400);
    assert_eq!(
        json["items"][1]["create"]["error"]["type"],
        "document_parsing_exception"
    );
    assert_eq!(double.documents("logs").len(), 1);
}

#[test]
fn a_document_that_is_not_utf8_is_refused_alone() {
    // A body that is UTF-8 throughout is read as text; this one is not, so every line of
    // it is read as bytes, and only the document with the stray byte is refused.
    let double = ElasticsearchDouble::start().unwrap();
    let mut body = create("logs", "1", "{\"a\":\"\u{e9}\"}").into_bytes();
    body.extend_from_slice(
        b"{\"create\":{\"_index\":\"logs\",\"_id\":\"2\"}}\r\n{\"a\":\"\xff\"}\r\n",
    );
    body.extend_from_slice(create("logs", "3", "{\"a\":3}").as_bytes());
    let reply = send(&double, "POST", "/_bulk", &[NDJSON], &body);
    assert_eq!(reply.status, 200);
    let json = reply.json();
    let statuses: Vec<_> = (0..3)
        .map(|i| json["items"][i]["create"]["status"].as_u64())
        .collect();
    assert_eq!(statuses, [Some(201), Some(400), Some(201)], "{json}");
    assert_eq!(
        json["items"][1]["create"]["error"]["type"],
        "document_parsing_exception"
    );
    let ids: Vec<_> = double.documents("logs").into_iter().map(|d| d.id).collect();
    assert_eq!(ids, ["1", "3"]);
    assert_eq!(double.document("logs", "1").unwrap()["a"], "\u{e9}");
}

#[test]
fn mapped_fields_refuse_values_of_the_wrong_type() {
    for (flavour, kind, reason_start) in [
        (
            Flavour::Elasticsearch8,
            "document_parsing_exception",
            "[1:37] failed to parse field [occur_time]",
        ),
        (
            Flavour::Elasticsearch7,
            "mapper_parsing_exception",
            "failed to parse field [occur_time]",
        ),
        (
            Flavour::OpenSearch2,
            "mapper_parsing_exception",
            "failed to parse field [occur_time]",
        ),
    ] {
        let double = start(ElasticsearchOptions {
            flavour: flavour.clone(),
            mapping: vec![
                ("occur_time".to_owned(), FieldType::EpochMillis),
                ("event_type".to_owned(), FieldType::Keyword),
            ],
            ..ElasticsearchOptions::default()
        });
        let body = create(
            "e",
            "good",
            r#"{"occur_time":1562597251764,"event_type":"normal"}"#,
        ) + &create(
            "e",
            "coerced",
            r#"{"occur_time":"1562597251765","event_type":7}"#,
        ) + &create(
            "e",
            "bad",
            r#"{"event_type":"normal","occur_time":"yesterday"}"#,
        ) + &create("e", "object", r#"{"occur_time":1,"event_type":{"a":1}}"#);
        let reply = bulk(&double, &body);
        let json = reply.json();
        assert_eq!(json["errors"], true);
        let items = reply.items();
        assert_eq!(items[0].1, 201, "{flavour:?}");
        assert_eq!(items[1].1, 201, "{flavour:?}");
        assert_eq!(items[2], ("create".to_owned(), 400, Some(kind.to_owned())));
        assert_eq!(items[3], ("create".to_owned(), 400, Some(kind.to_owned())));
        let error = &json["items"][2]["create"]["error"];
        let reason = error["reason"].as_str().unwrap();
        assert!(reason.starts_with(reason_start), "{reason}");
        assert!(
            reason.ends_with(
                "of type [date] in document with id 'bad'. Preview of field's value: 'yesterday'"
            ),
            "{reason}"
        );
        assert_eq!(error["caused_by"]["type"], "illegal_argument_exception");
        assert_eq!(error["index"], "e");
        let ids: Vec<String> = double.documents("e").into_iter().map(|d| d.id).collect();
        assert_eq!(ids, ["good", "coerced"]);
        assert_eq!(double.stats().refused_items, 2);
    }
}

#[test]
fn a_predicate_refuses_documents_with_its_reason() {
    let double = ElasticsearchDouble::start().unwrap();
    double.refuse_documents(|doc| {
        (doc["event_info"] == "poison").then(|| "poison is not allowed".to_owned())
    });
    let body = create("e", "1", r#"{"event_info":"fine"}"#)
        + &create("e", "2", r#"{"event_info":"poison"}"#);
    let reply = bulk(&double, &body);
    let json = reply.json();
    let error = &json["items"][1]["create"]["error"];
    assert_eq!(json["items"][1]["create"]["status"], 400);
    assert_eq!(error["type"], "document_parsing_exception");
    assert_eq!(error["caused_by"]["reason"], "poison is not allowed");
    assert_eq!(double.count(), 1);
}

#[test]
fn item_429_for_chosen_ids_a_number_of_times() {
    for (flavour, kind) in [
        (Flavour::Elasticsearch8, "es_rejected_execution_exception"),
        (Flavour::OpenSearch2, "rejected_execution_exception"),
    ] {
        let double = start(ElasticsearchOptions {
            flavour,
            ..ElasticsearchOptions::default()
        });
        double.throttle_items(&["b"], 2);
        let body = create("e", "a", "{}") + &create("e", "b", "{}") + &create("e", "c", "{}");
        let statuses = |reply: &Reply| reply.items().into_iter().map(|i| i.1).collect::<Vec<_>>();
        let reply = bulk(&double, &body);
        assert_eq!(statuses(&reply), [201, 429, 201]);
        assert_eq!(reply.items()[1].2.as_deref(), Some(kind));
        let reply = bulk(&double, &create("e", "b", "{}"));
        assert_eq!(statuses(&reply), [429]);
        let reply = bulk(&double, &create("e", "b", "{}"));
        assert_eq!(statuses(&reply), [201]);
        assert_eq!(double.count(), 3);
        assert_eq!(double.stats().throttled, 2);
    }
}

#[test]
fn whole_request_failures_for_the_next_requests() {
    let double = ElasticsearchDouble::start().unwrap();
    double.fail_next_bulk(1, 429, Some(7));
    double.fail_next_bulk(1, 503, None);
    let body = create("e", "a", "{}");
    let reply = bulk(&double, &body);
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("retry-after"), Some("7"));
    assert_eq!(
        reply.json()["error"]["type"],
        "es_rejected_execution_exception"
    );
    let reply = bulk(&double, &body);
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), None);
    assert_eq!(double.count(), 0);
    assert_eq!(bulk(&double, &body).status, 200);
    assert_eq!(double.count(), 1);
    double.answer_next_bulk(1, 200, "<html>gateway</html>");
    let reply = bulk(&double, &body);
    assert_eq!(
        (reply.status, reply.body.as_slice()),
        (200, &b"<html>gateway</html>"[..])
    );
    assert_eq!(double.stats().requests, 4);
    // `answer_next_bulk` with 200 does not count as a refused request: it is an answer.
    assert_eq!(double.stats().refused_requests, 2);
}

#[test]
fn a_body_over_max_content_length_gets_an_empty_413_even_gzipped() {
    let double = start(ElasticsearchOptions {
        max_content_length: 200,
        ..ElasticsearchOptions::default()
    });
    let small = create("e", "a", r#"{"x":"short"}"#);
    assert_eq!(bulk(&double, &small).status, 200);
    let large = create("e", "b", &format!("{{\"x\":\"{}\"}}", "y".repeat(300)));
    let reply = bulk(&double, &large);
    assert_eq!(reply.status, 413);
    assert!(reply.body.is_empty());
    // The limit is on the decompressed body, as ES measures it.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(large.as_bytes()).unwrap();
    let gzipped = encoder.finish().unwrap();
    assert!(gzipped.len() < 200);
    let reply = send(
        &double,
        "POST",
        "/_bulk",
        &[NDJSON, ("Content-Encoding", "gzip")],
        &gzipped,
    );
    assert_eq!(reply.status, 413);
    assert_eq!(double.count(), 1);
}

#[test]
fn gzip_bodies_are_decoded() {
    let double = ElasticsearchDouble::start().unwrap();
    let body = create("e", "a", r#"{"x":1}"#);
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body.as_bytes()).unwrap();
    let reply = send(
        &double,
        "POST",
        "/_bulk",
        &[NDJSON, ("Content-Encoding", "gzip")],
        &encoder.finish().unwrap(),
    );
    assert_eq!(reply.status, 200);
    assert_eq!(double.document("e", "a").unwrap()["x"], 1);
}

#[test]
fn required_auth_refuses_requests_without_it() {
    let double = start(ElasticsearchOptions {
        auth: Some(RequiredAuth::Basic {
            user: "elastic".to_owned(),
            password: "changeme".to_owned(),
        }),
        ..ElasticsearchOptions::default()
    });
    let body = create("e", "a", "{}");
    let reply = bulk(&double, &body);
    assert_eq!(reply.status, 401);
    let json = reply.json();
    assert_eq!(json["error"]["type"], "security_exception");
    assert_eq!(
        json["error"]["reason"],
        "missing authentication credentials for REST request [/_bulk]"
    );
    assert!(reply.header("www-authenticate").is_some());
    assert_eq!(send(&double, "GET", "/", &[], b"").status, 401);
    // base64("elastic:changeme"), from coreutils' `base64`.
    let good = ("Authorization", "Basic ZWxhc3RpYzpjaGFuZ2VtZQ==");
    let reply = send(&double, "POST", "/_bulk", &[NDJSON, good], body.as_bytes());
    assert_eq!(reply.status, 200);
    let wrong = ("Authorization", "Basic ZWxhc3RpYzp3cm9uZw==");
    let reply = send(&double, "POST", "/_bulk", &[NDJSON, wrong], body.as_bytes());
    assert_eq!(reply.status, 401);
    assert_eq!(double.count(), 1);
    let keyed = start(ElasticsearchOptions {
        auth: Some(RequiredAuth::ApiKey("a2V5OnNlY3JldA==".to_owned())),
        ..ElasticsearchOptions::default()
    });
    let reply = send(
        &keyed,
        "POST",
        "/_bulk",
        &[NDJSON, ("Authorization", "ApiKey a2V5OnNlY3JldA==")],
        body.as_bytes(),
    );
    assert_eq!(reply.status, 200);
    assert_eq!(
        keyed.last_request().unwrap().header("authorization"),
        Some("ApiKey a2V5OnNlY3JldA==")
    );
}

#[test]
fn root_answers_per_flavour_and_403_for_write_only_keys() {
    let version = |flavour: Flavour| {
        let double = start(ElasticsearchOptions {
            flavour,
            ..ElasticsearchOptions::default()
        });
        let reply = send(&double, "GET", "/", &[], b"");
        assert_eq!(reply.status, 200);
        let json = reply.json();
        (
            json["version"]["number"].as_str().unwrap().to_owned(),
            json["version"]["distribution"].as_str().map(str::to_owned),
            reply.header("x-elastic-product").map(str::to_owned),
        )
    };
    assert_eq!(
        version(Flavour::Elasticsearch8),
        ("8.15.0".to_owned(), None, Some("Elasticsearch".to_owned()))
    );
    assert_eq!(version(Flavour::Elasticsearch7).0, "7.17.22");
    assert_eq!(
        version(Flavour::OpenSearch2),
        ("2.15.0".to_owned(), Some("opensearch".to_owned()), None)
    );
    let forbidden = start(ElasticsearchOptions {
        root_forbidden: true,
        ..ElasticsearchOptions::default()
    });
    let reply = send(&forbidden, "GET", "/", &[], b"");
    assert_eq!(reply.status, 403);
    assert_eq!(reply.json()["error"]["type"], "security_exception");
    // Writing still works.
    assert_eq!(bulk(&forbidden, &create("e", "a", "{}")).status, 200);
}

#[test]
fn data_streams_take_create_with_timestamp_only() {
    let double = start(ElasticsearchOptions {
        data_streams: vec!["logs-*".to_owned()],
        ..ElasticsearchOptions::default()
    });
    let body = create(
        "logs-app",
        "1",
        r#"{"@timestamp":"2019-07-08T14:47:31.764Z"}"#,
    ) + &create("logs-app", "2", r#"{"message":"no time"}"#)
        + "{\"index\":{\"_index\":\"logs-app\",\"_id\":\"3\"}}\n{\"@timestamp\":1}\n"
        + &create("logs-app", "4", r#"{"@timestamp":"not a date"}"#)
        + &create("plain", "5", r#"{"message":"no time needed"}"#);
    let reply = bulk(&double, &body);
    let json = reply.json();
    let statuses: Vec<u64> = reply.items().into_iter().map(|i| i.1).collect();
    assert_eq!(statuses, [201, 400, 400, 400, 201]);
    let first = &json["items"][0]["create"]["_index"];
    assert!(
        first.as_str().unwrap().starts_with(".ds-logs-app-"),
        "{first}"
    );
    assert_eq!(
        json["items"][1]["create"]["error"]["reason"],
        "[1:21] failed to parse: data stream timestamp field [@timestamp] is missing"
    );
    assert_eq!(
        json["items"][2]["index"]["error"]["reason"],
        "only write ops with an op_type of create are allowed in data streams"
    );
    assert_eq!(double.documents("logs-app").len(), 1);
    assert_eq!(double.documents("plain").len(), 1);
    // A second create of the same `_id` conflicts naming the backing index.
    let reply = bulk(
        &double,
        &create(
            "logs-app",
            "1",
            r#"{"@timestamp":"2019-07-08T14:47:31.764Z"}"#,
        ),
    );
    let item = &reply.json()["items"][0]["create"];
    assert_eq!(item["status"], 409);
    assert!(item["error"]["index"].as_str().unwrap().starts_with(".ds-"));
}

#[test]
fn invalid_index_names_and_unknown_pipelines_are_item_errors() {
    let double = start(ElasticsearchOptions {
        pipelines: Some(vec!["events".to_owned()]),
        ..ElasticsearchOptions::default()
    });
    let body = create("Events", "1", "{}") + &create("_x", "2", "{}") + &create("ok", "3", "{}");
    let reply = bulk(&double, &body);
    let json = reply.json();
    assert_eq!(
        json["items"][0]["create"]["error"]["reason"],
        "Invalid index name [Events], must be lowercase"
    );
    assert_eq!(
        json["items"][1]["create"]["error"]["type"],
        "invalid_index_name_exception"
    );
    assert_eq!(json["items"][2]["create"]["status"], 201);
    let reply = send(
        &double,
        "POST",
        "/_bulk?pipeline=missing",
        &[NDJSON],
        create("ok", "4", "{}").as_bytes(),
    );
    assert_eq!(
        reply.json()["items"][0]["create"]["error"]["reason"],
        "pipeline with id [missing] does not exist"
    );
    let reply = send(
        &double,
        "POST",
        "/_bulk?pipeline=events&refresh=false",
        &[NDJSON],
        create("ok", "4", "{}").as_bytes(),
    );
    assert_eq!(reply.json()["items"][0]["create"]["status"], 201);
    let last = double.last_request().unwrap();
    assert_eq!(last.query_param("pipeline"), Some("events"));
    assert_eq!(last.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(last.path, "/_bulk");
}

#[test]
fn last_body_is_kept_as_received() {
    let double = ElasticsearchDouble::start().unwrap();
    let body = create("e", "a", "{}");
    bulk(&double, &body);
    assert_eq!(double.last_body().unwrap(), body.as_bytes());
}

#[test]
fn rfc3339_shapes() {
    for good in [
        "2019-07-08",
        "2019-07-08T14:47",
        "2019-07-08T14:47:31Z",
        "2019-07-08T14:47:31.764Z",
        "2019-07-08T14:47:31.764+02:00",
        "2019-07-08T14:47:31",
    ] {
        assert!(is_rfc3339_like(good), "{good}");
    }
    for bad in [
        "",
        "yesterday",
        "2019-7-08",
        "2019-07-08T",
        "2019-07-08T14:47:31.Z",
        "2019-07-08T14:47:31Zx",
        "2019-07-08T14:47:31+0200",
    ] {
        assert!(!is_rfc3339_like(bad), "{bad}");
    }
}

#[test]
fn base64_matches_coreutils() {
    assert_eq!(base64(b"elastic:changeme"), "ZWxhc3RpYzpjaGFuZ2VtZQ==");
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(base64(b"abc"), "YWJj");
    assert_eq!(base64(b""), "");
}

#[test]
fn civil_dates() {
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    // 1562597251764 ms is 2019-07-08.
    assert_eq!(
        civil_from_days(1_562_597_251_764 / 86_400_000),
        (2019, 7, 8)
    );
    assert_eq!(civil_from_days(11_016), (2000, 2, 29));
}

// ---- the paths that build no `Value` say what the `Value` paths say ----

/// A written item as the double built it before it wrote items as text: a `Map` per
/// level, serialized by `serde_json`.
fn written_as_value(written: &Written) -> String {
    let mut inner = Map::new();
    inner.insert("_index".to_owned(), json!("request-index"));
    if written.with_type {
        inner.insert("_type".to_owned(), json!("_doc"));
    }
    inner.insert("_id".to_owned(), Value::Null);
    inner.insert("_index".to_owned(), json!(written.index));
    inner.insert("_id".to_owned(), json!(written.id));
    inner.insert("_version".to_owned(), json!(written.version));
    let (status, result) = if written.created {
        (201, "created")
    } else {
        (200, "updated")
    };
    inner.insert("result".to_owned(), json!(result));
    inner.insert(
        "_shards".to_owned(),
        json!({"total": 2, "successful": 1, "failed": 0}),
    );
    inner.insert("_seq_no".to_owned(), json!(written.seq_no));
    inner.insert("_primary_term".to_owned(), json!(1));
    inner.insert("status".to_owned(), json!(status));
    json!({ written.op.name(): inner }).to_string()
}

#[test]
fn written_items_are_the_bytes_serde_json_writes() {
    for (with_type, created, op) in [
        (false, true, Op::Create),
        (true, true, Op::Create),
        (false, false, Op::Index),
        (true, false, Op::Index),
    ] {
        let written = Written {
            op,
            index: ".ds-logs-x-2026.11.30-000001".to_owned(),
            id: "quote \" slash \\ nl \n ctl \u{1} 部署".to_owned(),
            with_type,
            version: 7,
            seq_no: 12_345,
            created,
        };
        let expected = written_as_value(&written);
        let answer = ItemAnswer::Written(written);
        assert_eq!(answer.status(), if created { 201 } else { 200 });
        let mut text = Vec::new();
        answer.write(&mut text, None);
        assert_eq!(String::from_utf8(text).unwrap(), expected);
    }
}

#[test]
fn the_shape_check_refuses_what_value_refuses() {
    let deep_ok = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let too_deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
    let cases: Vec<Vec<u8>> = [
        "{}",
        " {\"a\":1} ",
        "{\"a\":{\"b\":[1,2.5,-3,true,null,\"x\"]}}",
        "{\"a\":1e400}",
        "{\"a\":-1e-400}",
        "{\"a\":18446744073709551616}",
        "{\"esc\\u00e9\":\"\\ud83d\\ude00\"}",
        "{\"bad\":\"\\ud800\"}",
        "{\"bad\":\"\\x\"}",
        "{\"a\":1,\"a\":2}",
        "{\"a\":1}x",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "{a:1}",
        "[1]",
        "\"text\"",
        "12",
        "null",
        "true",
        "",
        "   ",
        &deep_ok,
        &too_deep,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .chain([b"{\"a\":\"\xff\"}".to_vec(), b"{\"a\xc3\":1}".to_vec()])
    .collect();
    for case in cases {
        let value = serde_json::from_slice::<Value>(&case);
        let shape = serde_json::from_slice::<Shape>(&case);
        let shown = String::from_utf8_lossy(&case);
        match (&value, &shape) {
            (Ok(value), Ok(Shape(name))) => assert_eq!(token_name(value), *name, "{shown}"),
            (Err(_), Err(_)) => {}
            _ => panic!("{shown}: Value {:?}, shape {:?}", value, shape.map(|s| s.0)),
        }
        // A body that is UTF-8 throughout is read as text: the same answer.
        if let Ok(text) = std::str::from_utf8(&case) {
            let of_text = serde_json::from_str::<Shape>(text).map(|s| s.0);
            assert_eq!(of_text.ok(), shape.as_ref().ok().map(|s| s.0), "{shown}");
        }
    }
}

#[test]
fn plain_action_lines_read_as_the_value_parser_reads_them() {
    let plain = [
        r#"{"create":{"_index":"i","_id":"a"}}"#,
        r#"{"index":{"_id":"a"}}"#,
        r#"{"delete":{"_index":"i","_id":"a"}}"#,
        r#"{"update":{"_index":"i","_id":"a"}}"#,
        r#"{"create":{}}"#,
        r#" {"create":{"_id":"a\"b\u00e9","pipeline":"p","_index":""}} "#,
    ];
    let other = [
        r#"{"create":{"_index":null,"_id":"a"}}"#,
        r#"{"create":{"_index":"i","_id":7}}"#,
        r#"{"create":{"_index":"i","_id":true}}"#,
        r#"{"create":{"_index":"i","_id":"a","_id":"b"}}"#,
        r#"{"create":{"_index":"i","routing":"r"}}"#,
        r#"{"create":{"_index":"i","_type":"_doc"}}"#,
        r#"{"create":{"_index":"i","other":"x"}}"#,
        r#"{"create":["i","a"]}"#,
        r#"{"create":{"_index":"i"},"index":{"_index":"i"}}"#,
        r#"{"create":{"_index":"i"},"create":{"_index":"j"}}"#,
        r#"{"upsert":{"_index":"i"}}"#,
        r#"{}"#,
        r#""create""#,
        r#"{"create":{"_index":"i"}} x"#,
        "",
    ];
    for flavour in [Flavour::Elasticsearch8, Flavour::Elasticsearch7] {
        for (number, line) in plain.iter().enumerate() {
            for (default, text) in [None, Some("default")]
                .into_iter()
                .flat_map(|default| [(default, None), (default, Some(*line))])
            {
                let fast = ActionLine::plain(line.as_bytes(), text, default)
                    .unwrap_or_else(|| panic!("{line} is plain"));
                let Ok(slow) = ActionLine::parse(&flavour, number + 1, line.as_bytes(), default)
                else {
                    panic!("{line} parses");
                };
                assert_eq!(
                    (fast.op, fast.index, fast.id, fast.pipeline),
                    (slow.op, slow.index, slow.id, slow.pipeline),
                    "{line}"
                );
            }
        }
    }
    for line in other {
        for text in [None, Some(line)] {
            assert!(
                ActionLine::plain(line.as_bytes(), text, Some("default")).is_none(),
                "{line} is left to the full parser"
            );
        }
    }
}

#[test]
fn kept_documents_read_back_as_sent() {
    let double = ElasticsearchDouble::start().unwrap();
    let source = r#"{"b":{"c":[1,"x"]},"a":"\u00e9\n","n":1.5}"#;
    let body = create("e", "a", source);
    assert_eq!(bulk(&double, &body).status, 200);
    let expected: Value = serde_json::from_str(source).unwrap();
    assert_eq!(double.document("e", "a").unwrap(), expected);
    let documents = double.documents("e");
    assert_eq!(documents.len(), 1);
    assert_eq!(documents[0].source, expected);
    assert_eq!((documents[0].id.as_str(), documents[0].version), ("a", 1));
}

#[test]
fn a_filter_path_keeps_only_the_named_fields_of_a_bulk_answer() {
    let double = ElasticsearchDouble::start().unwrap();
    let body = create("e", "a", "{}") + &create("e", "b", "{}");
    bulk(&double, &body);
    let body = create("e", "b", "{}") + &create("e", "c", "{}");
    let path = "/_bulk?filter_path=errors,items.*._id,items.*.status,items.*.error";
    let reply = send(&double, "POST", path, &[NDJSON], body.as_bytes());
    assert_eq!(reply.status, 200);
    let json = reply.json();
    assert_eq!(json["errors"], true);
    assert_eq!(
        json["items"][1],
        json!({"create": {"_id": "c", "status": 201}})
    );
    let conflict = json["items"][0]["create"].as_object().unwrap();
    let mut keys: Vec<&str> = conflict.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["_id", "error", "status"]);
    assert_eq!(conflict["status"], 409);
    assert_eq!(
        conflict["error"]["type"],
        "version_conflict_engine_exception"
    );
    assert!(json.get("took").is_none());

    // A filter that reaches no item field drops the items; one that keeps nothing is `{}`.
    let send_filtered = |filter: &str, id: &str| {
        let path = format!("/_bulk?filter_path={filter}");
        send(
            &double,
            "POST",
            &path,
            &[NDJSON],
            create("e", id, "{}").as_bytes(),
        )
    };
    assert_eq!(
        send_filtered("errors,items.*.error", "d").json(),
        json!({"errors": false})
    );
    assert_eq!(send_filtered("nothing", "e").json(), json!({}));
    assert_eq!(
        send_filtered("items.*._shards.total,took", "f").json()["items"],
        json!([{"create": {"_shards": {"total": 2}}}])
    );
    // Exclusions are not modelled: refused, not ignored.
    let reply = send_filtered("-took", "g");
    assert_eq!(reply.status, 400);
    assert_eq!(double.count(), 6);
}

#[test]
fn a_filtered_written_item_is_what_the_filter_keeps_of_the_whole_one() {
    let written = Written {
        op: Op::Create,
        index: "e".to_owned(),
        id: "a \"quoted\" id".to_owned(),
        with_type: true,
        version: 2,
        seq_no: 9,
        created: true,
    };
    let whole: Value = serde_json::from_str(&written_as_value(&written)).unwrap();
    let answer = ItemAnswer::Written(written);
    for filter in [
        "items.*._id,items.*.status",
        "items.create.result,items.*._type",
        "items.*._shards.successful,items.*._seq_no",
        "items.**.failed",
        "items.*",
        "items.index.status",
    ] {
        let filter = FilterPath::parse(filter).unwrap().unwrap();
        let mut text = Vec::new();
        let wrote = answer.write(&mut text, Some(&mut ItemFilter::new(&filter)));
        let expected = filter.filter(&whole, &mut vec!["items"]);
        assert_eq!(wrote, expected.is_some(), "{filter:?}");
        if let Some(expected) = expected {
            let got: Value = serde_json::from_slice(&text).unwrap();
            assert_eq!(got, expected, "{filter:?}");
        } else {
            assert!(text.is_empty());
        }
    }
}
