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
    /// A `--config-dir` folder that cannot be read or holds no config file.
    #[error("{}: {message}", dir.display())]
    Folder { dir: PathBuf, message: String },
    /// No file to read: neither `--config` nor `--config-dir` was given.
    #[error("no configuration file: give --config FILE or --config-dir DIR")]
    NoFile,
    /// Several of the above, one per line, in the order of the files and lines.
    #[error("{} errors in the configuration:\n{}", .0.len(), list(.0))]
    Several(Vec<ConfigError>),
}

fn list(errors: &[ConfigError]) -> String {
    let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
    lines.join("\n")
}

impl ConfigError {
    /// One error as itself, several as [`ConfigError::Several`].
    pub(super) fn from_all(mut errors: Vec<ConfigError>) -> ConfigError {
        if errors.len() == 1 {
            errors.remove(0)
        } else {
            ConfigError::Several(errors)
        }
    }

    /// The 1-based line the error points at, when it points at one (the first
    /// error's, for several).
    #[cfg(test)]
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. } | ConfigError::Folder { .. } | ConfigError::NoFile => None,
            ConfigError::Syntax { line, .. } | ConfigError::Invalid { line, .. } => Some(*line),
            ConfigError::Several(errors) => errors.first().and_then(ConfigError::line),
        }
    }

    /// For sorting: the line, 0 when there is none.
    pub(super) fn line_number(&self) -> usize {
        match self {
            ConfigError::Syntax { line, .. } | ConfigError::Invalid { line, .. } => *line,
            _ => 0,
        }
    }

    /// The file the error is in, when it is in one.
    pub(super) fn file(&self) -> Option<&std::path::Path> {
        match self {
            ConfigError::Read { file, .. }
            | ConfigError::Syntax { file, .. }
            | ConfigError::Invalid { file, .. } => Some(file),
            ConfigError::Folder { .. } | ConfigError::NoFile | ConfigError::Several(_) => None,
        }
    }

    /// The dotted key path the error is about, when it is about one (the first
    /// error's, for several).
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::Several(errors) => errors.first().and_then(ConfigError::key),
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
pub(super) fn key_segment(key: &str) -> String {
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
    let secret = is_secret_key(&key);
    let message = match plain_message(&message, secret, extra_keys(&key)) {
        Some(plain) => plain,
        // An unknown-field message quotes key names, not values: keep it.
        None if secret && !message.starts_with("unknown field") => redact_quoted(&message),
        None => message,
    };
    ConfigError::Invalid {
        file: file.to_owned(),
        line,
        key,
        message,
    }
}

/// An unknown key among `known`: the closest one if it looks like a typo, else the list.
pub(super) fn unknown_key_message(unknown: &str, known: &[&str]) -> String {
    unknown_key(unknown, known.iter().map(|k| (*k).to_owned()).collect())
}

/// Keys a table takes that its kind's struct does not list, because a probe
/// read them first (`type`, and a sink's shared keys): suggestions consider them.
fn extra_keys(key: &str) -> &'static [&'static str] {
    let segments: Vec<&str> = key.split('.').collect();
    match segments.as_slice() {
        ["sinks", _, _] => sink::config::COMMON_KEYS,
        ["sources", _, _] | ["sources", _, "auth", _] => &["type"],
        _ => &[],
    }
}

/// serde speaks Rust (`invalid type: string "1000", expected i64`, ``unknown
/// field `lookbak`, expected one of ...``); this says the same in TOML's words
/// (`expected an integer, found the string "1000"`, ``unknown key `lookbak`;
/// did you mean `lookback`?``). `None` for a message it does not recognize.
/// For a secret key the value found is never quoted.
pub(super) fn plain_message(message: &str, secret: bool, extra_keys: &[&str]) -> Option<String> {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (unknown, expected) = rest.split_once('`')?;
        let mut known = quoted_names(expected);
        known.extend(extra_keys.iter().map(|k| (*k).to_owned()));
        return Some(unknown_key(unknown, known));
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let (unknown, expected) = rest.split_once('`')?;
        let known = quoted_names(expected);
        let list: Vec<String> = known.iter().map(|k| format!("{k:?}")).collect();
        return Some(match closest(unknown, &known) {
            Some(near) => format!(
                "unknown value {unknown:?}; did you mean {near:?}? (one of {})",
                list.join(", ")
            ),
            None => format!("must be one of {}, found {unknown:?}", list.join(", ")),
        });
    }
    let rest = message.strip_prefix("invalid type: ")?;
    let (found, expected) = rest.split_once(", expected ")?;
    Some(format!(
        "expected {}, found {}",
        plain_expected(expected),
        plain_found(found, secret)
    ))
}

fn unknown_key(unknown: &str, mut known: Vec<String>) -> String {
    match closest(unknown, &known) {
        Some(near) => format!("unknown key `{unknown}`; did you mean `{near}`?"),
        None if known.is_empty() => format!("unknown key `{unknown}`: this table takes no keys"),
        None => {
            known.sort();
            known.dedup();
            let list: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
            format!(
                "unknown key `{unknown}` (the keys here are {})",
                list.join(", ")
            )
        }
    }
}

/// The names between backticks in serde's "expected one of `a`, `b`".
fn quoted_names(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The known name closest to `unknown`, if one is close enough to be a typo.
fn closest(unknown: &str, known: &[String]) -> Option<String> {
    let unknown = unknown.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(&unknown, &k.to_ascii_lowercase()), k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k.clone())
}

fn plain_expected(expected: &str) -> String {
    let expected = expected.trim();
    match expected {
        "i8" | "i16" | "i32" | "i64" | "i128" | "u8" | "u16" | "u32" | "u64" | "u128" | "isize"
        | "usize" => "an integer".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "a boolean" | "bool" => "true or false".to_owned(),
        "a string" | "a borrowed string" | "string" => "a string".to_owned(),
        "a sequence" => "a list such as [\"a\", \"b\"]".to_owned(),
        "a map" => "a table".to_owned(),
        other if other.starts_with("struct ") => "a table".to_owned(),
        other if other.starts_with("enum ") => "one of the names this key takes".to_owned(),
        other => other.to_owned(),
    }
}

fn plain_found(found: &str, secret: bool) -> String {
    let found = found.trim();
    let value = found
        .split_once(' ')
        .map(|(_, v)| v.trim_matches('`').to_owned());
    let (what, article) = match found.split(' ').next().unwrap_or(found) {
        "string" => ("string", "a string"),
        "integer" => ("integer", "an integer"),
        "floating" => ("number", "a number"),
        "boolean" => ("boolean", "a boolean"),
        "sequence" => return "a list".to_owned(),
        "map" => return "a table".to_owned(),
        _ => return found.to_owned(),
    };
    let value = value.map(|v| {
        v.strip_prefix("point ")
            .map_or(v.clone(), |p| p.trim_matches('`').to_owned())
    });
    match value {
        Some(_) if secret => format!("{article} (value not shown)"),
        Some(value) => format!("the {what} {value}"),
        None => article.to_owned(),
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

#[cfg(test)]
mod tests {
    use super::plain_message;

    fn plain(message: &str) -> Option<String> {
        plain_message(message, false, &[])
    }

    #[test]
    fn type_errors_say_what_was_expected_and_found() {
        let cases = [
            (
                r#"invalid type: string "1000", expected i64"#,
                r#"expected an integer, found the string "1000""#,
            ),
            (
                "invalid type: floating point `2.5`, expected u32",
                "expected an integer, found the number 2.5",
            ),
            (
                "invalid type: integer `3`, expected a boolean",
                "expected true or false, found the integer 3",
            ),
            (
                "invalid type: boolean `true`, expected f64",
                "expected a number, found the boolean true",
            ),
            (
                r#"invalid type: string "a", expected a sequence"#,
                r#"expected a list such as ["a", "b"], found the string "a""#,
            ),
            (
                "invalid type: sequence, expected a string",
                "expected a string, found a list",
            ),
            (
                "invalid type: integer `5`, expected struct BatchTable",
                "expected a table, found the integer 5",
            ),
        ];
        for (serde, expected) in cases {
            assert_eq!(plain(serde).as_deref(), Some(expected), "{serde}");
        }
    }

    #[test]
    fn a_secret_of_the_wrong_type_is_not_quoted() {
        let plain = plain_message(
            "invalid type: integer `918273645`, expected a string",
            true,
            &[],
        );
        assert_eq!(
            plain.as_deref(),
            Some("expected a string, found an integer (value not shown)")
        );
    }

    #[test]
    fn unknown_keys_and_values_suggest_the_closest_or_list_them() {
        assert_eq!(
            plain("unknown field `lookbak`, expected one of `lookback`, `page_size`").as_deref(),
            Some("unknown key `lookbak`; did you mean `lookback`?")
        );
        assert_eq!(
            plain("unknown field `zzz`, expected `path` or `busy_timeout`").as_deref(),
            Some("unknown key `zzz` (the keys here are `busy_timeout`, `path`)")
        );
        assert_eq!(
            plain_message(
                "unknown field `inptus`, expected `path`",
                false,
                &["inputs"]
            )
            .as_deref(),
            Some("unknown key `inptus`; did you mean `inputs`?")
        );
        assert_eq!(
            plain("unknown variant `Abnormal`, expected `normal` or `abnormal`").as_deref(),
            Some(
                r#"unknown value "Abnormal"; did you mean "abnormal"? (one of "normal", "abnormal")"#
            )
        );
        assert_eq!(plain("must be at least 1, got 0"), None);
    }
}
