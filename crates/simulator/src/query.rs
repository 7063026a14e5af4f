//! Reading and validating the query strings of the two API endpoints, with the defaults the
//! API page documents (`offset` 0, `limit` 1000, `sort_by` `occur_time`, `order` desc).
//!
//! Upstream API: <https://docs.otc.t-systems.com/modelarts/api-ref/service_management/obtaining_service_event_logs.html>

use crate::store::EventsQuery;
use std::collections::BTreeMap;

const DEFAULT_LIMIT: u32 = 1000;
const MAX_LIMIT: u32 = 1000;

/// A query parameter the API refuses (served as 400 `ModelArts.0101`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid parameter {name}: {value:?} ({expected}).")]
pub(crate) struct InvalidParameter {
    pub(crate) name: &'static str,
    pub(crate) value: String,
    pub(crate) expected: &'static str,
}

/// Decodes `%XX` escapes (and `+` as space in queries); malformed escapes stay as they are.
pub(crate) fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
        match byte {
            b'%' => match (hex(index + 1), hex(index + 2)) {
                (Some(high), Some(low)) => {
                    // Two hex digits are at most 0xFF: the cast cannot truncate.
                    out.push((high * 16 + low) as u8);
                    index += 3;
                    continue;
                }
                _ => out.push(byte),
            },
            b'+' if plus_is_space => out.push(b' '),
            _ => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query string as a map; of repeated keys the first wins, as Java servers do.
pub(crate) fn parse_query(query: Option<&str>) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for pair in query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        map.entry(percent_decode(key, true))
            .or_insert_with(|| percent_decode(value, true));
    }
    map
}

fn invalid(name: &'static str, value: &str, expected: &'static str) -> InvalidParameter {
    InvalidParameter {
        name,
        value: value.to_owned(),
        expected,
    }
}

fn time_param(
    query: &BTreeMap<String, String>,
    name: &'static str,
) -> Result<Option<i64>, InvalidParameter> {
    query
        .get(name)
        .map(|value| {
            value
                .parse::<i64>()
                .map_err(|_| invalid(name, value, "milliseconds since the epoch"))
        })
        .transpose()
}

fn offset_param(query: &BTreeMap<String, String>) -> Result<u64, InvalidParameter> {
    match query.get("offset") {
        None => Ok(0),
        Some(value) => value
            .parse::<u64>()
            .map_err(|_| invalid("offset", value, "an integer ≥ 0")),
    }
}

fn limit_param(query: &BTreeMap<String, String>) -> Result<u32, InvalidParameter> {
    match query.get("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(value) => value
            .parse::<u32>()
            .ok()
            .filter(|limit| (1..=MAX_LIMIT).contains(limit))
            .ok_or_else(|| invalid("limit", value, "an integer from 1 to 1000")),
    }
}

fn order_param(query: &BTreeMap<String, String>) -> Result<bool, InvalidParameter> {
    match query.get("order").map(String::as_str) {
        None | Some("desc") => Ok(true),
        Some("asc") => Ok(false),
        Some(other) => Err(invalid("order", other, "asc or desc")),
    }
}

/// Validates the events endpoint's parameters; unknown parameters are ignored, as the real
/// API does.
pub(crate) fn events_query(
    query: &BTreeMap<String, String>,
) -> Result<EventsQuery, InvalidParameter> {
    let event_type = match query.get("event_type").map(String::as_str) {
        None => None,
        Some(kind @ ("normal" | "abnormal")) => Some(kind.to_owned()),
        Some(other) => return Err(invalid("event_type", other, "normal or abnormal")),
    };
    match query.get("sort_by").map(String::as_str) {
        None | Some("occur_time") => {}
        Some(other) => return Err(invalid("sort_by", other, "occur_time")),
    }
    Ok(EventsQuery {
        event_type,
        start_time: time_param(query, "start_time")?,
        end_time: time_param(query, "end_time")?,
        offset: offset_param(query)?,
        limit: limit_param(query)?,
        descending: order_param(query)?,
    })
}

/// How the services list is sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServicesSort {
    PublishAt,
    ServiceName,
}

/// What a services-list query asks for, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServicesQuery {
    pub(crate) service_name: Option<String>,
    pub(crate) status: Option<String>,
    pub(crate) offset: u64,
    pub(crate) limit: u32,
    pub(crate) sort: ServicesSort,
    pub(crate) descending: bool,
}

/// Validates the services list's parameters.
pub(crate) fn services_query(
    query: &BTreeMap<String, String>,
) -> Result<ServicesQuery, InvalidParameter> {
    let sort = match query.get("sort_by").map(String::as_str) {
        // transition_at is documented; the simulator has no transitions, so publish time stands in.
        None | Some("publish_at" | "transition_at") => ServicesSort::PublishAt,
        Some("service_name") => ServicesSort::ServiceName,
        Some(other) => {
            return Err(invalid(
                "sort_by",
                other,
                "publish_at, service_name or transition_at",
            ));
        }
    };
    Ok(ServicesQuery {
        service_name: query.get("service_name").cloned(),
        status: query.get("status").cloned(),
        offset: offset_param(query)?,
        limit: limit_param(query)?,
        sort,
        descending: order_param(query)?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_escapes_and_plus() {
        assert_eq!(
            percent_decode("my%20svc%2F%C3%A4%2B1+x", true),
            "my svc/ä+1 x"
        );
        assert_eq!(percent_decode("a+b%zz%4", false), "a+b%zz%4");
    }

    #[test]
    fn first_of_repeated_keys_wins() {
        let map = parse_query(Some("limit=5&limit=7&flag&=x"));
        assert_eq!(map.get("limit").unwrap(), "5");
        assert_eq!(map.get("flag").unwrap(), "");
    }

    #[test]
    fn events_defaults_follow_the_api_page() {
        let query = events_query(&BTreeMap::new()).unwrap();
        assert_eq!(
            query,
            EventsQuery {
                event_type: None,
                start_time: None,
                end_time: None,
                offset: 0,
                limit: 1000,
                descending: true
            }
        );
    }

    #[test]
    fn events_parameters_are_validated() {
        let bad = [
            ("event_type", "WARNING"),
            ("limit", "0"),
            ("limit", "1001"),
            ("offset", "-1"),
            ("start_time", "yesterday"),
            ("end_time", "1.5"),
            ("sort_by", "event_info"),
            ("order", "up"),
        ];
        for (name, value) in bad {
            let map = BTreeMap::from([(name.to_owned(), value.to_owned())]);
            let error = events_query(&map).unwrap_err();
            assert_eq!(error.name, name);
        }
    }
}
