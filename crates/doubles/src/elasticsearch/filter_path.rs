//! ES's `filter_path` query parameter, as it applies to a bulk answer: a comma-separated
//! list of dotted paths; a response keeps only the fields on some path, and the objects
//! and arrays that lead to them. A segment may hold `*` wildcards (`items.*.status`
//! matches whatever the operation is called), `**` stands for any number of keys, and
//! arrays are passed through (a path does not name array positions). An object or array
//! left with nothing in it is dropped, so a filter that keeps nothing answers `{}`.
//!
//! ES filters only what a request answers when it succeeds: error answers are built
//! without the filter, and so are the double's. Exclusions (`-path`) are not modelled;
//! the double refuses them rather than ignore them.

use serde_json::{Map, Value};

/// How much of a field a filter keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Keep {
    /// Nothing: no path reaches it.
    No,
    /// Some of what is inside it: a path goes on below it.
    Part,
    /// All of it: a path ends at it (or above it).
    All,
}

/// A parsed `filter_path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FilterPath {
    paths: Vec<Vec<String>>,
}

impl FilterPath {
    /// The filter of a `filter_path` value (already percent-decoded); `None` when it names
    /// no path, which ES treats as no filter.
    pub fn parse(text: &str) -> Result<Option<FilterPath>, String> {
        let mut paths = Vec::new();
        for path in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if path.starts_with('-') {
                return Err(format!(
                    "the test double does not implement filter_path exclusions [{path}]"
                ));
            }
            paths.push(path.split('.').map(str::to_owned).collect());
        }
        Ok((!paths.is_empty()).then_some(FilterPath { paths }))
    }

    /// How much of the field at `path` (keys from the root; array positions left out)
    /// this filter keeps.
    pub fn keep(&self, path: &[&str]) -> Keep {
        self.paths
            .iter()
            .map(|pattern| matches(pattern, path))
            .max()
            .unwrap_or(Keep::No)
    }

    /// What this filter keeps of `value`, found at `path`; `None` when nothing.
    pub fn filter<'a>(&self, value: &'a Value, path: &mut Vec<&'a str>) -> Option<Value> {
        match value {
            Value::Object(map) => {
                let mut kept = Map::new();
                for (key, inner) in map {
                    path.push(key);
                    let part = match self.keep(path) {
                        Keep::All => Some(inner.clone()),
                        Keep::Part => self.filter(inner, path),
                        Keep::No => None,
                    };
                    path.pop();
                    if let Some(part) = part {
                        kept.insert(key.clone(), part);
                    }
                }
                (!kept.is_empty()).then_some(Value::Object(kept))
            }
            Value::Array(items) => {
                let kept: Vec<Value> = items
                    .iter()
                    .filter_map(|item| self.filter(item, path))
                    .collect();
                (!kept.is_empty()).then_some(Value::Array(kept))
            }
            // A path goes on below a value that has nothing below it.
            _ => None,
        }
    }
}

/// How much of the field at `path` one pattern keeps.
fn matches(pattern: &[String], path: &[&str]) -> Keep {
    let Some((segment, rest)) = pattern.split_first() else {
        return Keep::All;
    };
    if segment == "**" {
        // `**` stands for no key, or for one more key and then `**` again.
        let none = matches(rest, path);
        let more = match path.split_first() {
            Some((_, below)) => matches(pattern, below),
            None => Keep::Part,
        };
        return none.max(more);
    }
    match path.split_first() {
        None => Keep::Part,
        Some((key, below)) if wildcard(segment, key) => matches(rest, below),
        Some(_) => Keep::No,
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters.
fn wildcard(pattern: &str, text: &str) -> bool {
    let Some((first, rest)) = pattern.split_once('*') else {
        return pattern == text;
    };
    let Some(mut left) = text.strip_prefix(first) else {
        return false;
    };
    let mut pieces: Vec<&str> = rest.split('*').collect();
    let last = pieces.pop().unwrap_or_default();
    for piece in pieces {
        match left.find(piece) {
            Some(at) => left = &left[at + piece.len()..],
            None => return false,
        }
    }
    left.len() >= last.len() && left.ends_with(last)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filter(text: &str) -> FilterPath {
        FilterPath::parse(text).unwrap().unwrap()
    }

    #[test]
    fn paths_keep_fields_and_what_leads_to_them() {
        let f = filter("errors,items.*.status");
        assert_eq!(f.keep(&["errors"]), Keep::All);
        assert_eq!(f.keep(&["took"]), Keep::No);
        assert_eq!(f.keep(&["items"]), Keep::Part);
        assert_eq!(f.keep(&["items", "create"]), Keep::Part);
        assert_eq!(f.keep(&["items", "create", "status"]), Keep::All);
        assert_eq!(f.keep(&["items", "create", "_id"]), Keep::No);
        assert_eq!(filter("items").keep(&["items", "index", "_id"]), Keep::All);
    }

    #[test]
    fn wildcards_and_double_wildcards() {
        assert!(wildcard("*", ""));
        assert!(wildcard("cr*", "create"));
        assert!(wildcard("*ate", "create"));
        assert!(wildcard("c*e*e", "create"));
        assert!(!wildcard("c*x", "create"));
        assert!(!wildcard("ab*ba", "aba"));
        let f = filter("**.status");
        assert_eq!(f.keep(&["status"]), Keep::All);
        assert_eq!(f.keep(&["items", "create", "status"]), Keep::All);
        assert_eq!(f.keep(&["items", "create"]), Keep::Part);
    }

    #[test]
    fn a_value_keeps_only_what_a_path_reaches_and_drops_what_is_left_empty() {
        let answer = json!({"took": 3, "errors": true, "items": [
            {"create": {"_id": "a", "status": 201, "result": "created"}},
            {"create": {"_id": "b", "status": 409, "error": {"type": "conflict", "reason": "r"}}},
        ]});
        let f = filter("errors,items.*.error.type");
        assert_eq!(
            f.filter(&answer, &mut Vec::new()),
            Some(json!({"errors": true, "items": [{"create": {"error": {"type": "conflict"}}}]}))
        );
        assert_eq!(filter("nothing").filter(&answer, &mut Vec::new()), None);
    }

    #[test]
    fn an_empty_filter_is_none_and_exclusions_are_refused() {
        assert_eq!(FilterPath::parse("").unwrap(), None);
        assert_eq!(FilterPath::parse(" , ").unwrap(), None);
        assert!(
            FilterPath::parse("-took")
                .unwrap_err()
                .contains("exclusions")
        );
    }
}
