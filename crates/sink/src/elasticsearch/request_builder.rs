//! The `_bulk` body: for each record an action line and a source line
//! (<https://www.elastic.co/docs/api/doc/elasticsearch/operation/operation-bulk>),
//! NDJSON ending with a newline.
//!
//! - The action is always `create` with `_id` = the record's `id`, so that a re-sent
//!   record is answered 409 instead of being written twice.
//! - `_index` is the `index` pattern with its date fields filled in from the record's
//!   `occur_time` (UTC), so a record always lands in the same index however late it is
//!   sent.
//! - The source is the record's JSON line as it is (the same bytes the file and stdout
//!   sinks write); in data-stream mode `@timestamp` (the record's `timestamp`) comes
//!   first.
//!
//! Each record's two lines are contiguous, so any run of records is one slice of the
//! body: splitting a batch after a 413 costs no re-encoding.

use crate::SharedRecord;
use bytes::Bytes;
use std::ops::Range;

/// `mode`: how documents are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// Into regular indices (the default).
    #[default]
    Bulk,
    /// Into a data stream: `create` only, and every document carries `@timestamp`.
    DataStream,
}

impl Mode {
    /// As written in `mode`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Bulk => "bulk",
            Mode::DataStream => "data_stream",
        }
    }
}

/// Longest index name Elasticsearch accepts, in bytes.
pub const MAX_INDEX_NAME_BYTES: usize = 255;

/// One piece of an index pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// `%Y`, four digits.
    Year,
    /// `%m`, two digits.
    Month,
    /// `%d`, two digits.
    Day,
    /// `%H`, two digits.
    Hour,
}

/// The `index` key: an index (or data stream) name, possibly with date fields taken
/// from the record's `occur_time` in UTC (`modelarts-events-%Y.%m.%d`). Parsing checks
/// everything that does not depend on the date, so every rendered name is one
/// Elasticsearch accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPattern {
    text: String,
    parts: Vec<Part>,
}

impl IndexPattern {
    /// Parses and validates a pattern: `%Y`, `%m`, `%d`, `%H` and `%%` only; the fixed
    /// text lowercase, without `\ / * ? " < > | , # :`, spaces or control characters;
    /// not starting with `-`, `_` or `+`; not `.` or `..`; at most 255 bytes once filled
    /// in. The error says what is wrong, for the caller to put its key on.
    pub fn parse(text: &str) -> Result<IndexPattern, String> {
        if text.is_empty() {
            return Err("must not be empty".to_owned());
        }
        let mut parts: Vec<Part> = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                check_literal_char(c)?;
                literal.push(c);
                continue;
            }
            let field = match chars.next() {
                Some('%') => {
                    literal.push('%');
                    continue;
                }
                Some('Y') => Part::Year,
                Some('m') => Part::Month,
                Some('d') => Part::Day,
                Some('H') => Part::Hour,
                Some(other) => {
                    return Err(format!(
                        "has an unknown date field %{other}; use %Y, %m, %d, %H, or %% for a \
                         literal %"
                    ));
                }
                None => {
                    return Err("ends with a lone %; write %% for a literal %".to_owned());
                }
            };
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(field);
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        if let Some(Part::Literal(first)) = parts.first()
            && first.starts_with(['-', '_', '+'])
        {
            return Err("must not start with '-', '_' or '+'".to_owned());
        }
        if let [Part::Literal(only)] = parts.as_slice()
            && (only == "." || only == "..")
        {
            return Err("must not be \".\" or \"..\"".to_owned());
        }
        let pattern = IndexPattern {
            text: text.to_owned(),
            parts,
        };
        let length = pattern.rendered_len();
        if length > MAX_INDEX_NAME_BYTES {
            return Err(format!(
                "makes index names of {length} bytes; Elasticsearch allows at most \
                 {MAX_INDEX_NAME_BYTES}"
            ));
        }
        Ok(pattern)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the name depends on the record's date.
    pub fn is_dated(&self) -> bool {
        self.parts.iter().any(|p| !matches!(p, Part::Literal(_)))
    }

    /// The index name for a record that occurred at `occur_time` (epoch milliseconds;
    /// times before 1970 count as 1970-01-01, as the record's `timestamp` does).
    pub fn render(&self, occur_time: i64) -> String {
        // The record's own timestamp (`2019-07-08T14:47:31.764Z`) has every field a
        // pattern can name, as digits.
        let time = record::Timestamp::from_ms(occur_time);
        let digits = time.as_str();
        let mut name = String::with_capacity(self.rendered_len());
        for part in &self.parts {
            name.push_str(match part {
                Part::Literal(text) => text,
                Part::Year => &digits[0..4],
                Part::Month => &digits[5..7],
                Part::Day => &digits[8..10],
                Part::Hour => &digits[11..13],
            });
        }
        name
    }

    /// The length of every rendered name (years have four digits until 9999).
    fn rendered_len(&self) -> usize {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Literal(text) => text.len(),
                Part::Year => 4,
                Part::Month | Part::Day | Part::Hour => 2,
            })
            .sum()
    }
}

/// The fixed text of an index name: what `MetadataCreateIndexService` refuses.
fn check_literal_char(c: char) -> Result<(), String> {
    if c.is_uppercase() {
        return Err(format!(
            "must be lowercase: Elasticsearch refuses index names with capitals ({c:?})"
        ));
    }
    if matches!(
        c,
        '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ',' | '#' | ':' | ' '
    ) {
        return Err(format!(
            "must not contain {c:?}: Elasticsearch refuses \\ / * ? \" < > | , # : and spaces \
             in index names"
        ));
    }
    if c.is_control() || c.is_whitespace() {
        return Err(format!(
            "must not contain {c:?}: no whitespace or control characters in index names"
        ));
    }
    Ok(())
}

/// A batch encoded as a `_bulk` body, with where each record's lines end.
#[derive(Debug, Clone)]
pub struct BulkBody {
    /// Shared with each request that sends a part of it, not copied.
    bytes: Bytes,
    /// `ends[i]`: the offset just past record `i`'s source line (its newline included).
    ends: Vec<usize>,
}

impl BulkBody {
    /// Encodes `batch`: one `create` action and one source line per record.
    pub fn encode(batch: &[SharedRecord], index: &IndexPattern, mode: Mode) -> BulkBody {
        // Guessed from the first record, without writing any line.
        let estimate = record::json_lines_capacity(batch) + 160 * batch.len();
        let mut bytes = Vec::with_capacity(estimate);
        let mut ends = Vec::with_capacity(batch.len());
        // A name depends on the hour of the record's time alone (`render`), and a
        // batch's records mostly share one: the action line up to the id is written again
        // only when the hour changes. An id is 64 hex digits, which JSON never escapes.
        let mut action: Option<(i64, Vec<u8>)> = None;
        for record in batch {
            let hour = record.occur_time.max(0) / 3_600_000;
            if action.as_ref().is_none_or(|(at, _)| *at != hour) {
                let mut start = b"{\"create\":{\"_index\":".to_vec();
                push_json_string(&mut start, &index.render(record.occur_time));
                start.extend_from_slice(b",\"_id\":\"");
                action = Some((hour, start));
            }
            bytes.extend_from_slice(action.as_ref().map_or(&[][..], |(_, start)| start));
            bytes.extend_from_slice(record.id.as_bytes());
            bytes.extend_from_slice(b"\"}}\n");
            match mode {
                // Serialized straight into the body: no string per record.
                Mode::Bulk => record.write_json_line(&mut bytes),
                Mode::DataStream => {
                    let line = record.json_line();
                    match line.strip_prefix('{') {
                        Some(rest) => {
                            bytes.extend_from_slice(b"{\"@timestamp\":");
                            push_json_string(&mut bytes, &record.timestamp);
                            if rest != "}" {
                                bytes.push(b',');
                            }
                            bytes.extend_from_slice(rest.as_bytes());
                        }
                        None => bytes.extend_from_slice(line.as_bytes()),
                    }
                }
            }
            bytes.push(b'\n');
            ends.push(bytes.len());
        }
        BulkBody {
            bytes: bytes.into(),
            ends,
        }
    }

    /// Records in the body.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The body of records `range` alone: a valid `_bulk` body by itself (shared with
    /// this one, not copied).
    pub fn slice(&self, range: Range<usize>) -> Bytes {
        let start = match range.start {
            0 => 0,
            i => self.ends[i - 1],
        };
        let end = match range.end {
            0 => 0,
            i => self.ends[i - 1],
        };
        self.bytes.slice(start..end)
    }

    /// The whole body.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// `text` as a JSON string (RFC 8259 §7): quotes, backslashes and control characters
/// escaped.
fn push_json_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    // Ids and index names never need escaping: copied whole.
    if !text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
        return;
    }
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if u32::from(c) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", u32::from(c)).as_bytes());
            }
            c => {
                let mut buffer = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use record::{EventRecord, IdParts};
    use serde_json::Value;

    fn record(occur_time: i64, info: &str) -> SharedRecord {
        SharedRecord::new(EventRecord::new(
            "prod",
            "svc",
            IdParts {
                project_id: "p",
                service_id: "s",
                occur_time,
                event_type: "normal",
                event_info: info,
                twin: 1,
            },
        ))
    }

    fn lines(body: &[u8]) -> Vec<Value> {
        let text = std::str::from_utf8(body).unwrap();
        assert!(text.ends_with('\n'));
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn patterns_render_from_occur_time_in_utc() {
        let pattern = IndexPattern::parse("modelarts-events-%Y.%m.%d").unwrap();
        assert!(pattern.is_dated());
        // 2019-07-08T14:47:31.764Z
        assert_eq!(pattern.render(1562597251764), "modelarts-events-2019.07.08");
        // One millisecond before midnight UTC, and midnight.
        assert_eq!(pattern.render(1562630399999), "modelarts-events-2019.07.08");
        assert_eq!(pattern.render(1562630400000), "modelarts-events-2019.07.09");
        let hourly = IndexPattern::parse("ev-%Y%m%d%H-100%%").unwrap();
        assert_eq!(hourly.render(1562597251764), "ev-2019070814-100%");
        // A leap day, and the epoch for anything before it.
        assert_eq!(pattern.render(951782400000), "modelarts-events-2000.02.29");
        assert_eq!(pattern.render(-5), "modelarts-events-1970.01.01");
        let fixed = IndexPattern::parse("modelarts-events").unwrap();
        assert!(!fixed.is_dated());
        assert_eq!(fixed.render(1562597251764), "modelarts-events");
        assert_eq!(fixed.as_str(), "modelarts-events");
    }

    #[test]
    fn patterns_refuse_what_elasticsearch_refuses() {
        let error = |text: &str| IndexPattern::parse(text).unwrap_err();
        assert_eq!(error(""), "must not be empty");
        assert!(error("events-%y").contains("unknown date field %y"));
        assert!(error("events-%M").contains("unknown date field %M"));
        assert!(error("events-%").contains("lone %"));
        assert!(error("Events").contains("lowercase"));
        for bad in [
            "a b", "a/b", "a\\b", "a*", "a?", "a\"", "a<", "a>", "a|b", "a,b", "a#", "a:b",
        ] {
            assert!(error(bad).starts_with("must not contain"), "{bad}");
        }
        assert!(error("a\tb").contains("control"));
        for bad in ["-x", "_x", "+x"] {
            assert_eq!(error(bad), "must not start with '-', '_' or '+'");
        }
        assert_eq!(error("."), "must not be \".\" or \"..\"");
        assert_eq!(error(".."), "must not be \".\" or \"..\"");
        // Dots elsewhere, and a leading date field, are fine.
        assert!(IndexPattern::parse(".hidden-events").is_ok());
        assert!(IndexPattern::parse("%Y-events").is_ok());
        assert!(IndexPattern::parse(&"a".repeat(255)).is_ok());
        assert!(error(&"a".repeat(256)).contains("256 bytes"));
        assert!(error(&format!("{}%Y", "a".repeat(252))).contains("256 bytes"));
    }

    #[test]
    fn bulk_body_has_create_with_the_id_and_the_record_as_source() {
        let batch = [
            record(1562597251764, "start to deploy service"),
            record(1562630400000, "quote \" and \\"),
        ];
        let pattern = IndexPattern::parse("ev-%Y.%m.%d").unwrap();
        let body = BulkBody::encode(&batch, &pattern, Mode::Bulk);
        assert_eq!(body.len(), 2);
        let text = std::str::from_utf8(body.as_bytes()).unwrap();
        let first_action = format!(
            "{{\"create\":{{\"_index\":\"ev-2019.07.08\",\"_id\":\"{}\"}}}}\n",
            batch[0].id
        );
        assert!(text.starts_with(&first_action), "{text}");
        assert!(text.ends_with('\n'));
        assert_eq!(text.lines().count(), 4);
        assert_eq!(text.lines().nth(1).unwrap(), batch[0].json_line());
        assert_eq!(text.lines().nth(3).unwrap(), batch[1].json_line());
        let values = lines(body.as_bytes());
        assert_eq!(values[2]["create"]["_index"], "ev-2019.07.09");
        assert_eq!(values[2]["create"]["_id"], batch[1].id.as_str());
        assert_eq!(values[3]["event_info"], "quote \" and \\");
    }

    #[test]
    fn each_record_gets_the_index_of_its_own_hour() {
        // Runs of the same hour, a new hour, a new day, back to an earlier hour, and
        // times before 1970 (the epoch's hour).
        let hour = 3_600_000;
        let times = [
            1562597251764,
            1562597251765,
            1562597251764 + hour,
            1562597251764 + 24 * hour,
            1562597251764,
            -5,
            0,
        ];
        let batch: Vec<SharedRecord> = times.iter().map(|&t| record(t, "x")).collect();
        let pattern = IndexPattern::parse("ev-%Y.%m.%d.%H").unwrap();
        let body = BulkBody::encode(&batch, &pattern, Mode::Bulk);
        let values = lines(body.as_bytes());
        let indices: Vec<&str> = values
            .iter()
            .step_by(2)
            .map(|action| action["create"]["_index"].as_str().unwrap())
            .collect();
        let expected: Vec<String> = times.iter().map(|&t| pattern.render(t)).collect();
        assert_eq!(indices, expected);
        assert_eq!(
            indices[..4],
            [
                "ev-2019.07.08.14",
                "ev-2019.07.08.14",
                "ev-2019.07.08.15",
                "ev-2019.07.09.14"
            ]
        );
    }

    #[test]
    fn data_stream_sources_start_with_the_timestamp() {
        let batch = [record(1562597251764, "x")];
        let pattern = IndexPattern::parse("logs-modelarts-default").unwrap();
        let body = BulkBody::encode(&batch, &pattern, Mode::DataStream);
        let text = std::str::from_utf8(body.as_bytes()).unwrap();
        let source = text.lines().nth(1).unwrap();
        assert!(
            source.starts_with("{\"@timestamp\":\"2019-07-08T14:47:31.764Z\",\"id\":"),
            "{source}"
        );
        let value: Value = serde_json::from_str(source).unwrap();
        let mut without: serde_json::Map<String, Value> = value.as_object().unwrap().clone();
        without.remove("@timestamp");
        let original: Value = serde_json::from_str(batch[0].json_line()).unwrap();
        assert_eq!(Value::Object(without), original);
    }

    #[test]
    fn slices_are_whole_bodies_of_their_records() {
        let batch: Vec<SharedRecord> = (0..5).map(|i| record(1562597251764 + i, "x")).collect();
        let pattern = IndexPattern::parse("ev").unwrap();
        let body = BulkBody::encode(&batch, &pattern, Mode::Bulk);
        assert_eq!(body.slice(0..5), body.as_bytes());
        assert!(body.slice(2..2).is_empty());
        let middle = lines(&body.slice(1..3));
        assert_eq!(middle.len(), 4);
        assert_eq!(middle[0]["create"]["_id"], batch[1].id.as_str());
        assert_eq!(middle[2]["create"]["_id"], batch[2].id.as_str());
        let last = lines(&body.slice(4..5));
        assert_eq!(last[0]["create"]["_id"], batch[4].id.as_str());
    }

    #[test]
    fn json_strings_escape_what_json_requires() {
        let mut out = Vec::new();
        push_json_string(&mut out, "a\"b\\c\nd\u{1}é");
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "\"a\\\"b\\\\c\\nd\\u0001é\"");
        let back: String = serde_json::from_str(&text).unwrap();
        assert_eq!(back, "a\"b\\c\nd\u{1}é");
    }

    #[test]
    fn strings_without_escapes_are_written_as_serde_json_writes_them() {
        for text in ["", "modelarts-events-2026.11.30", "a1b2c3", "部署 ~\u{7f}"] {
            let mut out = Vec::new();
            push_json_string(&mut out, text);
            assert_eq!(out, serde_json::to_vec(text).unwrap(), "{text}");
        }
    }
}
