//! Real-cloud credentials against the simulator over real HTTP: IAM password
//! login (project learned from the token, renewal when the token expires in
//! the middle of a pull, one login for concurrent requests), AK/SK signing
//! (permanent and temporary keys, rotation), refusals that are never retried
//! (invariant 7) and never show a secret, and TLS settings.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use harness::{Harness, SERVICE, check_exactly_once, number, pull_all, start_with, uniform_events};
use simulator::{AccessKey, Behaviour, IamUser, SimConfig};
use source::{
    AuthKind, AuthSettings, EventsQuery, ModelArtsClient, Secret, SecretSource, SourceError,
    TlsSettings,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const BASE: i64 = 1_700_000_000_000;
const DOMAIN: &str = "OTC00000000001000000042";
const USER: &str = "shipper";
const PASSWORD: &str = "pw-Zq81-correct-horse";
const AK: &str = "HPUAEXAMPLEAK1234567";
const SK: &str = "sk-ExampleSecretKey0123456789abcdefghij";
const SECURITY_TOKEN: &str = "st-gQpjbi1ub3J0aC00EXAMPLEsecuritytoken";

fn iam_config() -> SimConfig {
    SimConfig {
        iam_users: vec![IamUser::new(DOMAIN, USER, PASSWORD)],
        ..SimConfig::default()
    }
}

fn password_auth(harness: &Harness, password: &str, project: Option<&str>) -> AuthSettings {
    AuthSettings::Password {
        iam_endpoint: harness.sim.base_url(),
        domain: DOMAIN.to_owned(),
        user: USER.to_owned(),
        password: SecretSource::Inline(Secret::new(password)),
        project: project.map(str::to_owned),
    }
}

fn aksk_auth(secret_key: SecretSource, security_token: Option<SecretSource>) -> AuthSettings {
    AuthSettings::Aksk {
        access_key: AK.to_owned(),
        secret_key,
        security_token,
    }
}

fn inline(secret: &str) -> SecretSource {
    SecretSource::Inline(Secret::new(secret))
}

fn write(path: &Path, text: &str) -> SecretSource {
    std::fs::write(path, text).unwrap();
    SecretSource::File(path.to_owned())
}

/// The error's text and Debug form must not hold any of `secrets`.
fn assert_no_secret(what: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!what.contains(secret), "a secret leaked into: {what}");
    }
}

fn first_page() -> EventsQuery {
    EventsQuery {
        start_time: None,
        end_time: None,
        offset: 0,
        limit: 10,
        event_type: None,
    }
}

#[tokio::test]
async fn password_login_then_events() {
    let mut harness = start_with(iam_config(), uniform_events(BASE, 35));
    harness.settings.auth = password_auth(&harness, PASSWORD, None);
    let client = ModelArtsClient::new(&harness.settings).unwrap();
    assert_eq!(client.auth_kind(), AuthKind::Password);
    client.authenticate().await.unwrap();
    let delivered = pull_all(&client, &harness.sim.project_id(), 10)
        .await
        .unwrap();
    check_exactly_once(&harness.expected(), &delivered).unwrap();
    // One login serves the whole pull, and every request carried its token.
    assert_eq!(harness.sim.iam_logins(), 1);
    assert_eq!(harness.sim.auth_failures(), 0);
    assert!(
        harness
            .sim
            .requests()
            .iter()
            .all(|r| r.auth == "iam-token" && r.status == 200)
    );
}

#[tokio::test]
async fn project_is_learned_from_the_token() {
    let mut harness = start_with(iam_config(), uniform_events(BASE, 12));
    harness.settings.project_id = None;
    let name = harness.sim.project_name();
    harness.settings.auth = password_auth(&harness, PASSWORD, Some(&name));
    let client = ModelArtsClient::new(&harness.settings).unwrap();
    assert_eq!(client.project_id(), "", "not known before the login");
    client.authenticate().await.unwrap();
    assert_eq!(client.project_id(), harness.sim.project_id());
    let delivered = pull_all(&client, &client.project_id(), 10).await.unwrap();
    let expected = number(&harness.sim.project_id(), harness.sim.events(SERVICE));
    check_exactly_once(&expected, &delivered).unwrap();
    let project_path = format!("/v1/{}/", harness.sim.project_id());
    assert!(
        harness
            .sim
            .requests()
            .iter()
            .all(|r| r.path.starts_with(&project_path))
    );
}

#[tokio::test]
async fn the_first_request_logs_in_when_authenticate_was_not_called() {
    let mut harness = start_with(iam_config(), uniform_events(BASE, 5));
    harness.settings.project_id = None;
    let name = harness.sim.project_name();
    harness.settings.auth = password_auth(&harness, PASSWORD, Some(&name));
    let client = ModelArtsClient::new(&harness.settings).unwrap();
    let page = client.service_events(SERVICE, &first_page()).await.unwrap();
    assert_eq!(page.total_count, 5);
    assert_eq!(harness.sim.iam_logins(), 1);
    assert_eq!(client.project_id(), harness.sim.project_id());
}

#[tokio::test]
async fn a_token_that_expires_during_a_long_pull_is_renewed() {
    let config = SimConfig {
        token_lifetime: Duration::from_millis(300),
        behaviour: Behaviour {
            latency: Duration::from_millis(4),
            ..Behaviour::default()
        },
        ..iam_config()
    };
    // 400 events in pages of 5: at least 80 requests of at least 4 ms each,
    // so the pull outlives the first token.
    let mut harness = start_with(config, uniform_events(BASE, 400));
    harness.settings.auth = password_auth(&harness, PASSWORD, None);
    let client = ModelArtsClient::new(&harness.settings).unwrap();
    let delivered = pull_all(&client, &harness.sim.project_id(), 5)
        .await
        .unwrap();
    check_exactly_once(&harness.expected(), &delivered).unwrap();
    let logins = harness.sim.iam_logins();
    let requests = harness.sim.request_count();
    assert!(logins >= 2, "the token outlived the pull? {logins} logins");
    // Renewed once per lifetime, not per request.
    assert!(
        logins * 2 <= requests,
        "{logins} logins for {requests} requests"
    );
}

#[tokio::test]
async fn a_refused_expired_token_is_renewed_once_and_the_request_retried() {
    let mut harness = start_with(iam_config(), uniform_events(BASE, 5));
    harness.settings.auth = password_auth(&harness, PASSWORD, None);
    let client = ModelArtsClient::new(&harness.settings).unwrap();
    client.authenticate().await.unwrap();
    // The cached token still looks fresh to the client; the server says it is not.
    harness.sim.expire_tokens();
    let page = client.service_events(SERVICE, &first_page()).await.unwrap();
    assert_eq!(page.total_count, 5);
    assert_eq!(harness.sim.iam_logins(), 2);
    assert_eq!(harness.sim.auth_failures(), 1);
    let statuses: Vec<u16> = harness.sim.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![401, 200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_one_login() {
    let config = SimConfig {
        behaviour: Behaviour {
            latency: Duration::from_millis(2),
            ..Behaviour::default()
        },
        ..iam_config()
    };
    let mut harness = start_with(config, uniform_events(BASE, 5));
    harness.settings.auth = password_auth(&harness, PASSWORD, None);
    let client = Arc::new(ModelArtsClient::new(&harness.settings).unwrap());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let client = client.clone();
        tasks.spawn(async move { client.service_events(SERVICE, &first_page()).await });
    }
    while let Some(page) = tasks.join_next().await {
        assert_eq!(page.unwrap().unwrap().total_count, 5);
    }
    assert_eq!(harness.sim.iam_logins(), 1);
    assert_eq!(harness.sim.request_count(), 8);
}

#[tokio::test]
async fn a_wrong_password_is_one_login_and_an_auth_error_without_the_password() {
    let mut harness = start_with(iam_config(), uniform_events(BASE, 5));
    let wrong = "pw-WRONG-guess-7781";
    harness.settings.auth = password_auth(&harness, wrong, None);
    let client = ModelArtsClient::new(&harness.settings).unwrap();
    let error = client.authenticate().await.unwrap_err();
    assert!(
        matches!(
            &error,
            SourceError::Auth { auth: AuthKind::Password, status: 401, code: Some(code), .. }
                if code == "IAM.0062"
        ),
        "{error:?}"
    );
    assert_eq!(
        harness.sim.iam_logins(),
        1,
        "an auth refusal is not retried"
    );
    let text = error.to_string();
    assert!(
        text.contains(&harness.sim.base_url()),
        "names the IAM endpoint: {text}"
    );
    assert!(text.contains("401") && text.contains("IAM.0062") && text.contains("password"));
    assert_no_secret(&text, &[wrong, PASSWORD]);
    assert_no_secret(&format!("{error:?}"), &[wrong, PASSWORD]);
    assert_no_secret(&format!("{client:?}"), &[wrong, PASSWORD]);

    // The services' requests of the same run fail with the refusal without
    // trying the same password again (IAM locks users too).
    for _ in 0..3 {
        let error = client
            .service_events(SERVICE, &first_page())
            .await
            .unwrap_err();
        assert!(matches!(error, SourceError::Auth { .. }));
    }
    assert_eq!(harness.sim.iam_logins(), 1);
    assert_eq!(
        harness.sim.request_count(),
        0,
        "no API request without a token"
    );
    // A later poll of the same process (`runner run`) is told to wait: the hold is
    // the source's one lockout policy, whoever asks.
    let held = client.authenticate().await.unwrap_err();
    assert!(
        matches!(
            &held,
            SourceError::HeldBack {
                auth: AuthKind::Password,
                ..
            }
        ),
        "{held:?}"
    );
    assert!(held.to_string().contains("not tried again"), "{held}");
    assert_no_secret(&format!("{held} {held:?}"), &[wrong, PASSWORD]);
    assert_eq!(harness.sim.iam_logins(), 1);
    // The next run (a new process) tries again.
    let next_run = ModelArtsClient::new(&harness.settings).unwrap();
    assert!(next_run.authenticate().await.is_err());
    assert_eq!(harness.sim.iam_logins(), 2);
}

#[tokio::test]
async fn a_password_file_is_read_again_at_each_login() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    let mut harness = start_with(iam_config(), uniform_events(BASE, 5));
    harness.settings.auth = AuthSettings::Password {
        iam_endpoint: format!("{}/v3/", harness.sim.base_url()),
        domain: DOMAIN.to_owned(),
        user: USER.to_owned(),
        password: write(&file, "stale-password\n"),
        project: None,
    };
    let client = ModelArtsClient::new(&harness.settings).unwrap();
    let error = client.authenticate().await.unwrap_err();
    assert!(matches!(error, SourceError::Auth { status: 401, .. }));
    write(&file, &format!("{PASSWORD}\n"));
    client.authenticate().await.unwrap();
    assert_eq!(harness.sim.iam_logins(), 2);
}

#[tokio::test]
async fn aksk_signed_requests_are_accepted() {
    let config = SimConfig {
        access_keys: vec![AccessKey::new(AK, SK)],
        ..SimConfig::default()
    };
    let mut harness = start_with(config, uniform_events(BASE, 25));
    harness.settings.auth = aksk_auth(inline(SK), None);
    let client = ModelArtsClient::new(&harness.settings).unwrap();
    assert_eq!(client.auth_kind(), AuthKind::Aksk);
    client.authenticate().await.unwrap();
    let delivered = pull_all(&client, &harness.sim.project_id(), 10)
        .await
        .unwrap();
    check_exactly_once(&harness.expected(), &delivered).unwrap();
    assert_eq!(harness.sim.auth_failures(), 0);
    assert!(harness.sim.requests().iter().all(|r| r.auth == "aksk"));
    // The query went on the wire exactly as signed, including the services
    // list's (authenticate) and the events' (start_time, end_time, offset).
    assert!(harness.sim.requests().len() >= 4);
}

#[tokio::test]
async fn a_wrong_secret_key_is_one_request_and_an_auth_error_without_the_key() {
    let config = SimConfig {
        access_keys: vec![AccessKey::new(AK, SK)],
        ..SimConfig::default()
    };
    let mut harness = start_with(config, uniform_events(BASE, 5));
    let wrong = "sk-WRONG-0000000000000000000000000000";
    harness.settings.auth = aksk_auth(inline(wrong), None);
    let client = ModelArtsClient::new(&harness.settings).unwrap();
    let error = client.authenticate().await.unwrap_err();
    assert!(
        matches!(
            &error,
            SourceError::Auth { auth: AuthKind::Aksk, status: 401, code: Some(code), .. }
                if code == "APIG.0301"
        ),
        "{error:?}"
    );
    assert_eq!(
        harness.sim.request_count(),
        1,
        "no retry of a bad signature"
    );
    assert_eq!(harness.sim.auth_failures(), 1);
    let text = error.to_string();
    assert!(
        text.contains("APIG.0301") && text.contains("aksk"),
        "{text}"
    );
    assert_no_secret(&text, &[wrong, SK]);
    assert_no_secret(&format!("{error:?}"), &[wrong, SK]);
    assert_no_secret(&format!("{client:?}"), &[wrong, SK]);

    // Each service of the run fails at once: the refused key is not
    // presented again, so it never reaches the five-failure lockout.
    for _ in 0..6 {
        let error = client
            .service_events(SERVICE, &first_page())
            .await
            .unwrap_err();
        assert!(matches!(error, SourceError::Auth { .. }));
    }
    assert_eq!(harness.sim.request_count(), 1);
}

#[tokio::test]
async fn a_refused_key_is_tried_again_as_soon_as_its_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let sk_file = dir.path().join("sk");
    let config = SimConfig {
        access_keys: vec![AccessKey::new(AK, SK)],
        ..SimConfig::default()
    };
    let mut harness = start_with(config, uniform_events(BASE, 5));
    harness.settings.auth = aksk_auth(write(&sk_file, "sk-old-and-revoked-000000000"), None);
    let client = ModelArtsClient::new(&harness.settings).unwrap();
    assert!(client.authenticate().await.is_err());
    assert!(client.service_events(SERVICE, &first_page()).await.is_err());
    assert_eq!(harness.sim.request_count(), 1);
    write(&sk_file, SK);
    let page = client.service_events(SERVICE, &first_page()).await.unwrap();
    assert_eq!(page.total_count, 5);
    assert_eq!(harness.sim.request_count(), 2);
}

#[tokio::test]
async fn temporary_credentials_and_their_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let sk_file = dir.path().join("sk");
    let token_file = dir.path().join("security-token");
    let config = SimConfig {
        access_keys: vec![AccessKey::temporary(AK, SK, SECURITY_TOKEN)],
        ..SimConfig::default()
    };
    let mut harness = start_with(config, uniform_events(BASE, 5));
    harness.settings.auth = aksk_auth(
        write(&sk_file, SK),
        Some(write(&token_file, &format!("{SECURITY_TOKEN}\n"))),
    );
    let client = ModelArtsClient::new(&harness.settings).unwrap();
    client.authenticate().await.unwrap();
    assert_eq!(harness.sim.auth_failures(), 0);

    // The temporary key is rotated: new secret key and security token.
    let (new_sk, new_token) = ("sk-rotated-1111111111111111111111111", "st-rotated-2222");
    harness
        .sim
        .set_access_keys(vec![AccessKey::temporary(AK, new_sk, new_token)]);
    write(&sk_file, new_sk);
    write(&token_file, new_token);
    // The next run's authenticate() reads the files again.
    client.authenticate().await.unwrap();
    assert_eq!(harness.sim.auth_failures(), 0);
    let page = client.service_events(SERVICE, &first_page()).await.unwrap();
    assert_eq!(page.total_count, 5);

    // Rotated again without a new authenticate(): one refusal (not retried),
    // after which the files are read again and the next request passes.
    let (third_sk, third_token) = ("sk-rotated-3333333333333333333333333", "st-rotated-4444");
    harness
        .sim
        .set_access_keys(vec![AccessKey::temporary(AK, third_sk, third_token)]);
    write(&sk_file, third_sk);
    write(&token_file, third_token);
    let error = client
        .service_events(SERVICE, &first_page())
        .await
        .unwrap_err();
    assert!(matches!(error, SourceError::Auth { .. }));
    assert_no_secret(
        &format!("{error} {error:?} {client:?}"),
        &[SK, new_sk, third_sk, SECURITY_TOKEN, new_token, third_token],
    );
    assert_eq!(harness.sim.auth_failures(), 1);
    let page = client.service_events(SERVICE, &first_page()).await.unwrap();
    assert_eq!(page.total_count, 5);
}

#[tokio::test]
async fn a_missing_security_token_is_refused() {
    let config = SimConfig {
        access_keys: vec![AccessKey::temporary(AK, SK, SECURITY_TOKEN)],
        ..SimConfig::default()
    };
    let mut harness = start_with(config, Vec::new());
    harness.settings.auth = aksk_auth(inline(SK), None);
    let client = ModelArtsClient::new(&harness.settings).unwrap();
    let error = client.authenticate().await.unwrap_err();
    assert!(
        matches!(error, SourceError::Auth { status: 401, .. }),
        "{error:?}"
    );
    assert_eq!(harness.sim.request_count(), 1);
}

#[tokio::test]
async fn a_wrong_static_token_is_an_auth_error_without_the_token() {
    let mut harness = Harness::start(Behaviour::default(), Vec::new());
    let wrong = "MIIwrong-static-token-9911";
    harness.settings.auth = AuthSettings::Token {
        token: inline(wrong),
    };
    let client = ModelArtsClient::new(&harness.settings).unwrap();
    assert_eq!(client.auth_kind(), AuthKind::Token);
    let error = client.authenticate().await.unwrap_err();
    assert!(
        matches!(
            error,
            SourceError::Auth {
                auth: AuthKind::Token,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(harness.sim.request_count(), 1);
    assert_no_secret(&format!("{error} {error:?} {client:?}"), &[wrong]);
}

#[test]
fn a_ca_file_that_is_not_pem_is_a_setup_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let harness_settings = || {
        let sim = simulator::Simulator::start("127.0.0.1:0".parse().unwrap(), SimConfig::default())
            .unwrap();
        harness::settings_for(&sim)
    };
    let mut settings = harness_settings();
    for (name, content) in [
        ("ca.der", &[0x30u8, 0x82, 0x01, 0x0a, 0x02, 0x82][..]),
        ("ca.txt", b"just some text\n"),
        (
            "broken.pem",
            b"-----BEGIN CERTIFICATE-----\n!!not base64!!\n-----END CERTIFICATE-----\n",
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        settings.tls = TlsSettings {
            ca_file: Some(path.clone()),
            insecure_skip_verify: false,
        };
        let error = ModelArtsClient::new(&settings).unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, SourceError::Setup(_)), "{name}: {error:?}");
        assert!(text.contains(&path.display().to_string()), "{name}: {text}");
        assert!(text.contains("PEM"), "{name}: {text}");
    }
    let missing = dir.path().join("missing.pem");
    settings.tls.ca_file = Some(missing.clone());
    let text = ModelArtsClient::new(&settings).unwrap_err().to_string();
    assert!(text.contains(&missing.display().to_string()), "{text}");
}

/// A self-signed CA (EC P-256, valid until 2126).
const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBjDCCATGgAwIBAgIUCQTRpHsFUfF1YO4zhbyvl3CFgXAwCgYIKoZIzj0EAwIw
GjEYMBYGA1UEAwwPdGVzdC1jYS5pbnZhbGlkMCAXDTI2MTEyNzA4NDE1MVoYDzIx
MjYxMTAzMDg0MTUxWjAaMRgwFgYDVQQDDA90ZXN0LWNhLmludmFsaWQwWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAARHzAa9+zIKHmm75CN8z3RpTEjM5U0fA5HPYiXV
X+e0ZmQg/59dbMyhaJVWOHSdg6MKoFE8Unw5KbQcwIQBiQfuo1MwUTAdBgNVHQ4E
FgQUJaMJ5U8yxHowV+lmkxlkSmFBEkAwHwYDVR0jBBgwFoAUJaMJ5U8yxHowV+lm
kxlkSmFBEkAwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNJADBGAiEAisEs
lWvM0jVGKvLxXOYeyuxHR1nvw3RjCFvRaMqans8CIQDs3fkK8IHaTPwBHZ2vmawD
M7JjFVvxvZjOLJ5ieFGukA==
-----END CERTIFICATE-----
";

#[tokio::test]
async fn a_pem_ca_file_and_skipping_verification_still_talk_to_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, TEST_CA).unwrap();
    let mut harness = Harness::start(Behaviour::default(), uniform_events(BASE, 3));
    harness.settings.tls = TlsSettings {
        ca_file: Some(path),
        insecure_skip_verify: true,
    };
    let client = ModelArtsClient::new(&harness.settings).unwrap();
    client.authenticate().await.unwrap();
    let page = client.service_events(SERVICE, &first_page()).await.unwrap();
    assert_eq!(page.total_count, 3);
}
