//! `${VAR}` placeholders in string values, replaced from the environment
//! after the TOML is parsed, so that parse errors quote the placeholder and
//! never the secret it stands for.
//!
//! Syntax: `${NAME}` with `NAME` made of ASCII letters, digits and `_`, not
//! starting with a digit. As in POSIX shells and Vector:
//!
//! - `${NAME:-default}`: `default` when `NAME` is unset or empty;
//!   `${NAME-default}`: only when it is unset.
//! - `${NAME:?message}`: an error saying `message` when `NAME` is unset or
//!   empty; `${NAME?message}`: only when it is unset.
//!
//! A default or message runs to the first `}` and holds no placeholder of its
//! own. `$${` writes a literal `${`. A `$` followed by anything else is kept
//! as it is.

/// Why a value's placeholders could not be replaced. Names the variable, never
/// the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PlaceholderError {
    /// `${NAME}` names a variable that is not set.
    Unset(String),
    /// `${NAME:?message}` (or `${NAME?message}`) names a variable that is not
    /// set (or is empty): the message is the config author's.
    Required { name: String, message: String },
    /// `${` without a closing `}`, or a name that is not a variable name. It
    /// carries no text: the value around it may be a secret.
    Malformed,
}

impl std::fmt::Display for PlaceholderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlaceholderError::Unset(name) => {
                write!(
                    f,
                    "environment variable {name} is not set (write ${{{name}:-default}} \
                     to give a default)"
                )
            }
            PlaceholderError::Required { name, message } if message.is_empty() => {
                write!(f, "environment variable {name} is not set or empty")
            }
            PlaceholderError::Required { name, message } => {
                write!(f, "environment variable {name}: {message}")
            }
            PlaceholderError::Malformed => f.write_str(
                "malformed placeholder: write ${NAME}, ${NAME:-default} or ${NAME:?message} \
                 with a variable name of letters, digits and `_`, or $${ for a literal ${",
            ),
        }
    }
}

/// Replaces every `${NAME}` in `value` with `env(NAME)`.
pub(super) fn expand(
    value: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, PlaceholderError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        if let Some(literal) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = literal;
        } else if let Some(open) = after.strip_prefix("${") {
            let Some(close) = open.find('}') else {
                return Err(PlaceholderError::Malformed);
            };
            let inner = &open[..close];
            let name_end = inner
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(inner.len());
            let (name, operator) = inner.split_at(name_end);
            if !is_variable_name(name) {
                return Err(PlaceholderError::Malformed);
            }
            // `None` when unset; an empty value counts as unset after a `:`.
            let value = |empty_is_unset: bool| {
                env(name).filter(|value| !(empty_is_unset && value.is_empty()))
            };
            let expanded = if operator.is_empty() {
                value(false).ok_or_else(|| PlaceholderError::Unset(name.to_owned()))?
            } else if let Some(default) = operator.strip_prefix(":-") {
                value(true).unwrap_or_else(|| default.to_owned())
            } else if let Some(default) = operator.strip_prefix('-') {
                value(false).unwrap_or_else(|| default.to_owned())
            } else if let Some(message) = operator.strip_prefix(":?") {
                value(true).ok_or_else(|| required(name, message))?
            } else if let Some(message) = operator.strip_prefix('?') {
                value(false).ok_or_else(|| required(name, message))?
            } else {
                return Err(PlaceholderError::Malformed);
            };
            out.push_str(&expanded);
            rest = &open[close + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn required(name: &str, message: &str) -> PlaceholderError {
    PlaceholderError::Required {
        name: name.to_owned(),
        message: message.trim().to_owned(),
    }
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cret".to_owned()),
            "EMPTY" => Some(String::new()),
            "_X1" => Some("x".to_owned()),
            _ => None,
        }
    }

    #[test]
    fn replaces_every_placeholder() {
        assert_eq!(expand("a${TOKEN}b${_X1}", &env), Ok("as3cretbx".to_owned()));
        assert_eq!(expand("${EMPTY}", &env), Ok(String::new()));
        assert_eq!(
            expand("no placeholders", &env),
            Ok("no placeholders".to_owned())
        );
    }

    #[test]
    fn defaults_apply_when_unset_and_with_a_colon_when_empty() {
        assert_eq!(expand("${NOPE:-dflt}", &env), Ok("dflt".to_owned()));
        assert_eq!(expand("${NOPE-dflt}", &env), Ok("dflt".to_owned()));
        assert_eq!(expand("${EMPTY:-dflt}", &env), Ok("dflt".to_owned()));
        assert_eq!(expand("${EMPTY-dflt}", &env), Ok(String::new()));
        assert_eq!(expand("${TOKEN:-dflt}", &env), Ok("s3cret".to_owned()));
        assert_eq!(expand("a${NOPE:-}b", &env), Ok("ab".to_owned()));
        assert_eq!(
            expand("${NOPE:-http://x:9/a-b}", &env),
            Ok("http://x:9/a-b".to_owned())
        );
    }

    #[test]
    fn required_variables_say_the_authors_message() {
        assert_eq!(expand("${TOKEN:?set it}", &env), Ok("s3cret".to_owned()));
        let error = expand("${NOPE:?set NOPE to the project id}", &env).unwrap_err();
        assert_eq!(
            error.to_string(),
            "environment variable NOPE: set NOPE to the project id"
        );
        assert!(expand("${EMPTY:?needed}", &env).is_err());
        assert_eq!(expand("${EMPTY?needed}", &env), Ok(String::new()));
        assert_eq!(
            expand("${NOPE?}", &env).unwrap_err().to_string(),
            "environment variable NOPE is not set or empty"
        );
        assert!(matches!(
            expand("${TOKEN:x}", &env),
            Err(PlaceholderError::Malformed)
        ));
    }

    #[test]
    fn dollar_dollar_brace_is_a_literal() {
        assert_eq!(expand("$${TOKEN}", &env), Ok("${TOKEN}".to_owned()));
        assert_eq!(expand("cost: $5 $x", &env), Ok("cost: $5 $x".to_owned()));
        assert_eq!(expand("$", &env), Ok("$".to_owned()));
    }

    #[test]
    fn unset_and_malformed_placeholders_are_errors() {
        assert_eq!(
            expand("x${NOPE}", &env),
            Err(PlaceholderError::Unset("NOPE".to_owned()))
        );
        assert!(matches!(
            expand("${TOKEN", &env),
            Err(PlaceholderError::Malformed)
        ));
        assert!(matches!(
            expand("${1ABC}", &env),
            Err(PlaceholderError::Malformed)
        ));
        assert!(matches!(
            expand("${}", &env),
            Err(PlaceholderError::Malformed)
        ));
    }
}
