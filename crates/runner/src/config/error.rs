//! Errors of the configuration file, and how a byte span in the file becomes
//! the line and the dotted key path (`sources.prod.page_size`) that every
//! message names.
//!
//! A configuration error is never retryable: the file has to change.

use std::ops::Range;
use std::path::PathBuf;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Keys whose values are secrets (or, for `access_key`, half of a credential):
/// a message about them never quotes the value, not even a wrong-typed one.
const SECRET_KEYS: &[&str] = &[
    "token",
    "password",
    "access_key",
    "secret_key",
    "security_token",
];

/// What is wrong with a configuration file. `Display` is
/// `<file>:<line>: <key path>: <what is wrong>`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{}: cannot read the config file: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    /// The text is not valid TOML.
    #[error("{}:{line}: invalid TOML: {message}", file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        message: String,
    },
    /// Valid TOML, but a key is unknown, has the wrong type or an impossible value.
    #[error("{}:{line}: {key}: {message}", file.display())]
    Invalid {
        file: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
}

#[cfg(test)]
impl ConfigError {
    /// The 1-based line the error points at, when it points at one.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Syntax { line, .. } | ConfigError::Invalid { line, .. } => Some(*line),
        }
    }

    /// The dotted key path the error is about, when it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// The 1-based line of a byte offset.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    // A span never splits a character, but be safe against one that does.
    let prefix = text.get(..end).unwrap_or(text);
    prefix.bytes().filter(|b| *b == b'\n').count() + 1
}

/// The dotted path of the deepest key whose name or value holds `offset`
/// (`sources.prod.services[1]`); empty when no key does.
pub(super) fn key_path_at(root: &DeTable<'_>, offset: usize) -> String {
    let mut segments = Vec::new();
    search_table(root, offset, &mut segments);
    let mut path = String::new();
    for segment in segments {
        if !path.is_empty() && !segment.starts_with('[') {
            path.push('.');
        }
        path.push_str(&segment);
    }
    path
}

// Tables opened by a `[header]` only span their header, so the search visits
// every table instead of descending only into the ones that hold the offset.
fn search_table(table: &DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    table.iter().any(|(key, value)| {
        path.push(key_segment(key.get_ref()));
        let found = search_value(value, offset, path) || holds(&key.span(), offset);
        if !found {
            path.pop();
        }
        found
    })
}

fn search_value(value: &Spanned<DeValue<'_>>, offset: usize, path: &mut Vec<String>) -> bool {
    let found_inside = match value.get_ref() {
        DeValue::Table(table) => search_table(table, offset, path),
        DeValue::Array(items) => items.iter().enumerate().any(|(index, item)| {
            path.push(format!("[{index}]"));
            let found = search_value(item, offset, path);
            if !found {
                path.pop();
            }
            found
        }),
        _ => false,
    };
    found_inside || holds(&value.span(), offset)
}

fn holds(span: &Range<usize>, offset: usize) -> bool {
    span.start <= offset && (offset < span.end || span.is_empty() && offset == span.start)
}

/// A key as it would be written in TOML: bare when it can be, quoted otherwise.
fn key_segment(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

/// Whether the value at this key path is a secret.
pub(super) fn is_secret_key(path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path);
    SECRET_KEYS.contains(&last)
}

/// serde quotes offending values between backticks (``invalid type: integer
/// `12345` ``); for a secret key, drop every quoted part.
pub(super) fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    for c in message.chars() {
        if c == '`' {
            quoted = !quoted;
            if !quoted {
                out.push_str("(value not shown)");
            }
        } else if !quoted {
            out.push(c);
        }
    }
    out
}

/// A deserialization error of the `toml` crate, located in `text`. Only its
/// message and span are used: its `Display` quotes the source line, which
/// may hold a secret.
pub(super) fn from_toml(
    error: &toml::de::Error,
    text: &str,
    root: &DeTable<'_>,
    file: &std::path::Path,
) -> ConfigError {
    let offset = error.span().map_or(0, |span| span.start);
    let line = line_of(text, offset);
    let mut key = key_path_at(root, offset);
    let message = error.message().trim().to_owned();
    // serde reports a missing key at its table; name the key itself.
    if let Some(missing) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        if !key.is_empty() {
            key.push('.');
        }
        key.push_str(missing);
        return ConfigError::Invalid {
            file: file.to_owned(),
            line,
            key,
            message: "missing (this key is required)".to_owned(),
        };
    }
    if key.is_empty() {
        key.push_str("(top level)");
    }
    // An unknown-field message quotes key names, not values: keep it.
    let message = if is_secret_key(&key) && !message.starts_with("unknown field") {
        redact_quoted(&message)
    } else {
        message
    };
    ConfigError::Invalid {
        file: file.to_owned(),
        line,
        key,
        message,
    }
}

/// A syntax error of the `toml` crate. Its messages describe the grammar
/// (``expected `"` ``) and never quote the text, so they are kept.
pub(super) fn from_syntax(
    error: &toml::de::Error,
    text: &str,
    file: &std::path::Path,
) -> ConfigError {
    let offset = error.span().map_or(0, |span| span.start);
    ConfigError::Syntax {
        file: file.to_owned(),
        line: line_of(text, offset),
        message: error.message().trim().to_owned(),
    }
}
