//! `${VAR}` placeholders in string values, replaced from the environment
//! after the TOML is parsed, so that parse errors quote the placeholder and
//! never the secret it stands for.
//!
//! Syntax: `${NAME}` with `NAME` made of ASCII letters, digits and `_`, not
//! starting with a digit. `$${` writes a literal `${`. A `$` followed by
//! anything else is kept as it is.

/// Why a value's placeholders could not be replaced. Names the variable, never
/// the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PlaceholderError {
    /// `${NAME}` names a variable that is not set.
    Unset(String),
    /// `${` without a closing `}`, or a name that is not a variable name. It
    /// carries no text: the value around it may be a secret.
    Malformed,
}

impl std::fmt::Display for PlaceholderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlaceholderError::Unset(name) => {
                write!(f, "environment variable {name} is not set")
            }
            PlaceholderError::Malformed => f.write_str(
                "malformed placeholder: write ${NAME} with a variable name of letters, \
                 digits and `_`, or $${ for a literal ${",
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
            let name = &open[..close];
            if !is_variable_name(name) {
                return Err(PlaceholderError::Malformed);
            }
            match env(name) {
                Some(found) => out.push_str(&found),
                None => return Err(PlaceholderError::Unset(name.to_owned())),
            }
            rest = &open[close + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
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
