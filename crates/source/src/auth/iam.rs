//! IAM password login: `POST {iam}/v3/auth/tokens` with the password method, scoped to the
//! source's project; the token (`X-Subject-Token`) is cached and renewed before it expires,
//! its lifetime measured on IAM's clock. Concurrent requests wait for one login. The
//! password is read from its file at every login.
//!
//! API: "Obtaining a User Token Through Password Authentication"
//! (<https://docs.otc.t-systems.com/identity-access-management/api-ref/apis/token_management/obtaining_a_user_token_through_password_authentication.html>).

use super::redact::redact;
use super::secrets::read_secret;
use crate::error::SourceError;
use crate::response::{self, Peer, Refusal};
use crate::retry::Backoff;
use crate::secret::Secret;
use crate::settings::{AuthKind, SecretSource};
use serde_json::{Value, json};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::{info, warn};

/// A token is renewed when less than this share of its lifetime is left…
const RENEW_SHARE: u32 = 10;
/// …or less than this, whichever is smaller (tokens live 24 h on OTC).
const RENEW_MARGIN: Duration = Duration::from_secs(600);
/// Longest lifetime believed (OTC tokens live 24 h).
const LONGEST_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// Lifetime assumed when IAM's answer has no readable `expires_at`.
const ASSUMED_LIFETIME: Duration = Duration::from_secs(3600);

/// An IAM token from a password login.
#[derive(Debug)]
pub(crate) struct IamToken {
    pub value: Secret,
    /// `token.project.id`.
    project_id: Option<String>,
    /// When to log in again, ahead of expiry.
    renew_at: Instant,
    expires_at: Instant,
}

/// What a password login needs, from the source's settings.
#[derive(Debug)]
pub(crate) struct IamSettings {
    /// IAM base URL, with or without `/v3`.
    pub endpoint: String,
    pub domain: String,
    pub user: String,
    pub password: SecretSource,
    pub project_name: Option<String>,
    pub project_id: Option<String>,
    pub max_response_bytes: u64,
    /// IAM as errors name it when it does not answer.
    pub peer: Peer,
}

/// The password login of one source and its cached token.
#[derive(Debug)]
pub(crate) struct IamLogin {
    source: String,
    http: reqwest::Client,
    /// IAM base URL without `/v3`.
    endpoint: String,
    domain: String,
    user: String,
    password: SecretSource,
    project_name: Option<String>,
    project_id: Option<String>,
    backoff: Backoff,
    max_response_bytes: u64,
    peer: Peer,
    /// Held while logging in, so that concurrent requests wait for one
    /// login instead of each starting their own.
    current: Mutex<Option<Arc<IamToken>>>,
    learned_project: OnceLock<String>,
}

impl IamLogin {
    pub fn new(
        source: &str,
        http: reqwest::Client,
        backoff: Backoff,
        settings: IamSettings,
    ) -> Self {
        let base = settings.endpoint.trim_end_matches('/');
        let base = base.strip_suffix("/v3").unwrap_or(base);
        IamLogin {
            source: source.to_owned(),
            http,
            endpoint: base.to_owned(),
            domain: settings.domain,
            user: settings.user,
            password: settings.password,
            project_name: settings.project_name,
            project_id: settings.project_id,
            backoff,
            max_response_bytes: settings.max_response_bytes,
            peer: settings.peer,
            current: Mutex::new(None),
            learned_project: OnceLock::new(),
        }
    }

    /// The project id found in the IAM token, once a login has happened.
    pub fn learned_project(&self) -> Option<String> {
        self.learned_project.get().cloned()
    }

    /// The password as its source gives it now.
    pub async fn password(&self) -> Result<Secret, SourceError> {
        read_secret(&self.source, "password", &self.password).await
    }

    /// A token that is not due for renewal, logging in if needed.
    pub async fn token(&self) -> Result<Arc<IamToken>, SourceError> {
        let mut current = self.current.lock().await;
        let now = Instant::now();
        if let Some(token) = current.as_ref()
            && now < token.renew_at
        {
            return Ok(token.clone());
        }
        match self.login().await {
            Ok(token) => {
                if let Some(id) = &token.project_id
                    && self.learned_project.set(id.clone()).is_ok()
                    && self.project_id.is_none()
                {
                    info!(source = %self.source, project_id = %id, "Project id taken from the IAM token.");
                }
                let token = Arc::new(token);
                *current = Some(token.clone());
                Ok(token)
            }
            Err(error) => match current.as_ref() {
                // The old token still works for a while: use it, and try
                // again when half of what is left has passed.
                Some(old) if now < old.expires_at => {
                    warn!(
                        source = %self.source,
                        error = %error,
                        "IAM token renewal failed; using the current token until it expires."
                    );
                    let kept = Arc::new(IamToken {
                        value: old.value.clone(),
                        project_id: old.project_id.clone(),
                        renew_at: now + (old.expires_at - now) / 2,
                        expires_at: old.expires_at,
                    });
                    *current = Some(kept.clone());
                    Ok(kept)
                }
                _ => Err(error),
            },
        }
    }

    /// Drops `token` if it is still the current one, so that the next request logs in
    /// again (a request racing a renewal does not renew twice).
    pub async fn invalidate(&self, token: &Arc<IamToken>) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, token)) {
            *current = None;
        }
    }

    /// A login with retries on throttling (IAM.0012), 5xx and transport
    /// errors; a refusal (401/403) comes back at once. A login is a probe of IAM: an
    /// IAM that cannot be reached or does not answer gets the small budget.
    async fn login(&self) -> Result<IamToken, SourceError> {
        let mut attempt = 0u32;
        loop {
            let error = match self.login_once().await {
                Ok(token) => return Ok(token),
                Err(error) => error,
            };
            match self.backoff.probe_retry_delay(attempt, &error) {
                Some(delay) => {
                    warn!(
                        source = %self.source,
                        attempt = attempt + 1,
                        delay_ms = delay.as_millis() as u64,
                        error = %error,
                        "IAM login failed; retrying."
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                None => return Err(error),
            }
        }
    }

    async fn login_once(&self) -> Result<IamToken, SourceError> {
        let request = format!("POST {}/v3/auth/tokens", self.endpoint);
        let password = self.password().await?;
        let scope = match (&self.project_name, &self.project_id) {
            (Some(name), _) => json!({ "project": { "name": name } }),
            (None, Some(id)) => json!({ "project": { "id": id } }),
            (None, None) => {
                return Err(SourceError::Setup(format!(
                    "source {}: no project to scope the IAM token to",
                    self.source
                )));
            }
        };
        let body = json!({
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": self.user,
                            "password": password.expose(),
                            "domain": { "name": self.domain },
                        }
                    }
                },
                "scope": scope,
            }
        });
        let sent = Instant::now();
        let (answer, headers) = response::send(
            self.http
                .post(format!("{}/v3/auth/tokens?nocatalog=true", self.endpoint))
                .header("Content-Type", "application/json;charset=utf8")
                .header("Accept", "application/json")
                .body(body.to_string()),
            &request,
            self.max_response_bytes,
            &self.peer,
        )
        .await?;
        if !answer.is_success() {
            let refusal = Refusal {
                request: &request,
                auth: AuthKind::Password,
                service_id: None,
                project_key: None,
            };
            return Err(answer.error(refusal, |message| redact(message, [&password])));
        }
        let token = headers
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(|v| Secret::new(v.trim()))
            .filter(|t| !t.expose().is_empty())
            .ok_or_else(|| SourceError::BadBody {
                request: request.clone(),
                message: "no X-Subject-Token header in IAM's answer".to_owned(),
            })?;
        Ok(self.read_token(token, &answer.body, sent))
    }

    /// The token's lifetime (from IAM's clock: `expires_at - issued_at`)
    /// placed on our clock from the moment the login was sent.
    fn read_token(&self, value: Secret, body: &[u8], sent: Instant) -> IamToken {
        let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let token = json.get("token").unwrap_or(&Value::Null);
        let lifetime = token_lifetime(token, SystemTime::now()).unwrap_or_else(|| {
            warn!(
                source = %self.source,
                assumed_secs = ASSUMED_LIFETIME.as_secs(),
                "The IAM token has no readable expires_at; assuming a lifetime."
            );
            ASSUMED_LIFETIME
        });
        // A far-off expiry (a clock gone wrong) must not overflow an Instant.
        let lifetime = lifetime.min(LONGEST_LIFETIME);
        let margin = renew_margin(lifetime);
        let project_id = token
            .get("project")
            .and_then(|p| p.get("id"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        IamToken {
            value,
            project_id,
            renew_at: sent + (lifetime - margin),
            expires_at: sent + lifetime,
        }
    }
}

/// How long an IAM token lives: `expires_at - issued_at` (both IAM's clock,
/// so our clock's skew does not matter), or `expires_at - now` without
/// `issued_at`.
fn token_lifetime(token: &Value, now: SystemTime) -> Option<Duration> {
    let time = |key: &str| {
        token
            .get(key)
            .and_then(Value::as_str)
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
    };
    let expires = time("expires_at")?;
    expires
        .duration_since(time("issued_at").unwrap_or(now))
        .ok()
}

/// How long before expiry a token is renewed: a tenth of its lifetime, or
/// ten minutes, whichever is smaller.
fn renew_margin(lifetime: Duration) -> Duration {
    (lifetime / RENEW_SHARE).min(RENEW_MARGIN)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn token_lifetime_is_measured_on_iams_clock() {
        let token = json!({
            "issued_at": "2015-11-08T01:42:57.527363Z",
            "expires_at": "2015-11-09T01:42:57.527363Z",
        });
        // Our clock is years later: only IAM's two times count.
        let now = SystemTime::now();
        assert_eq!(
            token_lifetime(&token, now),
            Some(Duration::from_secs(86_400))
        );
        let short = json!({
            "issued_at": "2024-01-15T09:30:00.000000Z",
            "expires_at": "2024-01-15T09:30:00.300000Z",
        });
        assert_eq!(
            token_lifetime(&short, now),
            Some(Duration::from_millis(300))
        );
        let no_issue = json!({ "expires_at": "2024-01-15T09:30:10Z" });
        let then = humantime::parse_rfc3339("2024-01-15T09:30:00Z").unwrap();
        assert_eq!(
            token_lifetime(&no_issue, then),
            Some(Duration::from_secs(10))
        );
        assert_eq!(token_lifetime(&json!({}), now), None);
        assert_eq!(token_lifetime(&json!({"expires_at": "soon"}), now), None);
    }

    #[test]
    fn tokens_are_renewed_a_tenth_early_at_most_ten_minutes() {
        assert_eq!(
            renew_margin(Duration::from_secs(86_400)),
            Duration::from_secs(600)
        );
        assert_eq!(
            renew_margin(Duration::from_secs(3_000)),
            Duration::from_secs(300)
        );
        assert_eq!(
            renew_margin(Duration::from_millis(300)),
            Duration::from_millis(30)
        );
    }
}
