//! A push's body: entries grouped into streams (ordered by their labels) and sorted by time
//! then line within each, written as a snappy-compressed protobuf `logproto.PushRequest` or
//! as Loki's JSON (`{"streams":[{"stream":{...},"values":[["<ns>","<line>",{...}]]}]}`).
//! Pure and deterministic: the same entries give the same bytes, whatever order the batch
//! held them in, which is what makes a re-send a duplicate that Loki drops.
//!
//! The protobuf messages are written by hand from `pkg/push/push.proto`'s field numbers
//! (no `protoc` in the build); the fields Loki sets itself (`format`, `hash`, `parsed`) are
//! left out, which proto3 encodes the same as leaving them empty.

use super::LokiEncoding;
use prost::encoding::{encode_varint, encoded_len_varint};
use record::SharedRecord;
use reqwest::header::HeaderValue;
use serde_json::{Map, Value};

/// A stream's labels: name and value, ordered by name, no value empty.
pub(super) type Labels<'a> = Vec<(&'a str, String)>;

/// The line of an entry: a text of the record, or its JSON line, which the protobuf
/// push writes straight from the record (its length is known without writing it), so
/// that no string is made per record.
#[derive(Debug, Clone, Copy)]
pub(super) enum Line<'a> {
    Text(&'a str),
    Json(&'a SharedRecord),
}

impl<'a> Line<'a> {
    pub fn len(&self) -> usize {
        match self {
            Line::Text(text) => text.len(),
            Line::Json(record) => record.json_line_len(),
        }
    }

    /// The line as text (a JSON line is made once, and kept by the record).
    pub fn text(&self) -> &'a str {
        match self {
            Line::Text(text) => text,
            Line::Json(record) => record.json_line(),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Line::Text(text) => out.extend_from_slice(text.as_bytes()),
            Line::Json(record) => record.write_json_line(out),
        }
    }
}

impl PartialEq for Line<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.text() == other.text()
    }
}

impl Eq for Line<'_> {}

/// One entry to push, with the index of its record in the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry<'a> {
    pub index: usize,
    pub timestamp_ns: i64,
    pub line: Line<'a>,
    /// Name and value, ordered by name, no value empty.
    pub structured_metadata: Vec<(&'a str, String)>,
}

/// The entries of one stream, sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Stream<'a> {
    pub labels: Labels<'a>,
    pub entries: Vec<Entry<'a>>,
}

/// Groups entries by their labels; streams ordered by labels, entries by time then line.
/// (What [`StreamsBuilder`] makes, for tests that have each entry's labels at hand.)
#[cfg(test)]
pub(super) fn streams<'a>(
    entries: impl IntoIterator<Item = (Labels<'a>, Entry<'a>)>,
) -> Vec<Stream<'a>> {
    let mut streams = StreamsBuilder::default();
    for (labels, entry) in entries {
        let stream = match streams.find(|known| *known == labels) {
            Some(stream) => stream,
            None => streams.add(labels),
        };
        streams.push(stream, entry);
    }
    streams.finish()
}

/// Entries grouped by their labels as they come, for a caller that can compare a
/// record's labels with a stream's without making them: a batch has few streams, so
/// each record's labels are made at most once per stream, not once per record.
#[derive(Debug, Default)]
pub(super) struct StreamsBuilder<'a> {
    streams: Vec<Stream<'a>>,
    /// The stream the last entry went to, looked at first.
    last: usize,
}

impl<'a> StreamsBuilder<'a> {
    /// The stream whose labels `matches`.
    pub fn find(&mut self, matches: impl Fn(&Labels<'a>) -> bool) -> Option<usize> {
        if self
            .streams
            .get(self.last)
            .is_some_and(|s| matches(&s.labels))
        {
            return Some(self.last);
        }
        let found = self.streams.iter().position(|s| matches(&s.labels))?;
        self.last = found;
        Some(found)
    }

    /// A new stream (its labels no other stream's).
    pub fn add(&mut self, labels: Labels<'a>) -> usize {
        self.streams.push(Stream {
            labels,
            entries: Vec::new(),
        });
        self.last = self.streams.len() - 1;
        self.last
    }

    pub fn push(&mut self, stream: usize, entry: Entry<'a>) {
        self.streams[stream].entries.push(entry);
    }

    /// The streams ordered by labels, entries by time then line (a stable sort: equal
    /// entries keep the batch's order).
    pub fn finish(mut self) -> Vec<Stream<'a>> {
        self.streams.sort_by(|a, b| a.labels.cmp(&b.labels));
        for stream in &mut self.streams {
            // Lines are compared (and a JSON line made) only between entries of one time.
            stream.entries.sort_by(|a, b| {
                a.timestamp_ns
                    .cmp(&b.timestamp_ns)
                    .then_with(|| a.line.text().cmp(b.line.text()))
            });
        }
        self.streams
    }
}

/// The `Content-Type` of a push in `encoding`.
pub(super) fn content_type(encoding: LokiEncoding) -> HeaderValue {
    match encoding {
        LokiEncoding::Protobuf => HeaderValue::from_static("application/x-protobuf"),
        LokiEncoding::Json => HeaderValue::from_static("application/json"),
    }
}

/// The body of a push of `streams` (uncompressed JSON: the HTTP client gzips it when the
/// sink's `compression` says so).
pub(super) fn encode(streams: &[Stream<'_>], encoding: LokiEncoding) -> Result<Vec<u8>, String> {
    match encoding {
        LokiEncoding::Protobuf => {
            let raw = push_request(streams);
            snap::raw::Encoder::new()
                .compress_vec(&raw)
                .map_err(|e| format!("cannot snappy-compress the push: {e}"))
        }
        LokiEncoding::Json => serde_json::to_vec(&json(streams))
            .map_err(|e| format!("cannot write the push as JSON: {e}")),
    }
}

/// The push as `logproto.PushRequest` bytes, written straight from the streams (no
/// message structs, so no copy of each line): the bytes prost writes for [`protobuf`]'s
/// messages, field by field in tag order, proto3 defaults (0, "") left out, a present
/// `timestamp` always written.
fn push_request(streams: &[Stream<'_>]) -> Vec<u8> {
    let labels: Vec<String> = streams.iter().map(|s| label_string(&s.labels)).collect();
    let size: usize = streams
        .iter()
        .zip(&labels)
        .map(|(stream, labels)| field_len(1, stream_len(stream, labels)))
        .sum();
    let mut out = Vec::with_capacity(size);
    for (stream, labels) in streams.iter().zip(&labels) {
        key(&mut out, 1);
        encode_varint(stream_len(stream, labels) as u64, &mut out);
        string_field(&mut out, 1, labels);
        for entry in &stream.entries {
            key(&mut out, 2);
            encode_varint(entry_len(entry) as u64, &mut out);
            let (seconds, nanos) = timestamp(entry.timestamp_ns);
            key(&mut out, 1);
            encode_varint(timestamp_len(seconds, nanos) as u64, &mut out);
            int_field(&mut out, 1, seconds);
            int_field(&mut out, 2, i64::from(nanos));
            if entry.line.len() > 0 {
                key(&mut out, 2);
                encode_varint(entry.line.len() as u64, &mut out);
                entry.line.write(&mut out);
            }
            for (name, value) in &entry.structured_metadata {
                key(&mut out, 3);
                encode_varint(pair_len(name, value) as u64, &mut out);
                string_field(&mut out, 1, name);
                string_field(&mut out, 2, value);
            }
        }
    }
    out
}

/// `google.protobuf.Timestamp` of a time in nanoseconds: `nanos` in `0..10⁹`.
fn timestamp(ns: i64) -> (i64, i32) {
    // Below 10⁹, so it fits.
    (
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as i32,
    )
}

/// The key of a length-delimited field (wire type 2).
fn key(out: &mut Vec<u8>, tag: u32) {
    encode_varint(u64::from(tag << 3 | 2), out);
}

/// A length-delimited field with its key and length.
fn field_len(tag: u32, len: usize) -> usize {
    encoded_len_varint(u64::from(tag << 3 | 2)) + encoded_len_varint(len as u64) + len
}

fn string_len(tag: u32, text: &str) -> usize {
    if text.is_empty() {
        0
    } else {
        field_len(tag, text.len())
    }
}

fn string_field(out: &mut Vec<u8>, tag: u32, text: &str) {
    if !text.is_empty() {
        key(out, tag);
        encode_varint(text.len() as u64, out);
        out.extend_from_slice(text.as_bytes());
    }
}

/// An `int64`/`int32` field (wire type 0; negative numbers as ten bytes, as prost does).
fn int_len(tag: u32, value: i64) -> usize {
    if value == 0 {
        0
    } else {
        encoded_len_varint(u64::from(tag << 3)) + encoded_len_varint(value as u64)
    }
}

fn int_field(out: &mut Vec<u8>, tag: u32, value: i64) {
    if value != 0 {
        encode_varint(u64::from(tag << 3), out);
        encode_varint(value as u64, out);
    }
}

fn timestamp_len(seconds: i64, nanos: i32) -> usize {
    int_len(1, seconds) + int_len(2, i64::from(nanos))
}

fn pair_len(name: &str, value: &str) -> usize {
    string_len(1, name) + string_len(2, value)
}

fn entry_len(entry: &Entry<'_>) -> usize {
    let (seconds, nanos) = timestamp(entry.timestamp_ns);
    field_len(1, timestamp_len(seconds, nanos))
        + match entry.line.len() {
            0 => 0,
            len => field_len(2, len),
        }
        + entry
            .structured_metadata
            .iter()
            .map(|(name, value)| field_len(3, pair_len(name, value)))
            .sum::<usize>()
}

fn stream_len(stream: &Stream<'_>, labels: &str) -> usize {
    string_len(1, labels)
        + stream
            .entries
            .iter()
            .map(|entry| field_len(2, entry_len(entry)))
            .sum::<usize>()
}

/// The same push as prost messages: what [`push_request`] is checked against.
#[cfg(test)]
fn protobuf(streams: &[Stream<'_>]) -> proto::PushRequest {
    proto::PushRequest {
        streams: streams
            .iter()
            .map(|stream| proto::StreamAdapter {
                labels: label_string(&stream.labels),
                entries: stream
                    .entries
                    .iter()
                    .map(|entry| proto::EntryAdapter {
                        timestamp: Some(proto::Timestamp {
                            seconds: entry.timestamp_ns.div_euclid(1_000_000_000),
                            // Below 10⁹, so it fits.
                            nanos: entry.timestamp_ns.rem_euclid(1_000_000_000) as i32,
                        }),
                        line: entry.line.text().to_owned(),
                        structured_metadata: entry
                            .structured_metadata
                            .iter()
                            .map(|(name, value)| proto::LabelPairAdapter {
                                name: (*name).to_owned(),
                                value: value.clone(),
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn json(streams: &[Stream<'_>]) -> Value {
    let streams: Vec<Value> = streams
        .iter()
        .map(|stream| {
            let labels: Map<String, Value> = stream
                .labels
                .iter()
                .map(|(name, value)| ((*name).to_owned(), Value::String(value.clone())))
                .collect();
            let values: Vec<Value> = stream
                .entries
                .iter()
                .map(|entry| {
                    // Loki wants the nanoseconds as a string of digits.
                    let mut value = vec![
                        Value::String(entry.timestamp_ns.to_string()),
                        Value::String(entry.line.text().to_owned()),
                    ];
                    if !entry.structured_metadata.is_empty() {
                        value.push(Value::Object(
                            entry
                                .structured_metadata
                                .iter()
                                .map(|(n, v)| ((*n).to_owned(), Value::String(v.clone())))
                                .collect(),
                        ));
                    }
                    Value::Array(value)
                })
                .collect();
            let mut object = Map::new();
            object.insert("stream".to_owned(), Value::Object(labels));
            object.insert("values".to_owned(), Value::Array(values));
            Value::Object(object)
        })
        .collect();
    let mut root = Map::new();
    root.insert("streams".to_owned(), Value::Array(streams));
    Value::Object(root)
}

/// Prometheus' text form of labels, `{a="b", c="d"}`, which Loki parses with the PromQL
/// lexer: values quoted with Go's escapes, so any text survives.
pub(super) fn label_string(labels: &[(&str, String)]) -> String {
    let mut out = String::from("{");
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
    out
}

/// `logproto` messages, as far as a client sets them.
#[cfg(test)]
pub(super) mod proto {
    /// `PushRequest { repeated StreamAdapter streams = 1; }`
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PushRequest {
        #[prost(message, repeated, tag = "1")]
        pub streams: Vec<StreamAdapter>,
    }

    /// `StreamAdapter { string labels = 1; repeated EntryAdapter entries = 2; }`
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StreamAdapter {
        #[prost(string, tag = "1")]
        pub labels: String,
        #[prost(message, repeated, tag = "2")]
        pub entries: Vec<EntryAdapter>,
    }

    /// `EntryAdapter { google.protobuf.Timestamp timestamp = 1; string line = 2;
    /// repeated LabelPairAdapter structuredMetadata = 3; }`
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EntryAdapter {
        #[prost(message, optional, tag = "1")]
        pub timestamp: Option<Timestamp>,
        #[prost(string, tag = "2")]
        pub line: String,
        #[prost(message, repeated, tag = "3")]
        pub structured_metadata: Vec<LabelPairAdapter>,
    }

    /// `google.protobuf.Timestamp { int64 seconds = 1; int32 nanos = 2; }`
    #[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
    pub struct Timestamp {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }

    /// `LabelPairAdapter { string name = 1; string value = 2; }`
    #[derive(Clone, PartialEq, Eq, prost::Message)]
    pub struct LabelPairAdapter {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use prost::Message as _;

    fn entry(index: usize, timestamp_ns: i64, line: &str) -> Entry<'_> {
        Entry {
            index,
            timestamp_ns,
            line: Line::Text(line),
            structured_metadata: Vec::new(),
        }
    }

    fn labels(pairs: &[(&'static str, &str)]) -> Labels<'static> {
        pairs.iter().map(|(n, v)| (*n, (*v).to_owned())).collect()
    }

    #[test]
    fn entries_are_grouped_by_stream_and_sorted() {
        let a = labels(&[("service_name", "a")]);
        let b = labels(&[("service_name", "b")]);
        let streams = streams([
            (b.clone(), entry(0, 30, "b3")),
            (a.clone(), entry(1, 20, "a2")),
            (b.clone(), entry(2, 10, "b1")),
            (a.clone(), entry(3, 20, "a1")),
            (a.clone(), entry(4, 5, "a0")),
        ]);
        assert_eq!(streams.len(), 2);
        assert_eq!(streams[0].labels, a);
        let order = |s: &Stream<'_>| s.entries.iter().map(|e| e.index).collect::<Vec<_>>();
        // Same time: by line.
        assert_eq!(order(&streams[0]), [4, 3, 1]);
        assert_eq!(streams[1].labels, b);
        assert_eq!(order(&streams[1]), [2, 0]);
    }

    #[test]
    fn label_strings_escape_values() {
        let text = label_string(&labels(&[
            ("a", "plain"),
            ("b", "quote \" slash \\ nl \n esc \u{1b} 部署"),
        ]));
        assert_eq!(
            text,
            "{a=\"plain\", b=\"quote \\\" slash \\\\ nl \\n esc \\u001b 部署\"}"
        );
    }

    /// The bytes of a one-entry push, written out by hand from `push.proto`, so that a
    /// wrong field number or type cannot pass by decoding with the same wrong types.
    #[test]
    fn protobuf_bytes_follow_push_proto() {
        let streams = vec![Stream {
            labels: labels(&[("a", "b")]),
            entries: vec![entry(0, 1_000_000_001, "x")],
        }];
        let expected: Vec<u8> = [
            &[0x0a, 20][..], // streams (1), 20 bytes
            &[0x0a, 7],      // labels (1), 7 bytes
            b"{a=\"b\"}",
            &[0x12, 9],                   // entries (2), 9 bytes
            &[0x0a, 4, 0x08, 1, 0x10, 1], // timestamp (1): seconds (1) = 1, nanos (2) = 1
            &[0x12, 1],                   // line (2)
            b"x",
        ]
        .concat();
        assert_eq!(protobuf(&streams).encode_to_vec(), expected);
        let body = encode(&streams, LokiEncoding::Protobuf).unwrap();
        // Snappy's block format, not its framed one.
        assert_eq!(
            snap::raw::Decoder::new().decompress_vec(&body).unwrap(),
            expected
        );
    }

    #[test]
    fn protobuf_carries_metadata_and_times_before_1970() {
        let mut first = entry(0, -1_500_000_000, "old");
        first.structured_metadata = vec![("service_id", "s1".to_owned())];
        let streams = vec![Stream {
            labels: labels(&[("job", "x")]),
            entries: vec![first],
        }];
        let body = encode(&streams, LokiEncoding::Protobuf).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let decoded = proto::PushRequest::decode(&raw[..]).unwrap();
        let entry = &decoded.streams[0].entries[0];
        assert_eq!(
            entry.timestamp,
            Some(proto::Timestamp {
                seconds: -2,
                nanos: 500_000_000
            })
        );
        assert_eq!(entry.structured_metadata[0].name, "service_id");
        assert_eq!(entry.structured_metadata[0].value, "s1");
    }

    #[test]
    fn json_shape() {
        let mut second = entry(1, 1_718_000_000_123_000_000, "{\"id\":\"x\"}");
        second.structured_metadata = vec![("service_id", "s1".to_owned())];
        let streams = vec![Stream {
            labels: labels(&[("event_type", "normal"), ("service_name", "billing")]),
            entries: vec![entry(0, 1_718_000_000_000_000_000, "first"), second],
        }];
        let body = encode(&streams, LokiEncoding::Json).unwrap();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"streams":[{"stream":{"event_type":"normal","service_name":"billing"},"values":[["1718000000000000000","first"],["1718000000123000000","{\"id\":\"x\"}",{"service_id":"s1"}]]}]}"#
        );
    }

    #[test]
    fn the_same_entries_give_the_same_bytes_in_any_order() {
        let a = labels(&[("service_name", "a")]);
        let b = labels(&[("service_name", "b")]);
        let items = vec![
            (a.clone(), entry(0, 3, "a3")),
            (b.clone(), entry(1, 1, "b1")),
            (a.clone(), entry(2, 1, "a1")),
        ];
        let mut reversed = items.clone();
        reversed.reverse();
        for encoding in [LokiEncoding::Protobuf, LokiEncoding::Json] {
            let one = encode(&streams(items.clone()), encoding).unwrap();
            let two = encode(&streams(reversed.clone()), encoding).unwrap();
            assert_eq!(one, two);
        }
    }

    /// The hand-written encoder against prost's, on what makes protobuf bytes differ:
    /// zero and negative times, empty strings, lengths of one, two and three bytes.
    #[test]
    fn push_requests_are_the_bytes_prost_writes() {
        let long = "x".repeat(200);
        let longer = "é".repeat(10_000);
        let mut with_metadata = entry(3, 1_718_000_000_123_456_789, &long);
        with_metadata.structured_metadata = vec![
            ("service_id", "s1".to_owned()),
            ("empty", String::new()),
            ("", "no name".to_owned()),
        ];
        let cases = vec![
            vec![],
            vec![Stream {
                labels: labels(&[("a", "b")]),
                entries: vec![entry(0, 1_000_000_001, "x")],
            }],
            vec![
                Stream {
                    labels: labels(&[("job", "x"), ("service_name", "quote \" 部署")]),
                    entries: vec![
                        entry(0, 0, ""),
                        entry(1, -1, "before 1970"),
                        entry(2, -1_500_000_000, &longer),
                        with_metadata,
                        entry(4, i64::MAX, "late"),
                        entry(5, i64::MIN, "early"),
                        entry(6, 5_000_000_000, "whole seconds"),
                    ],
                },
                Stream {
                    labels: labels(&[]),
                    entries: vec![entry(7, 999_999_999, "nanos only")],
                },
                Stream {
                    labels: labels(&[("b", "c")]),
                    entries: vec![],
                },
            ],
        ];
        for streams in cases {
            assert_eq!(push_request(&streams), protobuf(&streams).encode_to_vec());
        }
    }

    #[test]
    fn json_lines_are_written_from_their_records_as_prost_writes_their_text() {
        // Records whose lines need escaping and whose lines are long enough for a
        // two-byte length, written straight from the record (no line made first).
        let record = |info: &str| {
            SharedRecord::new(record::EventRecord::new(
                "prod",
                "svc",
                record::IdParts {
                    project_id: "p",
                    service_id: "s",
                    occur_time: 1_718_000_000_123,
                    event_type: "normal",
                    event_info: info,
                    twin: 1,
                },
            ))
        };
        let records = [
            record("deploy failed"),
            record("quote \" and \\ and \n"),
            record(&"é".repeat(100)),
        ];
        let entries = records
            .iter()
            .enumerate()
            .map(|(index, r)| Entry {
                index,
                timestamp_ns: 1_718_000_000_123_000_000,
                line: Line::Json(r),
                structured_metadata: Vec::new(),
            })
            .collect();
        let streams = vec![Stream {
            labels: labels(&[("job", "x")]),
            entries,
        }];
        let written = push_request(&streams);
        assert_eq!(written, protobuf(&streams).encode_to_vec());
        for r in &records {
            let line = r.json_line();
            assert_eq!(Line::Json(r).len(), line.len());
            assert!(
                written.windows(line.len()).any(|w| w == line.as_bytes()),
                "{line}"
            );
        }
    }
}
