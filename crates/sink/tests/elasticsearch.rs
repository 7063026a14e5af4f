//! The Elasticsearch sink against the Elasticsearch double (`doubles::elasticsearch`)
//! over real HTTP on 127.0.0.1: what lands, under which `_id` and index; that a re-send
//! creates nothing; per-item outcomes (mapping refusals, item 429s); whole-request
//! 429/413/401; endpoints in turn; the healthcheck per flavour.
//!
//! Each test installs the TLS crypto provider first (`tls_provider::install`): the runner
//! does it in `main`, and each test may run in a process of its own.

#![allow(clippy::unwrap_used)]

use doubles::elasticsearch::{
    ElasticsearchDouble, ElasticsearchOptions, FieldType, Flavour, RequiredAuth,
};
use record::{EventRecord, IdParts};
use reqwest::Url;
use serde_json::Value;
use sink::config::SinkConfig;
use sink::elasticsearch::{
    BulkBody, Distribution, ElasticsearchConfig, ElasticsearchSink, IndexPattern, Mode,
};
use sink::http::{Compression, HttpAuth, HttpOptions, RequestSettings, Secret, SecretSource};
use sink::{Delivery, SharedRecord, Sink};
use std::time::Duration;

const PROJECT: &str = "0123456789abcdef0123456789abcdef";
const SERVICE: &str = "35de3ca9-1bca-4ae7-9cb0-914f30fa7d3e";
/// 2019-07-08T14:47:31.764Z
const T0: i64 = 1_562_597_251_764;
const DAY: i64 = 86_400_000;

/// `filter_path` as the sink sends it on every bulk request.
const ANSWER_FIELDS_QUERY: &str =
    "filter_path=errors%2Citems.*._id%2Citems.*.status%2Citems.*.error";

fn record(occur_time: i64, info: &str) -> SharedRecord {
    SharedRecord::new(EventRecord::new(
        "prod",
        "billing",
        IdParts {
            project_id: PROJECT,
            service_id: SERVICE,
            occur_time,
            event_type: "normal",
            event_info: info,
            twin: 1,
        },
    ))
}

fn records(count: usize) -> Vec<SharedRecord> {
    (0..count)
        .map(|i| record(T0 + i64::try_from(i).unwrap(), &format!("event {i}")))
        .collect()
}

fn config(endpoints: &[String]) -> ElasticsearchConfig {
    ElasticsearchConfig {
        endpoints: endpoints.iter().map(|u| Url::parse(u).unwrap()).collect(),
        index: IndexPattern::parse("modelarts-events").unwrap(),
        mode: Mode::Bulk,
        pipeline: None,
        http: HttpOptions {
            request: RequestSettings {
                timeout: Duration::from_secs(10),
                connect_timeout: Duration::from_secs(5),
                concurrency: 1,
            },
            ..HttpOptions::default()
        },
    }
}

async fn sink_for(double: &ElasticsearchDouble) -> ElasticsearchSink {
    ElasticsearchSink::new("es", &config(&[double.base_url()]))
        .await
        .unwrap()
}

fn double(options: ElasticsearchOptions) -> ElasticsearchDouble {
    ElasticsearchDouble::with(options).unwrap()
}

fn ids(double: &ElasticsearchDouble, index: &str) -> Vec<String> {
    double.documents(index).into_iter().map(|d| d.id).collect()
}

/// The ids of `batch[i]` for each `i` of `which`.
fn pick(batch: &[SharedRecord], which: &[usize]) -> Vec<String> {
    which.iter().map(|&i| batch[i].id.to_string()).collect()
}

fn record_ids(batch: &[SharedRecord]) -> Vec<String> {
    batch.iter().map(|r| r.id.to_string()).collect()
}

#[tokio::test]
async fn documents_land_with_the_record_id_and_the_record_as_source() {
    tls_provider::install();
    let es = ElasticsearchDouble::start().unwrap();
    let sink = sink_for(&es).await;
    let batch = records(3);
    let delivery = sink.send(&batch).await.unwrap();
    assert_eq!(delivery, Delivery::all_accepted());
    assert_eq!(ids(&es, "modelarts-events"), record_ids(&batch));
    for (stored, record) in es.documents("modelarts-events").iter().zip(&batch) {
        let expected: Value = serde_json::from_str(record.json_line()).unwrap();
        assert_eq!(stored.source, expected);
        assert_eq!(stored.source["id"], record.id.as_str());
    }
    // One request, NDJSON with its trailing newline, the documented content type.
    assert_eq!(es.bulk_requests(), 1);
    let request = es.last_request().unwrap();
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/_bulk");
    // The answer is asked for only what the sink reads of each item.
    assert_eq!(request.query.as_deref(), Some(ANSWER_FIELDS_QUERY));
    assert_eq!(request.header("content-type"), Some("application/x-ndjson"));
    let body = es.last_body().unwrap();
    assert_eq!(body.last(), Some(&b'\n'));
    let first: Value = serde_json::from_slice(body.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(
        first,
        serde_json::json!({"create": {"_index": "modelarts-events", "_id": batch[0].id}})
    );
}

#[tokio::test]
async fn a_resend_creates_nothing_new() {
    tls_provider::install();
    let es = ElasticsearchDouble::start().unwrap();
    let sink = sink_for(&es).await;
    let batch = records(5);
    sink.send(&batch[..3]).await.unwrap();
    // The whole batch again, as after a timeout: the three already there answer 409,
    // which counts as delivered; the other two are written.
    let delivery = sink.send(&batch).await.unwrap();
    assert_eq!(delivery, Delivery::all_accepted());
    assert_eq!(es.count(), 5);
    assert_eq!(ids(&es, "modelarts-events"), record_ids(&batch));
    let stats = es.stats();
    assert_eq!((stats.written, stats.conflicts), (5, 3));
    let again = sink.send(&batch).await.unwrap();
    assert_eq!(again, Delivery::all_accepted());
    assert_eq!(es.count(), 5);
    assert_eq!(es.stats().conflicts, 8);
}

#[tokio::test]
async fn date_patterns_choose_the_index_from_occur_time() {
    tls_provider::install();
    let es = ElasticsearchDouble::start().unwrap();
    let mut config = config(&[es.base_url()]);
    config.index = IndexPattern::parse("modelarts-events-%Y.%m.%d").unwrap();
    let sink = ElasticsearchSink::new("es", &config).await.unwrap();
    let batch = [
        record(T0, "monday"),
        record(T0 + DAY, "tuesday"),
        record(T0 + 1, "monday too"),
        // 23:59:59.999 UTC stays on its day.
        record(1_562_630_399_999, "monday, late"),
    ];
    assert_eq!(sink.send(&batch).await.unwrap(), Delivery::all_accepted());
    assert_eq!(
        es.indices(),
        ["modelarts-events-2019.07.08", "modelarts-events-2019.07.09"]
    );
    assert_eq!(
        ids(&es, "modelarts-events-2019.07.08"),
        pick(&batch, &[0, 2, 3])
    );
    assert_eq!(ids(&es, "modelarts-events-2019.07.09"), pick(&batch, &[1]));
}

#[tokio::test]
async fn data_stream_mode_adds_the_timestamp_and_uses_create() {
    tls_provider::install();
    let es = double(ElasticsearchOptions {
        data_streams: vec!["logs-modelarts-*".to_owned()],
        ..ElasticsearchOptions::default()
    });
    let mut stream = config(&[es.base_url()]);
    stream.index = IndexPattern::parse("logs-modelarts-events").unwrap();
    stream.mode = Mode::DataStream;
    let sink = ElasticsearchSink::new("es", &stream).await.unwrap();
    let batch = records(2);
    assert_eq!(sink.send(&batch).await.unwrap(), Delivery::all_accepted());
    let stored = es.documents("logs-modelarts-events");
    assert_eq!(stored.len(), 2);
    for (doc, record) in stored.iter().zip(&batch) {
        assert_eq!(doc.id, record.id);
        assert_eq!(doc.source["@timestamp"], record.timestamp.as_str());
        assert_eq!(doc.source["occur_time"], record.occur_time);
    }
    // A re-send into the data stream is idempotent too.
    assert_eq!(sink.send(&batch).await.unwrap(), Delivery::all_accepted());
    assert_eq!(es.count(), 2);
    // The same stream in bulk mode: no @timestamp, so the double refuses every
    // document, as a data stream does.
    let mut plain = stream.clone();
    plain.mode = Mode::Bulk;
    let sink = ElasticsearchSink::new("es", &plain).await.unwrap();
    let delivery = sink.send(&records(3)[2..]).await.unwrap();
    assert_eq!(delivery.rejected.len(), 1);
    assert!(
        delivery.rejected[0]
            .reason
            .contains("data stream timestamp field [@timestamp] is missing"),
        "{}",
        delivery.rejected[0].reason
    );
    assert_eq!(es.count(), 2);
}

#[tokio::test]
async fn a_mapping_refusal_rejects_exactly_that_record_with_the_reason() {
    tls_provider::install();
    for (flavour, kind) in [
        (Flavour::Elasticsearch8, "document_parsing_exception"),
        (Flavour::OpenSearch2, "mapper_parsing_exception"),
    ] {
        // `event_info` mapped as a number: "7" is coerced, "deploy failed" cannot be.
        let es = double(ElasticsearchOptions {
            flavour,
            mapping: vec![("event_info".to_owned(), FieldType::Long)],
            ..ElasticsearchOptions::default()
        });
        let sink = sink_for(&es).await;
        let batch = [
            record(T0, "7"),
            record(T0 + 1, "deploy failed"),
            record(T0 + 2, "8"),
        ];
        let delivery = sink.send(&batch).await.unwrap();
        assert!(delivery.retry.is_empty() && delivery.held.is_empty());
        assert_eq!(delivery.rejected.len(), 1, "{delivery:?}");
        let rejection = &delivery.rejected[0];
        assert_eq!(rejection.index, 1);
        assert_eq!(rejection.status, Some(400));
        assert!(
            rejection.reason.starts_with(&format!("{kind}: ")),
            "{}",
            rejection.reason
        );
        assert!(
            rejection.reason.contains(&format!(
                "failed to parse field [event_info] of type [long] in document with id '{}'",
                batch[1].id
            )),
            "{}",
            rejection.reason
        );
        assert!(
            rejection.reason.contains(
                "(caused by illegal_argument_exception: For input string: \"deploy failed\")"
            ),
            "{}",
            rejection.reason
        );
        assert_eq!(ids(&es, "modelarts-events"), pick(&batch, &[0, 2]));
    }
}

#[tokio::test]
async fn item_429_asks_to_retry_exactly_those_records() {
    tls_provider::install();
    for (flavour, kind) in [
        (Flavour::Elasticsearch8, "es_rejected_execution_exception"),
        (Flavour::OpenSearch2, "rejected_execution_exception"),
    ] {
        let es = double(ElasticsearchOptions {
            flavour,
            ..ElasticsearchOptions::default()
        });
        let sink = sink_for(&es).await;
        let batch = records(4);
        es.throttle_items(&[&batch[1].id, &batch[3].id], 1);
        let delivery = sink.send(&batch).await.unwrap();
        assert!(delivery.rejected.is_empty());
        let retry: Vec<(usize, Option<u16>)> =
            delivery.retry.iter().map(|r| (r.index, r.status)).collect();
        assert_eq!(retry, [(1, Some(429)), (3, Some(429))]);
        assert!(
            delivery.retry[0].reason.starts_with(kind),
            "{}",
            delivery.retry[0].reason
        );
        assert_eq!(ids(&es, "modelarts-events"), pick(&batch, &[0, 2]));
        // Offered again alone, as the engine does: now they land.
        let again = [batch[1].clone(), batch[3].clone()];
        assert_eq!(sink.send(&again).await.unwrap(), Delivery::all_accepted());
        assert_eq!(es.count(), 4);
    }
}

#[tokio::test]
async fn whole_request_429_with_retry_after_is_retryable_with_the_delay() {
    tls_provider::install();
    let es = ElasticsearchDouble::start().unwrap();
    let sink = sink_for(&es).await;
    es.fail_next_bulk(1, 429, Some(7));
    es.fail_next_bulk(1, 503, None);
    let batch = records(2);
    let error = sink.send(&batch).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert_eq!(error.status, Some(429));
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
    assert!(
        error
            .to_string()
            .contains("rejected execution of coordinating operation"),
        "{error}"
    );
    let error = sink.send(&batch).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert_eq!((error.status, error.retry_after()), (Some(503), None));
    assert_eq!(es.count(), 0);
    assert_eq!(sink.send(&batch).await.unwrap(), Delivery::all_accepted());
    assert_eq!(es.count(), 2);
}

#[tokio::test]
async fn a_413_splits_the_batch_and_everything_lands() {
    tls_provider::install();
    let batch = records(16);
    let pattern = IndexPattern::parse("modelarts-events").unwrap();
    let body = BulkBody::encode(&batch, &pattern, Mode::Bulk);
    // Room for two documents per request, not four.
    let limit = body.slice(0..2).len().max(body.slice(14..16).len());
    assert!(body.slice(0..4).len() > limit);
    let es = double(ElasticsearchOptions {
        max_content_length: limit,
        ..ElasticsearchOptions::default()
    });
    let sink = sink_for(&es).await;
    let delivery = sink.send(&batch).await.unwrap();
    assert_eq!(delivery, Delivery::all_accepted());
    assert_eq!(ids(&es, "modelarts-events"), record_ids(&batch));
    let stats = es.stats();
    // 16 refused, 2 × 8 refused, 4 × 4 refused, 8 × 2 accepted.
    assert_eq!(stats.refused_requests, 7, "{stats:?}");
    assert_eq!(stats.requests, 15, "{stats:?}");
    assert_eq!((stats.written, stats.conflicts), (16, 0));
}

#[tokio::test]
async fn a_document_too_large_alone_is_rejected_and_the_others_land() {
    tls_provider::install();
    let es = double(ElasticsearchOptions {
        max_content_length: 2_000,
        ..ElasticsearchOptions::default()
    });
    let sink = sink_for(&es).await;
    let mut batch = records(4);
    batch[2] = record(T0 + 100, &"x".repeat(3_000));
    let delivery = sink.send(&batch).await.unwrap();
    assert!(delivery.retry.is_empty());
    assert_eq!(delivery.rejected.len(), 1);
    assert_eq!(delivery.rejected[0].index, 2);
    assert_eq!(delivery.rejected[0].status, Some(413));
    assert!(
        delivery.rejected[0].reason.contains("too large"),
        "{}",
        delivery.rejected[0].reason
    );
    assert_eq!(ids(&es, "modelarts-events"), pick(&batch, &[0, 1, 3]));
}

#[tokio::test]
async fn endpoints_are_used_in_turn() {
    tls_provider::install();
    let (a, b) = (
        ElasticsearchDouble::start().unwrap(),
        ElasticsearchDouble::start().unwrap(),
    );
    let sink = ElasticsearchSink::new("es", &config(&[a.base_url(), b.base_url()]))
        .await
        .unwrap();
    let batch = records(4);
    let mut seen = Vec::new();
    for record in &batch {
        sink.send(std::slice::from_ref(record)).await.unwrap();
        seen.push((a.bulk_requests(), b.bulk_requests()));
    }
    assert_eq!(seen, [(1, 0), (1, 1), (2, 1), (2, 2)]);
    assert_eq!(ids(&a, "modelarts-events"), pick(&batch, &[0, 2]));
    assert_eq!(ids(&b, "modelarts-events"), pick(&batch, &[1, 3]));
}

#[tokio::test]
async fn a_down_endpoint_hands_its_requests_to_the_next() {
    tls_provider::install();
    let down = ElasticsearchDouble::start().unwrap().base_url();
    let up = ElasticsearchDouble::start().unwrap();
    let sink = ElasticsearchSink::new("es", &config(&[down.clone(), up.base_url()]))
        .await
        .unwrap();
    let batch = records(4);
    for record in &batch {
        let delivery = sink.send(std::slice::from_ref(record)).await.unwrap();
        assert_eq!(delivery, Delivery::all_accepted());
    }
    assert_eq!(up.bulk_requests(), 4);
    assert_eq!(ids(&up, "modelarts-events"), record_ids(&batch));
    // With every endpoint down, the send fails retryably.
    drop(up);
    let error = sink.send(&batch).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert_eq!(error.status, None);
}

#[tokio::test]
async fn auth_is_required_and_sent() {
    tls_provider::install();
    let es = double(ElasticsearchOptions {
        auth: Some(RequiredAuth::Basic {
            user: "shipper".to_owned(),
            password: "pw-SECRET".to_owned(),
        }),
        ..ElasticsearchOptions::default()
    });
    let batch = records(1);
    let error = sink_for(&es).await.send(&batch).await.unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert_eq!(error.status, Some(401));
    assert!(
        error
            .to_string()
            .contains("missing authentication credentials"),
        "{error}"
    );
    let mut with_auth = config(&[es.base_url()]);
    with_auth.http.auth = Some(HttpAuth::Basic {
        user: "shipper".to_owned(),
        password: SecretSource::Inline(Secret::new("pw-SECRET")),
    });
    let sink = ElasticsearchSink::new("es", &with_auth).await.unwrap();
    assert_eq!(sink.send(&batch).await.unwrap(), Delivery::all_accepted());
    assert_eq!(es.count(), 1);
    // A wrong password: permanent, and the secret never shows.
    with_auth.http.auth = Some(HttpAuth::Basic {
        user: "shipper".to_owned(),
        password: SecretSource::Inline(Secret::new("wrong-SECRET")),
    });
    let sink = ElasticsearchSink::new("es", &with_auth).await.unwrap();
    let error = sink.send(&records(2)).await.unwrap_err();
    assert_eq!(error.status, Some(401));
    assert!(
        !format!("{error} {error:?}").contains("SECRET"),
        "{error:?}"
    );

    let keyed = double(ElasticsearchOptions {
        auth: Some(RequiredAuth::ApiKey("a2V5OnNlY3JldA==".to_owned())),
        ..ElasticsearchOptions::default()
    });
    let mut api_key = config(&[keyed.base_url()]);
    api_key.http.auth = Some(HttpAuth::ApiKey {
        api_key: SecretSource::Inline(Secret::new("a2V5OnNlY3JldA==")),
    });
    let sink = ElasticsearchSink::new("es", &api_key).await.unwrap();
    assert_eq!(sink.send(&batch).await.unwrap(), Delivery::all_accepted());
    assert_eq!(
        keyed.last_request().unwrap().header("authorization"),
        Some("ApiKey a2V5OnNlY3JldA==")
    );
}

#[tokio::test]
async fn healthcheck_reads_the_version_of_each_flavour() {
    tls_provider::install();
    for (flavour, distribution, number) in [
        (
            Flavour::Elasticsearch8,
            Distribution::Elasticsearch,
            "8.15.0",
        ),
        (
            Flavour::Elasticsearch7,
            Distribution::Elasticsearch,
            "7.17.22",
        ),
        (Flavour::OpenSearch2, Distribution::OpenSearch, "2.15.0"),
    ] {
        let es = double(ElasticsearchOptions {
            flavour: flavour.clone(),
            ..ElasticsearchOptions::default()
        });
        let sink = sink_for(&es).await;
        let versions = sink.versions().await;
        assert_eq!(versions.len(), 1);
        let version = versions[0].1.as_ref().unwrap();
        assert_eq!(
            (&version.distribution, version.number.as_str()),
            (&distribution, number),
            "{flavour:?}"
        );
        assert!(version.is_known());
        sink.healthcheck().await.unwrap();
        assert_eq!(es.last_request().unwrap().path, "/");
        assert_eq!(es.last_request().unwrap().method, "GET");
    }
    // An unknown major is a warning, not a failure.
    let nine = double(ElasticsearchOptions {
        flavour: Flavour::Other {
            number: "9.1.0".to_owned(),
            distribution: None,
        },
        ..ElasticsearchOptions::default()
    });
    let sink = sink_for(&nine).await;
    let versions = sink.versions().await;
    assert!(!versions[0].1.as_ref().unwrap().is_known());
    sink.healthcheck().await.unwrap();
}

#[tokio::test]
async fn healthcheck_403_for_write_only_keys_says_what_to_do() {
    tls_provider::install();
    let es = double(ElasticsearchOptions {
        root_forbidden: true,
        ..ElasticsearchOptions::default()
    });
    let config = config(&[es.base_url()]);
    let error = config.check("es").await.unwrap_err();
    assert!(!error.is_retryable());
    assert_eq!(error.status, Some(403));
    assert!(
        error.to_string().contains("healthcheck.enabled = false"),
        "{error}"
    );
    // Writing works all the same.
    let built = config
        .build("es", sink::BuildContext::default())
        .await
        .unwrap();
    assert!(built.state.is_none());
    assert_eq!(
        built.sink.send(&records(1)).await.unwrap(),
        Delivery::all_accepted()
    );
    assert_eq!(built.sink.kind(), "elasticsearch");
}

#[tokio::test]
async fn healthcheck_passes_while_one_endpoint_answers() {
    tls_provider::install();
    let down = ElasticsearchDouble::start().unwrap().base_url();
    let up = ElasticsearchDouble::start().unwrap();
    let sink = ElasticsearchSink::new("es", &config(&[down.clone(), up.base_url()]))
        .await
        .unwrap();
    sink.healthcheck().await.unwrap();
    let alone = ElasticsearchSink::new("es", &config(&[down]))
        .await
        .unwrap();
    let error = alone.healthcheck().await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
}

#[tokio::test]
async fn a_200_that_is_not_a_bulk_answer_is_a_retryable_error() {
    tls_provider::install();
    let es = ElasticsearchDouble::start().unwrap();
    let sink = sink_for(&es).await;
    let batch = records(2);
    for (body, expected) in [
        ("<html>upstream flaked</html>", "not JSON"),
        ("{\"took\":1,\"errors\":false}", "no items array"),
        (
            "{\"took\":1,\"errors\":false,\"items\":[]}",
            "0 items for the 2 documents",
        ),
        (
            "{\"items\":[{\"create\":{\"status\":201}},{\"create\":{\"status\":\"ok\"}}]}",
            "item 1: no HTTP status",
        ),
    ] {
        es.answer_next_bulk(1, 200, body);
        let error = sink.send(&batch).await.unwrap_err();
        assert!(error.is_retryable(), "{error}");
        assert_eq!(error.status, Some(200));
        assert!(error.to_string().contains(expected), "{error}");
    }
    assert_eq!(sink.send(&batch).await.unwrap(), Delivery::all_accepted());
}

#[tokio::test]
async fn an_item_403_fails_the_send_permanently() {
    tls_provider::install();
    let es = ElasticsearchDouble::start().unwrap();
    let sink = sink_for(&es).await;
    let batch = records(1);
    es.answer_next_bulk(
        1,
        200,
        &serde_json::json!({"took": 1, "errors": true, "items": [{"create": {
            "_index": "modelarts-events", "_id": batch[0].id, "status": 403,
            "error": {"type": "security_exception",
                "reason": "action [indices:data/write/bulk[s]] is unauthorized"}}}]})
        .to_string(),
    );
    let error = sink.send(&batch).await.unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert_eq!(error.status, Some(403));
    assert!(error.to_string().contains("security_exception"), "{error}");
}

#[tokio::test]
async fn the_pipeline_goes_in_the_query() {
    tls_provider::install();
    let es = double(ElasticsearchOptions {
        pipelines: Some(vec!["modelarts events".to_owned()]),
        ..ElasticsearchOptions::default()
    });
    let mut with_pipeline = config(&[es.base_url()]);
    with_pipeline.pipeline = Some("modelarts events".to_owned());
    let sink = ElasticsearchSink::new("es", &with_pipeline).await.unwrap();
    assert_eq!(
        sink.send(&records(2)).await.unwrap(),
        Delivery::all_accepted()
    );
    assert_eq!(es.count(), 2);
    let request = es.last_request().unwrap();
    assert_eq!(
        request.query.as_deref(),
        Some(format!("pipeline=modelarts+events&{ANSWER_FIELDS_QUERY}").as_str())
    );
    // A pipeline the cluster does not have: every document is rejected with the reason.
    with_pipeline.pipeline = Some("missing".to_owned());
    let sink = ElasticsearchSink::new("es", &with_pipeline).await.unwrap();
    let delivery = sink.send(&records(3)).await.unwrap();
    assert_eq!(delivery.rejected.len(), 3);
    assert!(
        delivery.rejected[0]
            .reason
            .contains("pipeline with id [missing] does not exist"),
        "{}",
        delivery.rejected[0].reason
    );
}

#[tokio::test]
async fn gzip_bodies_are_accepted() {
    tls_provider::install();
    let es = ElasticsearchDouble::start().unwrap();
    let mut gzip = config(&[es.base_url()]);
    gzip.http.compression = Compression::Gzip;
    let sink = ElasticsearchSink::new("es", &gzip).await.unwrap();
    let batch = records(50);
    assert_eq!(sink.send(&batch).await.unwrap(), Delivery::all_accepted());
    assert_eq!(ids(&es, "modelarts-events"), record_ids(&batch));
    let request = es.last_request().unwrap();
    assert_eq!(request.header("content-encoding"), Some("gzip"));
    assert_eq!(request.header("content-type"), Some("application/x-ndjson"));
}

#[tokio::test]
async fn an_empty_batch_sends_nothing() {
    tls_provider::install();
    let es = ElasticsearchDouble::start().unwrap();
    let sink = sink_for(&es).await;
    assert_eq!(sink.send(&[]).await.unwrap(), Delivery::all_accepted());
    assert_eq!(es.bulk_requests(), 0);
}
