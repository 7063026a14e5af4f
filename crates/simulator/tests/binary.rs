//! The `modelarts-sim` binary: prints its URL first, applies its options, stops on SIGTERM.
#![allow(clippy::unwrap_used)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        // Only if the test failed before stopping it.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> (Running, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_modelarts-sim"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (Running(child), line.trim().to_owned())
}

fn http_client() -> reqwest::Client {
    // reqwest is built without a TLS crypto provider; building any client needs one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

#[tokio::test]
async fn serves_with_its_options_and_stops_on_sigterm() {
    let (mut child, base) = spawn(&[
        "--listen",
        "127.0.0.1:0",
        "--services",
        "2",
        "--events-per-service",
        "30",
        "--seed",
        "5",
        "--spread",
        "uniform:10",
        "--end-at-ms",
        "1700000000000",
        "--sample",
        "--token",
        "t0k",
        "--project-id",
        "p1",
        "--max-page-size",
        "4",
        "--offset-unit",
        "record",
        "--start-exclusive",
        "--fault",
        "429@1",
        "--retry-after",
        "3",
        "--latency",
        "1ms",
    ]);
    assert!(base.starts_with("http://127.0.0.1:"), "first line: {base}");
    let client = http_client();
    let services = format!("{base}/v1/p1/services");
    let throttled = client
        .get(&services)
        .header("X-Auth-Token", "t0k")
        .send()
        .await
        .unwrap();
    assert_eq!(throttled.status(), 429);
    assert_eq!(throttled.headers()["retry-after"], "3");

    let listed: Value = serde_json::from_slice(
        &client
            .get(&services)
            .header("X-Auth-Token", "t0k")
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(listed["total_count"], 3);
    let synthetic = listed["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service_name"] == "svc-1")
        .unwrap();
    let service = synthetic["service_id"].as_str().unwrap();

    // Exclusive start, record offsets, at most 4 rows: rows 2..6 after END-290.
    let url = format!(
        "{base}/v1/p1/services/{service}/events?order=asc&offset=2&start_time=1699999999710"
    );
    let page: Value = serde_json::from_slice(
        &client
            .get(&url)
            .header("X-Auth-Token", "t0k")
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(page["total_count"], 29);
    let times: Vec<i64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["occur_time"].as_i64().unwrap())
        .collect();
    assert_eq!(
        times,
        vec![
            1_699_999_999_740,
            1_699_999_999_750,
            1_699_999_999_760,
            1_699_999_999_770
        ]
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        child.0.wait().unwrap().success(),
        "SIGTERM must end it with exit code 0"
    );
}

#[test]
fn rejects_a_bad_fault_and_explains_options_in_help() {
    let output = Command::new(env!("CARGO_BIN_EXE_modelarts-sim"))
        .args(["--fault", "teapot@1"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("teapot"));

    let help = Command::new(env!("CARGO_BIN_EXE_modelarts-sim"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    for option in [
        "--offset-unit",
        "--max-page-size",
        "--fault",
        "--spread",
        "502-html",
    ] {
        assert!(text.contains(option), "--help lacks {option}");
    }
}

#[tokio::test]
async fn credential_options_configure_iam_and_aksk() {
    let (_child, base) = spawn(&[
        "--services",
        "1",
        "--events-per-service",
        "3",
        "--project-id",
        "p9",
        "--project-name",
        "eu-de_team",
        "--iam-user",
        "dom/alice/pass/word",
        "--access-key",
        "AK1:SK1",
        "--token-lifetime",
        "1h",
    ]);
    let client = http_client();
    let login = |user: &str, password: &str| {
        serde_json::json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "password": password, "domain": {"name": "dom"}}}},
            "scope": {"project": {"name": "eu-de_team"}}
        }})
        .to_string()
    };
    let tokens_url = format!("{base}/v3/auth/tokens");
    let issued = client
        .post(&tokens_url)
        .body(login("alice", "pass/word"))
        .send()
        .await
        .unwrap();
    assert_eq!(issued.status(), 201);
    let body: Value = serde_json::from_slice(&issued.bytes().await.unwrap()).unwrap();
    let at = |key: &str| humantime::parse_rfc3339(body["token"][key].as_str().unwrap()).unwrap();
    assert_eq!(
        at("expires_at").duration_since(at("issued_at")).unwrap(),
        std::time::Duration::from_secs(3600)
    );
    assert_eq!(body["token"]["project"]["id"], "p9");
    // The given user replaces the default one.
    let default_user = client
        .post(&tokens_url)
        .body(login("demo-user", "demo-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(default_user.status(), 401);

    let host = base.trim_start_matches("http://").to_owned();
    let headers = vec![
        ("Host".to_owned(), host),
        (
            "X-Sdk-Date".to_owned(),
            aksk::sdk_date(std::time::SystemTime::now()),
        ),
        ("X-Project-Id".to_owned(), "p9".to_owned()),
    ];
    let signature = aksk::sign("GET", "/v1/p9/services", &[], &headers, b"", "AK1", "SK1").unwrap();
    let listed = client
        .get(format!("{base}/v1/p9/services"))
        .header("Authorization", signature.authorization)
        .header("X-Sdk-Date", &headers[1].1)
        .header("X-Project-Id", "p9")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
}

#[test]
fn a_bad_credential_option_is_refused_without_echoing_the_secret() {
    for (option, value) in [
        ("--iam-user", "dom/alice-no-password-SECRET1"),
        ("--access-key", "AKONLY-SECRET2"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_modelarts-sim"))
            .args([option, value])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{option}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("SECRET"), "{stderr}");
    }
}
