//! Credentials of one source and how they go on a request: a static IAM token
//! (`X-Auth-Token`), an IAM password login whose token is cached and renewed ([`iam`]), or
//! AK/SK request signing ([`aksk`]). One file per job: reading secrets ([`secrets`]), the
//! refusal hold that is the source's one lockout policy ([`hold`]), and the redaction of
//! credentials a server echoes ([`redact`]).
//!
//! Secrets are read (with tokio, never blocking) at the first request, again at each run's
//! [`Authenticator::begin`], at each password login and after each refusal, so that rotated
//! credentials are picked up without a restart. No secret is ever put in an error, a log
//! line or `Debug` output.
//!
//! APIs: "Obtaining a User Token Through Password Authentication",
//! `POST /v3/auth/tokens`
//! (<https://docs.otc.t-systems.com/identity-access-management/api-ref/apis/token_management/obtaining_a_user_token_through_password_authentication.html>),
//! and the API request signing guide
//! (<https://support.huaweicloud.com/intl/en-us/devg-apisign/api-sign-algorithm-002.html>).

mod aksk;
mod hold;
mod iam;
mod redact;
mod secrets;

pub use secrets::read_secret_files;

use crate::error::SourceError;
use crate::response::Peer;
use crate::retry::Backoff;
use crate::secret::Secret;
use crate::settings::{AuthKind, AuthSettings, SourceSettings};
use aksk::AkskSigner;
use hold::RefusalHold;
use iam::{IamLogin, IamSettings, IamToken};
use redact::Redactor;
use reqwest::header::{HeaderMap, HeaderValue};
use secrets::StaticToken;
use std::sync::Arc;
use tracing::warn;

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
    hold: RefusalHold,
    /// Every credential value read, issued or presented, to blank out of what servers echo.
    redactor: Redactor,
}

#[derive(Debug)]
enum Method {
    Token(StaticToken),
    Password(Box<IamLogin>),
    Aksk(AkskSigner),
}

impl Authenticator {
    /// Reads nothing and makes no request: secrets are read when first needed.
    pub fn new(
        settings: &SourceSettings,
        http: reqwest::Client,
        backoff: Backoff,
    ) -> Result<Self, SourceError> {
        let source = settings.name.clone();
        let method = match &settings.auth {
            AuthSettings::Token { token } => {
                Method::Token(StaticToken::new(&source, token.clone()))
            }
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
                Method::Password(Box::new(IamLogin::new(
                    &source,
                    http,
                    backoff,
                    IamSettings {
                        endpoint: iam_endpoint.clone(),
                        domain: domain.clone(),
                        user: user.clone(),
                        password: password.clone(),
                        project_name: project.clone(),
                        project_id: settings.project_id.clone(),
                        max_response_bytes: settings.max_response_bytes,
                        peer: Peer {
                            url: iam_endpoint.trim_end_matches('/').to_owned(),
                            origin: settings.iam_endpoint_origin(),
                            connect_timeout: settings.connect_timeout,
                            connect_key: settings.key("connect_timeout"),
                            request_timeout: settings.request_timeout,
                            request_key: settings.key("request_timeout"),
                        },
                    },
                )))
            }
            AuthSettings::Aksk {
                access_key,
                secret_key,
                security_token,
            } => Method::Aksk(AkskSigner::new(
                &source,
                access_key,
                secret_key,
                security_token.as_ref(),
            )),
        };
        Ok(Authenticator {
            source,
            method,
            hold: RefusalHold::default(),
            redactor: Redactor::default(),
        })
    }

    pub fn kind(&self) -> AuthKind {
        match self.method {
            Method::Token(_) => AuthKind::Token,
            Method::Password(_) => AuthKind::Password,
            Method::Aksk(_) => AuthKind::Aksk,
        }
    }

    /// The project id found in the IAM token, once a login has happened.
    pub fn learned_project(&self) -> Option<String> {
        match &self.method {
            Method::Password(login) => login.learned_project(),
            _ => None,
        }
    }

    /// The start of a run (or of a poll of `runner run`): a refusal still held, of
    /// credentials that have not changed since, comes back at once as
    /// [`SourceError::HeldBack`], without presenting them; otherwise the secret files are
    /// read again.
    pub async fn begin(&self) -> Result<(), SourceError> {
        if let Some(held) = self.hold.active() {
            match self.read_credential().await {
                Ok(now) if now != held.refused => self.hold.release(),
                _ => return Err(held.held_back(self.kind())),
            }
        }
        self.reload().await
    }

    /// The run's authentication was refused: hold the refusal (whatever the kind), so
    /// that the next run waits or the credentials change first.
    pub async fn refused(&self, error: &SourceError) {
        if self.hold.active().is_some() {
            // The login or the request that was refused holds it already.
            return;
        }
        match self.read_credential().await {
            Ok(refused) => self.hold.hold(&self.source, error, refused),
            Err(e) => {
                warn!(source = %self.source, error = %e, "Cannot read the credentials again.")
            }
        }
    }

    /// Password auth: logs in if there is no fresh token; returns the
    /// token's project id. Other kinds: `None`.
    pub async fn login(&self) -> Result<Option<String>, SourceError> {
        match &self.method {
            Method::Password(login) => {
                self.iam_token(login).await?;
                Ok(login.learned_project())
            }
            _ => Ok(None),
        }
    }

    /// The IAM token, unless the password was refused and has not changed.
    async fn iam_token(&self, login: &IamLogin) -> Result<Arc<IamToken>, SourceError> {
        self.check_hold().await?;
        match login.token().await {
            Ok(token) => {
                self.redactor.remember(&token.value);
                Ok(token)
            }
            Err(error @ SourceError::Auth { .. }) => {
                // The refused password is what the file holds now (it was
                // read for this login).
                if let Ok(refused) = self.read_credential().await {
                    self.hold.hold(&self.source, &error, refused);
                }
                Err(error)
            }
            Err(other) => Err(other),
        }
    }

    /// Fails at once with the held refusal while the refused credentials are
    /// what their files (or the config) still hold.
    async fn check_hold(&self) -> Result<(), SourceError> {
        let Some(held) = self.hold.active() else {
            return Ok(());
        };
        // Rotated credentials end the hold at once.
        match self.read_credential().await {
            Ok(now) if now != held.refused => {
                self.hold.release();
                self.reload().await
            }
            _ => Err(held.error),
        }
    }

    /// The secrets as their sources give them now (files read again), without using them.
    async fn read_credential(&self) -> Result<Vec<Secret>, SourceError> {
        let secrets = match &self.method {
            Method::Token(token) => vec![token.read().await?],
            Method::Password(login) => vec![login.password().await?],
            Method::Aksk(signer) => signer.read().await?.secrets(),
        };
        for secret in &secrets {
            self.redactor.remember(secret);
        }
        Ok(secrets)
    }

    /// The secrets requests are signed or sent with now (none before the first request,
    /// and none for a password: it is read at every login).
    fn credential_in_use(&self) -> Vec<Secret> {
        match &self.method {
            Method::Token(token) => token.held().into_iter().collect(),
            Method::Password(_) => Vec::new(),
            Method::Aksk(signer) => signer.held().map(|k| k.secrets()).unwrap_or_default(),
        }
    }

    /// Reads the secrets from their files again (token and AK/SK; a
    /// password is read at every login anyway).
    pub async fn reload(&self) -> Result<(), SourceError> {
        match &self.method {
            Method::Token(token) => self.redactor.remember(&token.reload().await?),
            Method::Password(login) => self.redactor.remember(&login.password().await?),
            Method::Aksk(signer) => {
                for secret in signer.reload().await?.secrets() {
                    self.redactor.remember(&secret);
                }
            }
        }
        Ok(())
    }

    /// The credential headers of one request (logging in first if needed).
    pub async fn headers(
        &self,
        request: &Outgoing<'_>,
        host: &str,
    ) -> Result<(HeaderMap, Presented), SourceError> {
        self.check_hold().await?;
        let mut headers = HeaderMap::new();
        match &self.method {
            Method::Token(current) => {
                let token = current.current().await?;
                self.redactor.remember(&token);
                headers.insert("x-auth-token", self.secret_header("token", &token)?);
                Ok((headers, Presented::Static))
            }
            Method::Password(login) => {
                let token = self.iam_token(login).await?;
                headers.insert("x-auth-token", self.secret_header("token", &token.value)?);
                Ok((headers, Presented::IamToken(token)))
            }
            Method::Aksk(signer) => {
                let keys = signer.current().await?;
                for secret in keys.secrets() {
                    self.redactor.remember(&secret);
                }
                signer.sign(&keys, request, host, &mut headers)?;
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
            login.invalidate(token).await;
        }
    }

    /// After an API request was refused: the secret files are read again,
    /// so that rotated (temporary) credentials are used by the next request.
    /// AK/SK keys that have not changed are held: presenting them again
    /// would count towards the key's lockout.
    pub async fn after_refusal(&self, error: &SourceError) {
        let refused = self.credential_in_use();
        if let Err(reload) = self.reload().await {
            warn!(source = %self.source, error = %reload, "Cannot read the credentials again.");
        }
        if matches!(self.method, Method::Aksk(_)) && self.credential_in_use() == refused {
            self.hold.hold(&self.source, error, refused);
        }
    }

    /// `text` with every credential value of ours blanked out: a server may
    /// echo what it was sent.
    pub fn redact(&self, text: &str) -> String {
        self.redactor.redact(text)
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
