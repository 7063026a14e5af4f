//! Reading the secrets of a source's `[auth]` table: inline values, or `*_file`s read with
//! tokio (never blocking an async thread) whenever a secret is needed anew, so that a
//! rotated Kubernetes or Vault secret is picked up without a restart. Also the static token
//! of `type = "token"`, which is nothing but such a secret.
//!
//! Errors name the key and the file, never the content.

use crate::error::SourceError;
use crate::secret::Secret;
use crate::settings::{AuthSettings, SecretSource};
use std::sync::RwLock;

/// The secret's value: inline, or read from its file (trimmed). `key` is the config key
/// without `_file`.
pub(crate) async fn read_secret(
    source: &str,
    key: &str,
    secret: &SecretSource,
) -> Result<Secret, SourceError> {
    secret.read().await.map_err(|e| {
        let path = match secret {
            SecretSource::File(path) => path.display().to_string(),
            // An inline value cannot fail to be read.
            SecretSource::Inline(_) => "(inline)".to_owned(),
        };
        SourceError::Setup(format!(
            "source {source}: cannot read auth {key}_file {path}: {e}"
        ))
    })
}

/// Reads every secret file of `settings` once: a missing or empty file is an error naming
/// it, found before anything else is done. The values are dropped.
pub async fn read_secret_files(settings: &crate::SourceSettings) -> Result<(), SourceError> {
    let source = &settings.name;
    match &settings.auth {
        AuthSettings::Token { token } => read_secret(source, "token", token).await.map(drop),
        AuthSettings::Password { password, .. } => {
            read_secret(source, "password", password).await.map(drop)
        }
        AuthSettings::Aksk {
            secret_key,
            security_token,
            ..
        } => {
            read_secret(source, "secret_key", secret_key).await?;
            if let Some(token) = security_token {
                read_secret(source, "security_token", token).await?;
            }
            Ok(())
        }
    }
}

/// A static `X-Auth-Token`, read from its source at the first request and again at every
/// reload.
#[derive(Debug)]
pub(crate) struct StaticToken {
    source: String,
    from: SecretSource,
    current: RwLock<Option<Secret>>,
}

impl StaticToken {
    pub fn new(source: &str, from: SecretSource) -> Self {
        StaticToken {
            source: source.to_owned(),
            from,
            current: RwLock::new(None),
        }
    }

    /// The token requests carry now (read first if it never was).
    pub async fn current(&self) -> Result<Secret, SourceError> {
        if let Some(token) = self.held() {
            return Ok(token);
        }
        self.reload().await
    }

    /// Reads the token from its source again and uses it from now on.
    pub async fn reload(&self) -> Result<Secret, SourceError> {
        let token = self.read().await?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(token.clone());
        Ok(token)
    }

    /// What the source holds now, without using it.
    pub async fn read(&self) -> Result<Secret, SourceError> {
        read_secret(&self.source, "token", &self.from).await
    }

    /// The token in use, if one was read.
    pub fn held(&self) -> Option<Secret> {
        // A poisoned lock only means a writer panicked; the value inside is a whole token.
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_token_file_is_read_at_first_use_and_again_at_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "tok-1\n").unwrap();
        let token = StaticToken::new("s", SecretSource::File(path.clone()));
        assert!(token.held().is_none(), "nothing is read when it is built");
        assert_eq!(token.current().await.unwrap().expose(), "tok-1");
        std::fs::write(&path, "tok-2\n").unwrap();
        assert_eq!(token.current().await.unwrap().expose(), "tok-1");
        assert_eq!(token.reload().await.unwrap().expose(), "tok-2");
    }

    #[tokio::test]
    async fn errors_name_the_key_and_the_file_but_not_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent");
        let error = read_secret("prod", "secret_key", &SecretSource::File(path.clone()))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("source prod") && error.contains("secret_key_file"),
            "{error}"
        );
        assert!(error.contains(&path.display().to_string()), "{error}");
        std::fs::write(&path, "  \n").unwrap();
        let empty = read_secret("prod", "token", &SecretSource::File(path))
            .await
            .unwrap_err()
            .to_string();
        assert!(empty.contains("token_file"), "{empty}");
    }
}
