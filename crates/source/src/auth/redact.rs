//! Redaction: a server may echo what it was sent (a token in an error message), so every
//! message quoted from a server is scrubbed of the credentials a source holds or has
//! presented before it goes into an error or a log line.
//!
//! The values are kept in a plain lock that is never held across an `.await`, so redaction
//! never waits for a login in progress and never skips a value because another task holds a
//! lock.

use crate::secret::Secret;
use std::sync::RwLock;

/// How many credential values are remembered (the newest ones): the secrets of one auth
/// kind and a few generations of IAM tokens and rotated keys.
const REMEMBERED: usize = 8;

/// The credential values of one source, to blank out of quoted text.
#[derive(Debug, Default)]
pub(crate) struct Redactor {
    values: RwLock<Vec<Secret>>,
}

impl Redactor {
    /// Remembers `secret` (a value that was read, issued or presented) as the newest.
    pub fn remember(&self, secret: &Secret) {
        if secret.expose().is_empty() {
            return;
        }
        let mut values = self
            .values
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        values.retain(|known| known != secret);
        if values.len() == REMEMBERED {
            values.remove(0);
        }
        values.push(secret.clone());
    }

    /// `text` with every remembered value replaced by `****`.
    pub fn redact(&self, text: &str) -> String {
        let values = self
            .values
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        redact(text, values.iter())
    }
}

/// `text` with each secret's value replaced by `****`.
pub(crate) fn redact<'a>(text: &str, secrets: impl IntoIterator<Item = &'a Secret>) -> String {
    let mut out = text.to_owned();
    for secret in secrets {
        let value = secret.expose();
        if !value.is_empty() && out.contains(value) {
            out = out.replace(value, "****");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_blanks_every_secret() {
        let a = Secret::new("hunter2");
        let b = Secret::new("s3cr3t");
        assert_eq!(
            redact("bad hunter2 and s3cr3t, hunter2", [&a, &b]),
            "bad **** and ****, ****"
        );
        assert_eq!(redact("nothing", [&Secret::new("")]), "nothing");
    }

    #[test]
    fn the_redactor_keeps_the_newest_values() {
        let redactor = Redactor::default();
        for n in 0..=REMEMBERED {
            redactor.remember(&Secret::new(format!("token-{n:02}")));
        }
        let newest = format!("token-{REMEMBERED:02}");
        assert_eq!(redactor.redact(&format!("echo {newest}")), "echo ****");
        assert_eq!(redactor.redact("echo token-00"), "echo token-00");
        // A value remembered again is the newest again, whatever its age.
        redactor.remember(&Secret::new("token-01"));
        for n in 0..REMEMBERED - 1 {
            redactor.remember(&Secret::new(format!("later-{n}")));
        }
        assert_eq!(redactor.redact("echo token-01"), "echo ****");
        redactor.remember(&Secret::new(""));
        assert_eq!(redactor.redact("empty stays"), "empty stays");
    }
}
