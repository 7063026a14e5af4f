//! Credentials of one source and how they go on a request: a static IAM
//! token (`X-Auth-Token`), an IAM password login whose token is cached and
//! renewed before it expires, or AK/SK request signing (`SDK-HMAC-SHA256`,
//! with `X-Security-Token` for temporary credentials).
//!
//! APIs: "Obtaining a User Token Through Password Authentication",
//! `POST /v3/auth/tokens`
//! (<https://docs.otc.t-systems.com/identity-access-management/api-ref/apis/token_management/obtaining_a_user_token_through_password_authentication.html>),
//! and the API request signing guide
//! (<https://support.huaweicloud.com/intl/en-us/devg-apisign/api-sign-algorithm-002.html>).
//!
//! Secrets are read from their files here, again at each token renewal and,
//! for AK/SK, at each `authenticate()` and after each refusal, so that
//! rotated credentials are picked up without a restart. No secret is ever
//! put in an error, a log line or `Debug` output.

use crate::client::{error_chain, error_fields, read_body};
use crate::error::{SourceError, THROTTLING_CODES};
use crate::retry::Backoff;
use crate::secret::Secret;
use crate::settings::{AuthSettings, SecretSource, SourceSettings};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use std::sync::{Arc, OnceLock, RwLock};
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
/// How long a refusal of unchanged credentials is answered without asking
/// the server again (the gateway's AK/SK lockout lasts five minutes).
const HOLD_REFUSAL: Duration = Duration::from_secs(300);
/// Lifetime assumed when IAM's answer has no readable `expires_at`.
const ASSUMED_LIFETIME: Duration = Duration::from_secs(3600);

/// The parts of a request that AK/SK signing covers.
#[derive(Debug)]
pub(crate) struct Outgoing<'a> {
    pub method: &'a str,
    /// The path as sent (endpoint path prefix included), without the query.
    pub path: &'a str,
    /// The query parameters; the wire query is `aksk::canonical_query` of them.
    pub params: &'a [(String, String)],
    pub body: &'a [u8],
    pub project_id: &'a str,
}

/// Which credential a request carried, so that a refusal renews only the
/// token that was refused (a request racing a renewal does not renew twice).
#[derive(Debug, Clone)]
pub(crate) enum Presented {
    Static,
    IamToken(Arc<IamToken>),
}

/// The credentials of one source.
#[derive(Debug)]
pub(crate) struct Authenticator {
    source: String,
    method: Method,
    /// A refusal of credentials that have not changed since: requests fail
    /// with it at once instead of presenting them again.
    hold: std::sync::Mutex<Option<Hold>>,
}

/// Refused credentials (five bad AK/SK signatures lock the key for five
/// minutes; repeated bad passwords lock the IAM user): held until their
/// files change, `authenticate()` is called, or [`HOLD_REFUSAL`] has passed.
#[derive(Debug)]
struct Hold {
    error: SourceError,
    /// The secrets that were refused.
    refused: Vec<Secret>,
    until: Instant,
}

#[derive(Debug)]
enum Method {
    Token {
        from: SecretSource,
        current: RwLock<Secret>,
    },
    Password(IamLogin),
    Aksk(AkskSigner),
}

impl Authenticator {
    /// Reads the secrets that are files; no network.
    pub fn new(
        settings: &SourceSettings,
        http: reqwest::Client,
        backoff: Backoff,
    ) -> Result<Self, SourceError> {
        let source = settings.name.clone();
        let method = match &settings.auth {
            AuthSettings::Token { token } => Method::Token {
                current: RwLock::new(read_secret(&source, "token", token)?),
                from: token.clone(),
            },
            AuthSettings::Password {
                iam_endpoint,
                domain,
                user,
                password,
                project,
            } => {
                if project.is_none() && settings.project_id.is_none() {
                    return Err(SourceError::Setup(format!(
                        "source {source}: password auth needs project_id or auth.project (the \
                         project to scope the IAM token to)"
                    )));
                }
                // Read once here so that a missing file is a setup error,
                // found before any request.
                read_secret(&source, "password", password)?;
                let base = iam_endpoint.trim_end_matches('/');
                let base = base.strip_suffix("/v3").unwrap_or(base);
                Method::Password(IamLogin {
                    source: source.clone(),
                    http,
                    endpoint: base.to_owned(),
                    domain: domain.clone(),
                    user: user.clone(),
                    password: password.clone(),
                    project_name: project.clone(),
                    project_id: settings.project_id.clone(),
                    backoff,
                    max_response_bytes: settings.max_response_bytes,
                    current: Mutex::new(None),
                    learned_project: OnceLock::new(),
                })
            }
            AuthSettings::Aksk {
                access_key,
                secret_key,
                security_token,
            } => {
                let signer = AkskSigner {
                    source: source.clone(),
                    access_key: access_key.clone(),
                    secret_key: secret_key.clone(),
                    security_token: security_token.clone(),
                    keys: RwLock::new(Arc::new(AkskKeys::read(
                        &source,
                        secret_key,
                        security_token.as_ref(),
                    )?)),
                };
                Method::Aksk(signer)
            }
        };
        Ok(Authenticator {
            source,
            method,
            hold: std::sync::Mutex::new(None),
        })
    }

    /// `token`, `password` or `aksk`.
    pub fn kind(&self) -> &'static str {
        match self.method {
            Method::Token { .. } => "token",
            Method::Password(_) => "password",
            Method::Aksk(_) => "aksk",
        }
    }

    /// The project id found in the IAM token, once a login has happened.
    pub fn learned_project(&self) -> Option<String> {
        match &self.method {
            Method::Password(login) => login.learned_project.get().cloned(),
            _ => None,
        }
    }

    /// Password auth: logs in if there is no fresh token; returns the
    /// token's project id. Other kinds: `None`.
    pub async fn login(&self) -> Result<Option<String>, SourceError> {
        match &self.method {
            Method::Password(login) => {
                self.iam_token(login).await?;
                Ok(login.learned_project.get().cloned())
            }
            _ => Ok(None),
        }
    }

    /// The IAM token, unless the password was refused and has not changed.
    async fn iam_token(&self, login: &IamLogin) -> Result<Arc<IamToken>, SourceError> {
        self.check_hold()?;
        match login.token().await {
            Err(error @ SourceError::Auth { .. }) => {
                // The refused password is what the file holds now (it was
                // read for this login).
                if let Ok(refused) = self.read_credential() {
                    self.hold(&error, refused);
                }
                Err(error)
            }
            other => other,
        }
    }

    /// Forgets a held refusal: `authenticate()` is the operator's "try
    /// again" (the next run).
    pub fn clear_hold(&self) {
        *self.lock_hold() = None;
    }

    /// Fails at once with the held refusal while the refused credentials are
    /// what their files (or the config) still hold.
    fn check_hold(&self) -> Result<(), SourceError> {
        let mut hold = self.lock_hold();
        let Some(held) = hold.as_ref() else {
            return Ok(());
        };
        if Instant::now() >= held.until {
            *hold = None;
            return Ok(());
        }
        // Rotated credentials end the hold at once.
        match self.read_credential() {
            Ok(now) if now != held.refused => {
                *hold = None;
                drop(hold);
                self.reload()
            }
            _ => Err(held.error.clone()),
        }
    }

    fn hold(&self, error: &SourceError, refused: Vec<Secret>) {
        warn!(
            source = %self.source,
            hold_secs = HOLD_REFUSAL.as_secs(),
            error = %error,
            "Credentials refused; not presenting them again until they change or the next run."
        );
        *self.lock_hold() = Some(Hold {
            error: error.clone(),
            refused,
            until: Instant::now() + HOLD_REFUSAL,
        });
    }

    fn lock_hold(&self) -> std::sync::MutexGuard<'_, Option<Hold>> {
        self.hold
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The secrets as their sources give them now (files read again).
    fn read_credential(&self) -> Result<Vec<Secret>, SourceError> {
        match &self.method {
            Method::Token { from, .. } => Ok(vec![read_secret(&self.source, "token", from)?]),
            Method::Password(login) => Ok(vec![read_secret(
                &self.source,
                "password",
                &login.password,
            )?]),
            Method::Aksk(signer) => Ok(AkskKeys::read(
                &self.source,
                &signer.secret_key,
                signer.security_token.as_ref(),
            )?
            .secrets()),
        }
    }

    /// The secrets requests are signed or sent with now.
    fn credential_in_use(&self) -> Vec<Secret> {
        match &self.method {
            Method::Token { current, .. } => vec![read_current(current)],
            Method::Password(_) => Vec::new(),
            Method::Aksk(signer) => signer.current().secrets(),
        }
    }

    /// Reads the secrets from their files again (token and AK/SK; a
    /// password is read at every login anyway).
    pub fn reload(&self) -> Result<(), SourceError> {
        match &self.method {
            Method::Token { from, current } => {
                let token = read_secret(&self.source, "token", from)?;
                *current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = token;
                Ok(())
            }
            Method::Password(_) => Ok(()),
            Method::Aksk(signer) => signer.reload(),
        }
    }

    /// The credential headers of one request (logging in first if needed).
    pub async fn headers(
        &self,
        request: &Outgoing<'_>,
        host: &str,
    ) -> Result<(HeaderMap, Presented), SourceError> {
        self.check_hold()?;
        let mut headers = HeaderMap::new();
        match &self.method {
            Method::Token { current, .. } => {
                let token = read_current(current);
                headers.insert("x-auth-token", self.secret_header("token", &token)?);
                Ok((headers, Presented::Static))
            }
            Method::Password(login) => {
                let token = self.iam_token(login).await?;
                headers.insert("x-auth-token", self.secret_header("token", &token.value)?);
                Ok((headers, Presented::IamToken(token)))
            }
            Method::Aksk(signer) => {
                signer.sign(request, host, &mut headers)?;
                Ok((headers, Presented::Static))
            }
        }
    }

    /// Whether `error` is cured by a new token (then the caller retries the
    /// request once): only IAM tokens from a password login can be renewed.
    pub fn renews_on(&self, error: &SourceError) -> bool {
        matches!(self.method, Method::Password(_)) && error.is_expired_token()
    }

    /// Drops the token a refused request carried, so that the next request
    /// logs in again.
    pub async fn invalidate(&self, presented: &Presented) {
        if let (Method::Password(login), Presented::IamToken(token)) = (&self.method, presented) {
            let mut current = login.current.lock().await;
            if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, token)) {
                *current = None;
            }
        }
    }

    /// After an API request was refused: the secret files are read again,
    /// so that rotated (temporary) credentials are used by the next request.
    /// AK/SK keys that have not changed are held: presenting them again
    /// would count towards the key's lockout.
    pub fn after_refusal(&self, error: &SourceError) {
        let refused = self.credential_in_use();
        if let Err(reload) = self.reload() {
            warn!(source = %self.source, error = %reload, "Cannot read the credentials again.");
        }
        if matches!(self.method, Method::Aksk(_)) && self.credential_in_use() == refused {
            self.hold(error, refused);
        }
    }

    /// `text` with every credential value of ours blanked out: a server may
    /// echo what it was sent.
    pub fn redact(&self, text: &str) -> String {
        match &self.method {
            Method::Token { current, .. } => {
                let token = read_current(current);
                redact(text, &[&token])
            }
            Method::Password(login) => match login.current.try_lock() {
                Ok(current) => match current.as_ref() {
                    Some(token) => redact(text, &[&token.value]),
                    None => text.to_owned(),
                },
                Err(_) => text.to_owned(),
            },
            Method::Aksk(signer) => {
                let keys = signer.current();
                let mut secrets = vec![&keys.secret_key];
                secrets.extend(keys.security_token.as_ref());
                redact(text, &secrets)
            }
        }
    }

    fn secret_header(&self, what: &str, secret: &Secret) -> Result<HeaderValue, SourceError> {
        let mut value = HeaderValue::from_str(secret.expose()).map_err(|_| {
            SourceError::Setup(format!(
                "source {}: the {what} holds characters not allowed in an HTTP header",
                self.source
            ))
        })?;
        value.set_sensitive(true);
        Ok(value)
    }
}

/// An IAM token from a password login.
#[derive(Debug)]
pub(crate) struct IamToken {
    value: Secret,
    /// `token.project.id`.
    project_id: Option<String>,
    /// When to log in again, ahead of expiry.
    renew_at: Instant,
    expires_at: Instant,
}

/// The password login of one source and its cached token.
#[derive(Debug)]
struct IamLogin {
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
    /// Held while logging in, so that concurrent requests wait for one
    /// login instead of each starting their own.
    current: Mutex<Option<Arc<IamToken>>>,
    learned_project: OnceLock<String>,
}

impl IamLogin {
    /// A token that is not due for renewal, logging in if needed.
    async fn token(&self) -> Result<Arc<IamToken>, SourceError> {
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

    /// A login with retries on throttling (IAM.0012), 5xx and transport
    /// errors; a refusal (401/403) comes back at once.
    async fn login(&self) -> Result<IamToken, SourceError> {
        let mut attempt = 0u32;
        loop {
            let error = match self.login_once().await {
                Ok(token) => return Ok(token),
                Err(error) => error,
            };
            match self.backoff.retry_delay(attempt, &error) {
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
        let password = read_secret(&self.source, "password", &self.password)?;
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
        let response = self
            .http
            .post(format!("{}/v3/auth/tokens?nocatalog=true", self.endpoint))
            .header("Content-Type", "application/json;charset=utf8")
            .header("Accept", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| SourceError::Transport {
                request: request.clone(),
                message: error_chain(&e),
            })?;
        let status = response.status().as_u16();
        let retry_after = crate::client::retry_after(response.headers());
        let token = response
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(|v| Secret::new(v.trim()));
        let body = read_body(response, &request, self.max_response_bytes).await?;
        if (200..300).contains(&status) {
            let token =
                token
                    .filter(|t| !t.expose().is_empty())
                    .ok_or_else(|| SourceError::BadBody {
                        request: request.clone(),
                        message: "no X-Subject-Token header in IAM's answer".to_owned(),
                    })?;
            return Ok(self.read_token(token, &body, sent));
        }
        let (code, message) = error_fields(&body);
        let message = redact(&message, &[&password]);
        let throttled = code
            .as_deref()
            .is_some_and(|c| THROTTLING_CODES.contains(&c));
        Err(match status {
            401 | 403 => SourceError::Auth {
                request,
                auth: "password",
                status,
                code,
                message,
            },
            429 | 500..=599 => SourceError::Server {
                request,
                status,
                code,
                message,
                retry_after,
            },
            _ if throttled => SourceError::Server {
                request,
                status,
                code,
                message,
                retry_after,
            },
            _ => SourceError::Rejected {
                request,
                status,
                code,
                message,
            },
        })
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

/// AK/SK signing; the keys are swapped whole when their files are re-read.
#[derive(Debug)]
struct AkskSigner {
    source: String,
    access_key: String,
    secret_key: SecretSource,
    security_token: Option<SecretSource>,
    keys: RwLock<Arc<AkskKeys>>,
}

#[derive(Debug)]
struct AkskKeys {
    secret_key: Secret,
    security_token: Option<Secret>,
}

impl AkskKeys {
    fn secrets(&self) -> Vec<Secret> {
        let mut secrets = vec![self.secret_key.clone()];
        secrets.extend(self.security_token.clone());
        secrets
    }

    fn read(
        source: &str,
        secret_key: &SecretSource,
        security_token: Option<&SecretSource>,
    ) -> Result<AkskKeys, SourceError> {
        Ok(AkskKeys {
            secret_key: read_secret(source, "secret_key", secret_key)?,
            security_token: security_token
                .map(|t| read_secret(source, "security_token", t))
                .transpose()?,
        })
    }
}

impl AkskSigner {
    fn current(&self) -> Arc<AkskKeys> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn reload(&self) -> Result<(), SourceError> {
        let keys = AkskKeys::read(&self.source, &self.secret_key, self.security_token.as_ref())?;
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
        Ok(())
    }

    /// Adds the signed headers and `Authorization`. Every header that is
    /// sent besides reqwest's own (`Accept`, `User-Agent`) is signed.
    fn sign(
        &self,
        request: &Outgoing<'_>,
        host: &str,
        headers: &mut HeaderMap,
    ) -> Result<(), SourceError> {
        let keys = self.current();
        let mut signed: Vec<(String, String)> = vec![
            ("Host".to_owned(), host.to_owned()),
            (
                aksk::SDK_DATE_HEADER.to_owned(),
                aksk::sdk_date(SystemTime::now()),
            ),
            ("X-Project-Id".to_owned(), request.project_id.to_owned()),
            ("Content-Type".to_owned(), "application/json".to_owned()),
        ];
        if let Some(token) = &keys.security_token {
            signed.push(("X-Security-Token".to_owned(), token.expose().to_owned()));
        }
        let signature = aksk::sign(
            request.method,
            request.path,
            request.params,
            &signed,
            request.body,
            &self.access_key,
            keys.secret_key.expose(),
        )
        .map_err(|e| SourceError::Setup(format!("source {}: cannot sign: {e}", self.source)))?;
        signed.push(("Authorization".to_owned(), signature.authorization));
        for (name, value) in signed {
            let sensitive = matches!(name.as_str(), "X-Security-Token" | "Authorization");
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                SourceError::Setup(format!("source {}: bad header name {name}", self.source))
            })?;
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                SourceError::Setup(format!(
                    "source {}: the {name} header holds characters not allowed in HTTP",
                    self.source
                ))
            })?;
            value.set_sensitive(sensitive);
            headers.insert(name, value);
        }
        Ok(())
    }
}

/// The secret's value: inline, or read from its file (trimmed). `key` is
/// the config key without `_file`.
pub(crate) fn read_secret(
    source: &str,
    key: &str,
    secret: &SecretSource,
) -> Result<Secret, SourceError> {
    match secret {
        SecretSource::Inline(value) => Ok(value.clone()),
        SecretSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                SourceError::Setup(format!(
                    "source {source}: cannot read auth {key}_file {}: {e}",
                    path.display()
                ))
            })?;
            let text = text.trim();
            if text.is_empty() {
                return Err(SourceError::Setup(format!(
                    "source {source}: auth {key}_file {} is empty",
                    path.display()
                )));
            }
            Ok(Secret::new(text))
        }
    }
}

/// `text` with each secret's value replaced by `****`.
fn redact(text: &str, secrets: &[&Secret]) -> String {
    let mut out = text.to_owned();
    for secret in secrets {
        let value = secret.expose();
        if !value.is_empty() && out.contains(value) {
            out = out.replace(value, "****");
        }
    }
    out
}

/// The static token now held. A poisoned lock only means a writer panicked;
/// the value inside is still a whole token.
fn read_current(current: &RwLock<Secret>) -> Secret {
    current
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
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

    #[test]
    fn redact_blanks_every_secret() {
        let a = Secret::new("hunter2");
        let b = Secret::new("s3cr3t");
        assert_eq!(
            redact("bad hunter2 and s3cr3t, hunter2", &[&a, &b]),
            "bad **** and ****, ****"
        );
        assert_eq!(redact("nothing", &[&Secret::new("")]), "nothing");
    }
}
