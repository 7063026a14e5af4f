//! AK/SK request signing (`SDK-HMAC-SHA256`): every header sent besides reqwest's own is
//! signed with the secret key, which never leaves the machine; temporary credentials add
//! their security token as `X-Security-Token`, signed too. The keys are read from their
//! files at the first request, again at each run and after each refusal, and swapped whole.
//!
//! API: the request signing guide
//! (<https://support.huaweicloud.com/intl/en-us/devg-apisign/api-sign-algorithm-002.html>).

use super::Outgoing;
use super::secrets::read_secret;
use crate::error::SourceError;
use crate::secret::Secret;
use crate::settings::SecretSource;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

/// AK/SK signing of one source.
#[derive(Debug)]
pub(crate) struct AkskSigner {
    source: String,
    access_key: String,
    secret_key: SecretSource,
    security_token: Option<SecretSource>,
    keys: RwLock<Option<Arc<AkskKeys>>>,
}

/// The secret parts of an AK/SK pair, read together.
#[derive(Debug)]
pub(crate) struct AkskKeys {
    secret_key: Secret,
    security_token: Option<Secret>,
}

impl AkskKeys {
    pub fn secrets(&self) -> Vec<Secret> {
        let mut secrets = vec![self.secret_key.clone()];
        secrets.extend(self.security_token.clone());
        secrets
    }
}

impl AkskSigner {
    pub fn new(
        source: &str,
        access_key: &str,
        secret_key: &SecretSource,
        security_token: Option<&SecretSource>,
    ) -> Self {
        AkskSigner {
            source: source.to_owned(),
            access_key: access_key.to_owned(),
            secret_key: secret_key.clone(),
            security_token: security_token.cloned(),
            keys: RwLock::new(None),
        }
    }

    /// What the files (or the config) hold now, without using it.
    pub async fn read(&self) -> Result<AkskKeys, SourceError> {
        let secret_key = read_secret(&self.source, "secret_key", &self.secret_key).await?;
        let security_token = match &self.security_token {
            Some(token) => Some(read_secret(&self.source, "security_token", token).await?),
            None => None,
        };
        Ok(AkskKeys {
            secret_key,
            security_token,
        })
    }

    /// Reads the keys again and signs with them from now on.
    pub async fn reload(&self) -> Result<Arc<AkskKeys>, SourceError> {
        let keys = Arc::new(self.read().await?);
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(keys.clone());
        Ok(keys)
    }

    /// The keys requests are signed with now (read first if they never were).
    pub async fn current(&self) -> Result<Arc<AkskKeys>, SourceError> {
        match self.held() {
            Some(keys) => Ok(keys),
            None => self.reload().await,
        }
    }

    /// The keys in use, if they were read.
    pub fn held(&self) -> Option<Arc<AkskKeys>> {
        // A poisoned lock only means a writer panicked; the keys inside are whole.
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Adds the signed headers and `Authorization`, signed with `keys`. Every header that
    /// is sent besides reqwest's own (`Accept`, `User-Agent`) is signed.
    pub fn sign(
        &self,
        keys: &AkskKeys,
        request: &Outgoing<'_>,
        host: &str,
        headers: &mut HeaderMap,
    ) -> Result<(), SourceError> {
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
