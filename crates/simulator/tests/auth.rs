//! IAM login, token checking and AK/SK verification over real HTTP on 127.0.0.1, with requests
//! signed by the `aksk` crate as a client would sign them.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use simulator::{AccessKey, IamUser, SimConfig, SimHandle, Simulator};
use std::time::{Duration, Instant, SystemTime};

const AK: &str = "SIMAKEXAMPLE00000001";
const SK: &str = "sim-secret-key-0123456789abcdefghijklmn";

fn start(config: SimConfig) -> SimHandle {
    Simulator::start("127.0.0.1:0".parse().unwrap(), config).unwrap()
}

fn with_key(lockout: Duration) -> SimConfig {
    SimConfig {
        events_per_service: 20,
        access_keys: vec![AccessKey::new(AK, SK)],
        aksk_lockout: lockout,
        ..SimConfig::default()
    }
}

fn http_client() -> reqwest::Client {
    // reqwest is built without a TLS crypto provider; building any client needs one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn json_of(response: reqwest::Response) -> Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

fn login_body(domain: &str, user: &str, password: &str, project: Value) -> Value {
    json!({"auth": {
        "identity": {
            "methods": ["password"],
            "password": {"user": {"name": user, "password": password, "domain": {"name": domain}}}
        },
        "scope": {"project": project}
    }})
}

async fn login(client: &reqwest::Client, sim: &SimHandle, body: &Value) -> reqwest::Response {
    client
        .post(format!("{}/v3/auth/tokens", sim.base_url()))
        .header("Content-Type", "application/json;charset=utf8")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// Logs in as the default user scoped by project id and returns the token.
async fn demo_token(client: &reqwest::Client, sim: &SimHandle) -> String {
    let body = login_body(
        "demo-domain",
        "demo-user",
        "demo-password",
        json!({"id": sim.project_id()}),
    );
    let response = login(client, sim, &body).await;
    assert_eq!(response.status(), 201);
    response.headers()["x-subject-token"]
        .to_str()
        .unwrap()
        .to_owned()
}

fn events_path(sim: &SimHandle) -> String {
    format!(
        "/v1/{}/services/{}/events",
        sim.project_id(),
        sim.service_ids()[0]
    )
}

async fn get_with_token(
    client: &reqwest::Client,
    sim: &SimHandle,
    token: &str,
) -> reqwest::Response {
    client
        .get(format!("{}{}", sim.base_url(), events_path(sim)))
        .header("X-Auth-Token", token)
        .send()
        .await
        .unwrap()
}

/// How to sign and send one GET; the defaults are a correct request.
struct Signed {
    access_key: String,
    secret_key: String,
    /// `None`: no `X-Project-Id` at all.
    project_id: Option<String>,
    security_token: Option<String>,
    date: SystemTime,
    /// Sent but not signed.
    unsigned_headers: Vec<(String, String)>,
    /// Sent instead of the canonical query that was signed.
    wire_query: Option<String>,
    /// Sent instead of the empty body that was signed.
    wire_body: Option<&'static str>,
}

impl Signed {
    fn new(sim: &SimHandle) -> Self {
        Self {
            access_key: AK.to_owned(),
            secret_key: SK.to_owned(),
            project_id: Some(sim.project_id()),
            security_token: None,
            date: SystemTime::now(),
            unsigned_headers: Vec::new(),
            wire_query: None,
            wire_body: None,
        }
    }

    async fn get(
        &self,
        client: &reqwest::Client,
        sim: &SimHandle,
        path: &str,
        params: &[(&str, &str)],
    ) -> reqwest::Response {
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut headers = vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("X-Sdk-Date".to_owned(), aksk::sdk_date(self.date)),
        ];
        if let Some(project_id) = &self.project_id {
            headers.push(("X-Project-Id".to_owned(), project_id.clone()));
        }
        if let Some(token) = &self.security_token {
            headers.push(("X-Security-Token".to_owned(), token.clone()));
        }
        // reqwest sends this Host itself.
        let mut signed = headers.clone();
        signed.push(("Host".to_owned(), sim.local_addr().to_string()));
        let signature = aksk::sign(
            "GET",
            path,
            &params,
            &signed,
            b"",
            &self.access_key,
            &self.secret_key,
        )
        .unwrap();

        let query = self
            .wire_query
            .clone()
            .unwrap_or_else(|| aksk::canonical_query(&params));
        let separator = if query.is_empty() { "" } else { "?" };
        let mut request = client
            .get(format!("{}{path}{separator}{query}", sim.base_url()))
            .header("Authorization", signature.authorization);
        for (name, value) in headers.iter().chain(&self.unsigned_headers) {
            request = request.header(name, value);
        }
        if let Some(body) = self.wire_body {
            request = request.body(body);
        }
        request.send().await.unwrap()
    }
}

async fn assert_refused(response: reqwest::Response, code: &str, message: &str) {
    assert_eq!(response.status(), 401);
    let body = json_of(response).await;
    assert_eq!(body["error_code"], code, "{body}");
    assert_eq!(body["error_msg"], message, "{body}");
    assert!(body["request_id"].as_str().is_some_and(|id| !id.is_empty()));
}

const SIGNATURE_FAILED: &str =
    "Incorrect IAM authentication information: verify aksk signature fail";
const KEY_LOCKED: &str =
    "Incorrect IAM authentication information: AK access failed to reach the limit,forbidden";

#[tokio::test]
async fn login_by_project_id_or_name_gives_a_token_the_api_accepts() {
    let sim = start(SimConfig {
        project_name: "eu-de_demo".to_owned(),
        ..SimConfig::default()
    });
    let client = http_client();

    let by_id = demo_token(&client, &sim).await;
    let response = login(
        &client,
        &sim,
        &login_body(
            "demo-domain",
            "demo-user",
            "demo-password",
            json!({"name": "eu-de_demo"}),
        ),
    )
    .await;
    assert_eq!(response.status(), 201);
    let by_name = response.headers()["x-subject-token"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = json_of(response).await;
    assert_ne!(by_id, by_name, "every login issues a new token");

    let token = &body["token"];
    assert_eq!(token["methods"], json!(["password"]));
    assert_eq!(token["project"]["id"], sim.project_id());
    assert_eq!(token["project"]["name"], "eu-de_demo");
    assert_eq!(token["project"]["domain"]["name"], "demo-domain");
    assert_eq!(token["user"]["name"], "demo-user");
    assert_eq!(token["catalog"], json!([]));
    let issued = token["issued_at"].as_str().unwrap();
    let expires = token["expires_at"].as_str().unwrap();
    // Microseconds, as IAM writes them: 2015-11-09T01:42:57.527363Z.
    assert_eq!(
        expires.len(),
        "2015-11-09T01:42:57.527363Z".len(),
        "{expires}"
    );
    let lifetime = humantime::parse_rfc3339(expires)
        .unwrap()
        .duration_since(humantime::parse_rfc3339(issued).unwrap())
        .unwrap();
    assert_eq!(lifetime, Duration::from_secs(24 * 60 * 60));

    for token in [&by_id, &by_name] {
        assert_eq!(get_with_token(&client, &sim, token).await.status(), 200);
        assert_eq!(sim.requests().last().unwrap().auth, "iam-token");
    }
    assert_eq!(
        get_with_token(&client, &sim, &sim.token()).await.status(),
        200
    );
    assert_eq!(sim.requests().last().unwrap().auth, "token");
    assert_eq!(sim.iam_logins(), 2);
    assert_eq!(sim.auth_failures(), 0);
    assert_eq!(sim.request_count(), 3, "logins are not API requests");
}

#[tokio::test]
async fn wrong_credentials_and_other_projects_get_iam_errors() {
    let sim = start(SimConfig {
        iam_users: vec![IamUser::new("dom", "alice", "right")],
        ..SimConfig::default()
    });
    let client = http_client();
    let project = json!({"id": sim.project_id()});

    for (domain, user, password) in [
        ("dom", "alice", "wrong"),
        ("dom", "bob", "right"),
        ("other", "alice", "right"),
        ("demo-domain", "demo-user", "demo-password"),
    ] {
        let response = login(
            &client,
            &sim,
            &login_body(domain, user, password, project.clone()),
        )
        .await;
        assert_eq!(response.status(), 401, "{domain}/{user}");
        assert!(response.headers().get("x-subject-token").is_none());
        let body = json_of(response).await;
        assert_eq!(
            body["error"],
            json!({"code": 401, "title": "Unauthorized", "message": "The username or password is wrong."})
        );
        assert_eq!(body["error_code"], "IAM.0062");
        assert!(!body.to_string().contains("right"));
    }

    let other = login(
        &client,
        &sim,
        &login_body("dom", "alice", "right", json!({"name": "eu-nl"})),
    )
    .await;
    assert_eq!(other.status(), 400);
    let body = json_of(other).await;
    assert_eq!(body["error_code"], "IAM.0011");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"eu-nl\""),
        "{body}"
    );

    let mut unscoped = login_body("dom", "alice", "right", Value::Null);
    unscoped["auth"].as_object_mut().unwrap().remove("scope");
    assert_eq!(login(&client, &sim, &unscoped).await.status(), 400);

    let malformed = client
        .post(format!("{}/v3/auth/tokens", sim.base_url()))
        .body(r#"{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "alice", "password": 12345"#)
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    assert!(!json_of(malformed).await.to_string().contains("12345"));

    let good = login(
        &client,
        &sim,
        &login_body("dom", "alice", "right", project.clone()),
    )
    .await;
    assert_eq!(good.status(), 201);
    assert_eq!(sim.iam_logins(), 8);
}

#[tokio::test]
async fn expired_tokens_must_be_updated_and_the_static_token_never_expires() {
    let sim = start(SimConfig::default());
    let client = http_client();
    let token = demo_token(&client, &sim).await;
    assert_eq!(get_with_token(&client, &sim, &token).await.status(), 200);

    sim.expire_tokens();
    assert_refused(
        get_with_token(&client, &sim, &token).await,
        "APIG.0307",
        "The token must be updated.",
    )
    .await;
    assert_eq!(sim.requests().last().unwrap().auth, "iam-token");
    assert_eq!(sim.auth_failures(), 1);

    assert_eq!(
        get_with_token(&client, &sim, &sim.token()).await.status(),
        200
    );
    let fresh = demo_token(&client, &sim).await;
    assert_eq!(get_with_token(&client, &sim, &fresh).await.status(), 200);

    let none = client
        .get(format!("{}{}", sim.base_url(), events_path(&sim)))
        .send()
        .await
        .unwrap();
    assert_refused(
        none,
        "APIG.0301",
        "Incorrect IAM authentication information: x-auth-token not found",
    )
    .await;
    assert_eq!(sim.requests().last().unwrap().auth, "none");
    assert_eq!(sim.auth_failures(), 2);
}

#[tokio::test]
async fn a_token_is_refused_once_its_lifetime_is_over() {
    let lifetime = Duration::from_millis(300);
    let sim = start(SimConfig {
        token_lifetime: lifetime,
        ..SimConfig::default()
    });
    let client = http_client();
    let before_login = Instant::now();
    let token = demo_token(&client, &sim).await;
    let deadline = before_login + Duration::from_secs(20);
    let refused = loop {
        let response = get_with_token(&client, &sim, &token).await;
        if response.status() != 200 {
            break response;
        }
        assert!(Instant::now() < deadline, "the token never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Issued after `before_login`, so it cannot have expired before the lifetime passed.
    assert!(before_login.elapsed() >= lifetime);
    assert_refused(refused, "APIG.0307", "The token must be updated.").await;
}

#[tokio::test]
async fn a_correctly_signed_request_is_accepted() {
    let sim = start(with_key(Duration::from_secs(300)));
    sim.add_service("svc-odd", "my svc/ä+1 *~");
    let client = http_client();
    let signed = Signed::new(&sim);

    let response = signed
        .get(
            &client,
            &sim,
            &events_path(&sim),
            &[("limit", "5"), ("order", "asc"), ("start_time", "0")],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(json_of(response).await["count"], 5);
    let logged = sim.requests().last().unwrap().clone();
    assert_eq!(logged.auth, "aksk");
    assert_eq!(logged.query["limit"], "5");

    // A query value that needs every kind of escaping, and a path without a query.
    let services = format!("/v1/{}/services", sim.project_id());
    let response = signed
        .get(
            &client,
            &sim,
            &services,
            &[("service_name", "my svc/ä+1 *~")],
        )
        .await;
    assert_eq!(response.status(), 200);
    let listed = json_of(response).await;
    assert_eq!(listed["count"], 1);
    assert_eq!(listed["services"][0]["service_id"], "svc-odd");
    assert_eq!(
        signed.get(&client, &sim, &services, &[]).await.status(),
        200
    );
    assert_eq!(sim.auth_failures(), 0);
}

#[tokio::test]
async fn unknown_keys_and_wrong_secrets_are_refused() {
    let sim = start(with_key(Duration::from_secs(300)));
    let client = http_client();
    let path = events_path(&sim);

    let wrong_secret = Signed {
        secret_key: "not-the-secret".to_owned(),
        ..Signed::new(&sim)
    };
    assert_refused(
        wrong_secret.get(&client, &sim, &path, &[]).await,
        "APIG.0301",
        SIGNATURE_FAILED,
    )
    .await;
    let unknown = Signed {
        access_key: "NOSUCHKEY".to_owned(),
        ..Signed::new(&sim)
    };
    assert_refused(
        unknown.get(&client, &sim, &path, &[]).await,
        "APIG.0301",
        "Incorrect IAM authentication information: Get secretKey failed,ak:NOSUCHKEY,err:ak not exist",
    )
    .await;
    let garbled = client
        .get(format!("{}{path}", sim.base_url()))
        .header("Authorization", "SDK-HMAC-SHA256 Access=AK")
        .send()
        .await
        .unwrap();
    assert_refused(garbled, "APIG.0301", SIGNATURE_FAILED).await;
    assert_eq!(sim.auth_failures(), 3);
}

#[tokio::test]
async fn five_consecutive_failures_lock_the_key_and_a_success_resets_the_count() {
    let sim = start(SimConfig {
        access_keys: vec![
            AccessKey::new(AK, SK),
            AccessKey::new("OTHERAK", "other-secret"),
        ],
        ..with_key(Duration::from_secs(300))
    });
    let client = http_client();
    let path = events_path(&sim);
    let good = Signed::new(&sim);
    let bad = Signed {
        secret_key: "wrong".to_owned(),
        ..Signed::new(&sim)
    };

    for _ in 0..4 {
        assert_refused(
            bad.get(&client, &sim, &path, &[]).await,
            "APIG.0301",
            SIGNATURE_FAILED,
        )
        .await;
    }
    assert_eq!(good.get(&client, &sim, &path, &[]).await.status(), 200);
    for _ in 0..4 {
        assert_refused(
            bad.get(&client, &sim, &path, &[]).await,
            "APIG.0301",
            SIGNATURE_FAILED,
        )
        .await;
    }
    assert_eq!(
        good.get(&client, &sim, &path, &[]).await.status(),
        200,
        "4 + success + 4 failures is no streak of five"
    );

    for _ in 0..5 {
        assert_refused(
            bad.get(&client, &sim, &path, &[]).await,
            "APIG.0301",
            SIGNATURE_FAILED,
        )
        .await;
    }
    // Locked: even the correct signature is refused, with the lock's message.
    assert_refused(
        good.get(&client, &sim, &path, &[]).await,
        "APIG.0301",
        KEY_LOCKED,
    )
    .await;
    assert_refused(
        bad.get(&client, &sim, &path, &[]).await,
        "APIG.0301",
        KEY_LOCKED,
    )
    .await;
    // Another key is not affected.
    let other = Signed {
        access_key: "OTHERAK".to_owned(),
        secret_key: "other-secret".to_owned(),
        ..Signed::new(&sim)
    };
    assert_eq!(other.get(&client, &sim, &path, &[]).await.status(), 200);
    assert_eq!(sim.auth_failures(), 15);
}

#[tokio::test]
async fn a_locked_key_is_accepted_again_after_the_lockout() {
    let lockout = Duration::from_millis(300);
    let sim = start(with_key(lockout));
    let client = http_client();
    let path = events_path(&sim);
    let bad = Signed {
        secret_key: "wrong".to_owned(),
        ..Signed::new(&sim)
    };
    for _ in 0..4 {
        assert_refused(
            bad.get(&client, &sim, &path, &[]).await,
            "APIG.0301",
            SIGNATURE_FAILED,
        )
        .await;
    }
    let before_fifth = Instant::now();
    assert_refused(
        bad.get(&client, &sim, &path, &[]).await,
        "APIG.0301",
        SIGNATURE_FAILED,
    )
    .await;

    let good = Signed::new(&sim);
    let deadline = before_fifth + Duration::from_secs(20);
    loop {
        let response = good.get(&client, &sim, &path, &[]).await;
        if response.status() == 200 {
            break;
        }
        assert_refused(response, "APIG.0301", KEY_LOCKED).await;
        assert!(Instant::now() < deadline, "the key was never unlocked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The lock began after `before_fifth` was taken, so it cannot have ended sooner.
    assert!(before_fifth.elapsed() >= lockout);
}

#[tokio::test]
async fn a_temporary_key_needs_its_security_token_signed() {
    let sim = start(SimConfig {
        access_keys: vec![AccessKey::temporary(AK, SK, "security-token-1")],
        ..with_key(Duration::from_secs(300))
    });
    let client = http_client();
    let path = events_path(&sim);

    let without = Signed::new(&sim);
    assert_refused(
        without.get(&client, &sim, &path, &[]).await,
        "APIG.0301",
        SIGNATURE_FAILED,
    )
    .await;
    let wrong = Signed {
        security_token: Some("security-token-2".to_owned()),
        ..Signed::new(&sim)
    };
    assert_refused(
        wrong.get(&client, &sim, &path, &[]).await,
        "APIG.0301",
        SIGNATURE_FAILED,
    )
    .await;
    let unsigned = Signed {
        unsigned_headers: vec![("X-Security-Token".to_owned(), "security-token-1".to_owned())],
        ..Signed::new(&sim)
    };
    assert_refused(
        unsigned.get(&client, &sim, &path, &[]).await,
        "APIG.0301",
        SIGNATURE_FAILED,
    )
    .await;
    let right = Signed {
        security_token: Some("security-token-1".to_owned()),
        ..Signed::new(&sim)
    };
    assert_eq!(right.get(&client, &sim, &path, &[]).await.status(), 200);
}

#[tokio::test]
async fn the_project_header_must_be_signed_and_name_the_project() {
    let sim = start(with_key(Duration::from_secs(300)));
    let client = http_client();
    let path = events_path(&sim);

    let missing = Signed {
        project_id: None,
        ..Signed::new(&sim)
    };
    let other = Signed {
        project_id: Some("ffffffffffffffffffffffffffffffff".to_owned()),
        ..Signed::new(&sim)
    };
    let unsigned = Signed {
        project_id: None,
        unsigned_headers: vec![("X-Project-Id".to_owned(), sim.project_id())],
        ..Signed::new(&sim)
    };
    for signed in [missing, other, unsigned] {
        assert_refused(
            signed.get(&client, &sim, &path, &[]).await,
            "APIG.0301",
            SIGNATURE_FAILED,
        )
        .await;
    }
    assert_eq!(
        Signed::new(&sim)
            .get(&client, &sim, &path, &[])
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn the_signed_query_and_body_must_be_what_was_sent() {
    let sim = start(with_key(Duration::from_secs(300)));
    let client = http_client();
    let path = events_path(&sim);
    let services = format!("/v1/{}/services", sim.project_id());

    let changed = Signed {
        wire_query: Some("limit=20".to_owned()),
        ..Signed::new(&sim)
    };
    assert_refused(
        changed.get(&client, &sim, &path, &[("limit", "10")]).await,
        "APIG.0301",
        SIGNATURE_FAILED,
    )
    .await;
    // Form encoding (space as `+`) is not the RFC 3986 query that was signed.
    let form = Signed {
        wire_query: Some("service_name=a+b".to_owned()),
        ..Signed::new(&sim)
    };
    assert_refused(
        form.get(&client, &sim, &services, &[("service_name", "a b")])
            .await,
        "APIG.0301",
        SIGNATURE_FAILED,
    )
    .await;
    let extra = Signed {
        wire_query: Some("limit=10&offset=1".to_owned()),
        ..Signed::new(&sim)
    };
    assert_refused(
        extra.get(&client, &sim, &path, &[("limit", "10")]).await,
        "APIG.0301",
        SIGNATURE_FAILED,
    )
    .await;
    let body = Signed {
        wire_body: Some("{}"),
        ..Signed::new(&sim)
    };
    assert_refused(
        body.get(&client, &sim, &path, &[]).await,
        "APIG.0301",
        SIGNATURE_FAILED,
    )
    .await;

    // The same parameters in another order on the wire are the same query.
    let reordered = Signed {
        wire_query: Some("order=asc&limit=10".to_owned()),
        ..Signed::new(&sim)
    };
    let response = reordered
        .get(&client, &sim, &path, &[("limit", "10"), ("order", "asc")])
        .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn the_signing_time_must_be_within_15_minutes() {
    let sim = start(with_key(Duration::from_secs(300)));
    let client = http_client();
    let path = events_path(&sim);
    let minutes = |n: u64| Duration::from_secs(n * 60);

    for date in [
        SystemTime::now() - minutes(16),
        SystemTime::now() + minutes(16),
    ] {
        let skewed = Signed {
            date,
            ..Signed::new(&sim)
        };
        assert_refused(
            skewed.get(&client, &sim, &path, &[]).await,
            "APIG.0301",
            SIGNATURE_FAILED,
        )
        .await;
    }
    for date in [
        SystemTime::now() - minutes(14),
        SystemTime::now() + minutes(14),
    ] {
        let skewed = Signed {
            date,
            ..Signed::new(&sim)
        };
        assert_eq!(skewed.get(&client, &sim, &path, &[]).await.status(), 200);
    }
}

#[tokio::test]
async fn rotated_keys_take_effect_at_once() {
    let sim = start(with_key(Duration::from_secs(300)));
    let client = http_client();
    let path = events_path(&sim);
    assert_eq!(
        Signed::new(&sim)
            .get(&client, &sim, &path, &[])
            .await
            .status(),
        200
    );

    sim.set_access_keys(vec![AccessKey::new("NEWAK", "new-secret")]);
    assert_eq!(
        Signed::new(&sim)
            .get(&client, &sim, &path, &[])
            .await
            .status(),
        401
    );
    let rotated = Signed {
        access_key: "NEWAK".to_owned(),
        secret_key: "new-secret".to_owned(),
        ..Signed::new(&sim)
    };
    assert_eq!(rotated.get(&client, &sim, &path, &[]).await.status(), 200);
}
