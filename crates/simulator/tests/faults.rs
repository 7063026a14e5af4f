//! Every simulated fault as a real HTTP client sees it, on its schedule, and changed while
//! the simulator runs.
#![allow(clippy::unwrap_used)]

use serde_json::Value;
use simulator::{Behaviour, Fault, FaultRule, SimConfig, SimHandle, Simulator};

fn start(faults: Vec<FaultRule>, retry_after_secs: u64) -> SimHandle {
    let config = SimConfig {
        events_per_service: 50,
        behaviour: Behaviour {
            faults,
            retry_after_secs,
            ..Behaviour::default()
        },
        ..SimConfig::default()
    };
    Simulator::start("127.0.0.1:0".parse().unwrap(), config).unwrap()
}

fn events_url(sim: &SimHandle) -> String {
    format!(
        "{}/v1/{}/services/{}/events",
        sim.base_url(),
        sim.project_id(),
        sim.service_ids()[0]
    )
}

async fn get(client: &reqwest::Client, sim: &SimHandle) -> reqwest::Result<reqwest::Response> {
    client
        .get(events_url(sim))
        .header("X-Auth-Token", sim.token())
        .send()
        .await
}

async fn json_of(response: reqwest::Response) -> Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

#[tokio::test]
async fn throttling_is_429_with_retry_after_and_apig_0308() {
    let sim = start(vec![FaultRule::at(Fault::TooManyRequests, 2)], 0);
    let client = http_client();
    assert_eq!(get(&client, &sim).await.unwrap().status(), 200);
    let throttled = get(&client, &sim).await.unwrap();
    assert_eq!(throttled.status(), 429);
    assert_eq!(throttled.headers()["retry-after"], "0");
    let body = json_of(throttled).await;
    assert_eq!(body["error_code"], "APIG.0308");
    assert!(
        body["error_msg"]
            .as_str()
            .unwrap()
            .starts_with("The throttling threshold has been reached")
    );
    assert!(body["request_id"].is_string());
    assert_eq!(get(&client, &sim).await.unwrap().status(), 200);

    sim.set_behaviour(Behaviour {
        retry_after_secs: 7,
        faults: vec![FaultRule::at(Fault::TooManyRequests, 4)],
        ..Behaviour::default()
    });
    assert_eq!(
        get(&client, &sim).await.unwrap().headers()["retry-after"],
        "7"
    );
}

#[tokio::test]
async fn server_errors_are_500_and_503_with_json_bodies() {
    let sim = start(
        vec![
            FaultRule::at_each(Fault::InternalError, vec![1]),
            FaultRule::at(Fault::Unavailable, 2),
        ],
        1,
    );
    let client = http_client();
    let first = get(&client, &sim).await.unwrap();
    assert_eq!(first.status(), 500);
    assert!(
        json_of(first).await["error_code"]
            .as_str()
            .unwrap()
            .starts_with("ModelArts.")
    );
    let second = get(&client, &sim).await.unwrap();
    assert_eq!(second.status(), 503);
    assert_eq!(second.headers()["content-type"], "application/json");
    assert!(json_of(second).await["error_code"].is_string());
    assert_eq!(get(&client, &sim).await.unwrap().status(), 200);
    let statuses: Vec<u16> = sim.requests().iter().map(|log| log.status).collect();
    assert_eq!(statuses, vec![500, 503, 200]);
}

#[tokio::test]
async fn bad_gateway_is_an_html_page() {
    let sim = start(vec![FaultRule::every(Fault::BadGatewayHtml, 2)], 1);
    let client = http_client();
    assert_eq!(get(&client, &sim).await.unwrap().status(), 200);
    let response = get(&client, &sim).await.unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()["content-type"], "text/html");
    let text = String::from_utf8(response.bytes().await.unwrap().to_vec()).unwrap();
    assert!(text.starts_with("<html>") && text.contains("502 Bad Gateway"));
    assert!(serde_json::from_str::<Value>(&text).is_err());
    assert_eq!(get(&client, &sim).await.unwrap().status(), 200);
    assert_eq!(get(&client, &sim).await.unwrap().status(), 502);
}

#[tokio::test]
async fn truncated_body_announces_full_length_then_fails_to_read() {
    let sim = start(vec![FaultRule::at(Fault::TruncatedBody, 2)], 1);
    let client = http_client();
    let full = get(&client, &sim).await.unwrap().bytes().await.unwrap();
    let truncated = get(&client, &sim).await.unwrap();
    assert_eq!(truncated.status(), 200);
    assert_eq!(truncated.content_length(), Some(full.len() as u64));
    assert!(
        truncated.bytes().await.is_err(),
        "reading a truncated body must fail"
    );
    // The client recovers on a new connection.
    assert_eq!(
        get(&client, &sim).await.unwrap().bytes().await.unwrap(),
        full
    );
    assert_eq!(sim.requests()[1].fault, Some(Fault::TruncatedBody));
}

#[tokio::test]
async fn dropped_connection_is_a_transport_error() {
    let sim = start(vec![FaultRule::at(Fault::DroppedConnection, 1)], 1);
    let client = http_client();
    let error = get(&client, &sim).await.unwrap_err();
    assert!(error.status().is_none(), "no response at all: {error}");
    assert_eq!(get(&client, &sim).await.unwrap().status(), 200);
    let log = sim.requests();
    assert_eq!(
        (log[0].status, log[0].fault),
        (0, Some(Fault::DroppedConnection))
    );
}

#[tokio::test]
async fn faults_count_services_list_requests_and_change_while_running() {
    let sim = start(Vec::new(), 1);
    let client = http_client();
    let services = format!("{}/v1/{}/services", sim.base_url(), sim.project_id());
    assert_eq!(get(&client, &sim).await.unwrap().status(), 200);
    sim.set_faults(vec![FaultRule::at(Fault::InternalError, 2)]);
    let listed = client
        .get(&services)
        .header("X-Auth-Token", sim.token())
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 500, "request 2 is a services-list request");
    sim.set_faults(Vec::new());
    assert_eq!(get(&client, &sim).await.unwrap().status(), 200);
    assert_eq!(sim.request_count(), 3);
}

/// A reqwest client; reqwest is built without a TLS crypto provider, and building any client
/// needs one installed.
fn http_client() -> reqwest::Client {
    // Err only means another test installed it first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

#[tokio::test]
async fn admin_endpoint_replaces_the_fault_schedule() {
    let sim = start(Vec::new(), 1);
    let client = http_client();
    let admin = format!("{}/admin/faults", sim.base_url());
    let set = client
        .post(&admin)
        .body(r#"["503@2", "drop@every:5"]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    assert_eq!(
        sim.behaviour().faults,
        vec![
            FaultRule::at(Fault::Unavailable, 2),
            FaultRule::every(Fault::DroppedConnection, 5)
        ]
    );
    assert_eq!(get(&client, &sim).await.unwrap().status(), 200);
    assert_eq!(get(&client, &sim).await.unwrap().status(), 503);
    let refused = client
        .post(&admin)
        .body(r#"["teapot@1"]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(
        sim.behaviour().faults.len(),
        2,
        "a refused schedule leaves the old one"
    );
}
