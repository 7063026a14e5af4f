//! Values that must never be printed (tokens, passwords, secret keys) and where a
//! configuration takes them from: inline (after `${VAR}` substitution) or from a file
//! that is read again whenever the secret is needed anew, so that rotated credentials
//! are picked up without a restart.
//!
//! Shared by the source (IAM tokens, passwords, AK/SK) and the network sinks (basic,
//! bearer and API-key auth), so that both hide and read secrets the same way.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// A secret value. `Debug` and `Display` print `****`; only [`Secret::expose`]
/// gives the value, at the one place it is put on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value. Call only where it goes on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// A secret given inline (after `${VAR}` substitution) or as a file to read.
/// A file is read again whenever the secret is needed anew (each token
/// renewal, each build of a sink's HTTP client), so rotated credentials are
/// picked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Inline(Secret),
    File(PathBuf),
}

impl SecretSource {
    /// The secret: the inline value, or the file's content without surrounding
    /// whitespace (editors and `echo` leave a trailing newline, which no token
    /// or password means). A file holding nothing else is an
    /// [`io::ErrorKind::InvalidData`] error, so that an empty mount is not sent
    /// as an empty credential. The file is read with tokio, off the async threads.
    ///
    /// Errors carry neither the path nor the content; the caller names the key
    /// and the path.
    pub async fn read(&self) -> io::Result<Secret> {
        match self {
            SecretSource::Inline(value) => Ok(value.clone()),
            SecretSource::File(path) => {
                let text = tokio::fs::read_to_string(path).await?;
                from_file_text(&text)
            }
        }
    }
}

/// The secret a file holding `text` gives: `text` trimmed, and not empty.
fn from_file_text(text: &str) -> io::Result<Secret> {
    let text = text.trim();
    if text.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the file holds no secret (it is empty or only whitespace)",
        ));
    }
    Ok(Secret::new(text))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
        let inline = SecretSource::Inline(s);
        assert!(!format!("{inline:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn inline_secret_is_returned_as_it_is() {
        let s = SecretSource::Inline(Secret::new(" spaced "));
        assert_eq!(s.read().await.unwrap().expose(), " spaced ");
    }

    #[tokio::test]
    async fn file_secret_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  tok-123\r\n").unwrap();
        let s = SecretSource::File(path.clone());
        assert_eq!(s.read().await.unwrap().expose(), "tok-123");
        // Read again each time: a rotated file gives the new value.
        std::fs::write(&path, "tok-456\n").unwrap();
        assert_eq!(s.read().await.unwrap().expose(), "tok-456");
    }

    #[tokio::test]
    async fn empty_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, " \n\n").unwrap();
        let error = SecretSource::File(path).read().await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn missing_file_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let error = SecretSource::File(dir.path().join("absent"))
            .read()
            .await
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
    }
}
