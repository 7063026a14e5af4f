//! The normalized event record that every sink receives, and its pinned `id`.
//!
//! The ModelArts events API (`GET /v1/{project_id}/services/{service_id}/events`)
//! gives events no id. The `id` computed here is the idempotency key used by the
//! sinks (Elasticsearch `_id`, webhook `Idempotency-Key`) and the fingerprint the
//! checkpoint keeps, so its recipe is part of the user-facing contract: the
//! lowercase hex SHA-256 of the compact JSON array
//! `[project_id, service_id, occur_time, event_type, event_info, twin]`.

mod json;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// One service event, normalized, as written by the file and stdout sinks.
///
/// The fields of its service are shared by every record of that service (see
/// [`ServiceFields`]); they serialize as plain strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Pinned idempotency key (see [`event_id`]).
    pub id: EventId,
    /// Name of the configured source that fetched the event.
    pub source: Arc<str>,
    pub project_id: Arc<str>,
    pub service_id: Arc<str>,
    pub service_name: Arc<str>,
    /// Milliseconds since the Unix epoch, as the API gives it.
    pub occur_time: i64,
    /// `occur_time` as RFC 3339 UTC with milliseconds.
    pub timestamp: Timestamp,
    /// Passed through as the API gives it (an unknown type is kept).
    pub event_type: String,
    pub event_info: String,
}

/// The fields every record of one service has in common, made once per service and
/// shared by its records (cloning them is four reference counts, not four copies). Their
/// part of a record's JSON line is measured once, when they are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFields {
    source: Arc<str>,
    project_id: Arc<str>,
    service_id: Arc<str>,
    service_name: Arc<str>,
    /// The quoted lengths of the four texts, and whether none needs escaping.
    measure: (usize, bool),
}

impl ServiceFields {
    pub fn new(source: &str, project_id: &str, service_id: &str, service_name: &str) -> Self {
        let mut fields = ServiceFields {
            source: source.into(),
            project_id: project_id.into(),
            service_id: service_id.into(),
            service_name: service_name.into(),
            measure: (0, true),
        };
        fields.measure_again();
        fields
    }

    pub fn service_name(&self) -> &str {
        &self.service_name
    }

    /// Gives the service another name (a page brought a new one).
    pub fn set_service_name(&mut self, name: &str) {
        self.service_name = name.into();
        self.measure_again();
    }

    /// Appends the JSON line (without the newline) of the record that
    /// [`SharedRecord::of_service`] makes of this service's event, without making the
    /// record: the same bytes, for a writer that needs nothing but the line.
    pub fn write_event_line(
        &self,
        out: &mut Vec<u8>,
        occur_time: i64,
        event_type: &str,
        event_info: &str,
        twin: u32,
    ) {
        let (id, _, _) = event_id_measuring(IdParts {
            project_id: &self.project_id,
            service_id: &self.service_id,
            occur_time,
            event_type,
            event_info,
            twin,
        });
        let timestamp = Timestamp::from_ms(occur_time);
        let [source, project_id, service_id, service_name] = self.texts();
        let texts = [
            id.as_bytes(),
            source,
            project_id,
            service_id,
            service_name,
            timestamp.as_bytes(),
            event_type.as_bytes(),
            event_info.as_bytes(),
        ];
        write_line_with(out, texts, occur_time, json::push_str);
    }

    /// The source, project, service id and name, in the order of a record's line.
    fn texts(&self) -> [&[u8]; 4] {
        [
            self.source.as_bytes(),
            self.project_id.as_bytes(),
            self.service_id.as_bytes(),
            self.service_name.as_bytes(),
        ]
    }

    fn measure_again(&mut self) {
        self.measure = self.texts().iter().fold((0, true), |(len, clean), text| {
            let quoted = json::str_len(text);
            (len + quoted, clean && quoted == text.len() + 2)
        });
    }
}

/// The fields of one event that the id is computed from.
#[derive(Debug, Clone, Copy)]
pub struct IdParts<'a> {
    pub project_id: &'a str,
    pub service_id: &'a str,
    pub occur_time: i64,
    pub event_type: &'a str,
    pub event_info: &'a str,
    /// 1-based number of the event among identical ones in its millisecond.
    pub twin: u32,
}

/// Computes the pinned event id: lowercase hex SHA-256 of the compact JSON
/// array `[project_id, service_id, occur_time, event_type, event_info, twin]`.
pub fn event_id(parts: IdParts<'_>) -> String {
    event_id_measuring(parts).0.into()
}

/// [`event_id`], and the quoted lengths of `event_type` and `event_info` as JSON strings
/// (which writing the array measures anyway).
fn event_id_measuring(parts: IdParts<'_>) -> (EventId, usize, usize) {
    // Every event of a backfill goes through here: the JSON goes into a buffer this
    // thread keeps, and the hex is written by table.
    thread_local! {
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let (digest, type_len, info_len) = BUFFER.with_borrow_mut(|out| {
        out.clear();
        out.push(b'[');
        json::push_str(out, parts.project_id.as_bytes());
        out.push(b',');
        json::push_str(out, parts.service_id.as_bytes());
        out.push(b',');
        json::push_int(out, parts.occur_time);
        out.push(b',');
        let before = out.len();
        json::push_str(out, parts.event_type.as_bytes());
        let type_len = out.len() - before;
        out.push(b',');
        let before = out.len();
        json::push_str(out, parts.event_info.as_bytes());
        let info_len = out.len() - before;
        out.push(b',');
        json::push_int(out, parts.twin);
        out.push(b']');
        (Sha256::digest(&out[..]), type_len, info_len)
    });
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut id = [0u8; 64];
    for (hex, byte) in id.chunks_exact_mut(2).zip(digest) {
        hex[0] = DIGITS[usize::from(byte >> 4)];
        hex[1] = DIGITS[usize::from(byte & 0x0f)];
    }
    (EventId(id), type_len, info_len)
}

/// What [`EventId`] and [`Timestamp`] have in common: a fixed number of ASCII bytes held
/// in place, read as a `str` (`as_str`, `Deref`, `Display`, `Debug`, comparisons with
/// strings) and serialized as one. Each type checks its own form where it is made.
macro_rules! ascii_text {
    ($name:ident, $len:literal) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                // Only ASCII is ever stored (each constructor makes or checks it).
                std::str::from_utf8(&self.0).unwrap_or_default()
            }

            /// The ASCII bytes, without checking them as UTF-8 again (as `as_str` does).
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                self.as_str()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self.as_str(), f)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    };
}

ascii_text!(EventId, 64);
ascii_text!(Timestamp, 24);

/// A record's `id` (see [`event_id`]): 64 lowercase hex digits, held in place rather than
/// in a `String` of its own (a backfill makes one per event). Dereferences to `str`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId([u8; 64]);

impl EventId {
    /// The id written as `text`, if it is 64 lowercase hex digits.
    pub fn parse(text: &str) -> Option<EventId> {
        let bytes: [u8; 64] = text.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            .then_some(EventId(bytes))
    }
}

impl PartialEq<String> for EventId {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<EventId> for String {
    fn eq(&self, other: &EventId) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<EventId> for &str {
    fn eq(&self, other: &EventId) -> bool {
        *self == other.as_str()
    }
}

impl From<EventId> for String {
    fn from(id: EventId) -> String {
        id.as_str().to_owned()
    }
}

impl<'de> Deserialize<'de> for EventId {
    /// A record read back (a dead-letter line) has the id it was written with.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        EventId::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("id {text:?} is not 64 lowercase hex digits"))
        })
    }
}

/// Formats epoch milliseconds as RFC 3339 UTC with milliseconds
/// (`2019-07-08T14:47:31.764Z`). Times before 1970 are clamped to the epoch, since the API
/// documents `occur_time` as milliseconds after it, and times after 9999 to its last
/// millisecond, since RFC 3339 has four-digit years.
pub fn timestamp_rfc3339(occur_time: i64) -> String {
    Timestamp::from_ms(occur_time).as_str().to_owned()
}

/// A record's `timestamp`: `occur_time` as RFC 3339 UTC with milliseconds
/// (`2019-07-08T14:47:31.764Z`, always 24 ASCII bytes), held in place rather than in a
/// `String` of its own (a backfill makes one per event). Dereferences to `str`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timestamp([u8; 24]);

impl Timestamp {
    /// The time of `occur_time`, clamped to the years 1970 to 9999 (see
    /// [`timestamp_rfc3339`]).
    pub fn from_ms(occur_time: i64) -> Self {
        const LAST_MS_OF_9999: i64 = 253_402_300_799_999;
        let ms = occur_time.clamp(0, LAST_MS_OF_9999);
        let (days, ms_of_day) = (ms / 86_400_000, ms % 86_400_000);
        let (year, month, day) = civil_from_days(days);
        let millis = ms % 1000;
        let two = |value: i64| [b'0' + (value / 10) as u8, b'0' + (value % 10) as u8];
        let [y1, y2] = two(year / 100);
        let [y3, y4] = two(year % 100);
        let [mo1, mo2] = two(month);
        let [d1, d2] = two(day);
        let [h1, h2] = two(ms_of_day / 3_600_000);
        let [mi1, mi2] = two(ms_of_day / 60_000 % 60);
        let [s1, s2] = two(ms_of_day / 1000 % 60);
        let [ms1, ms2] = two(millis / 10);
        let ms3 = b'0' + (millis % 10) as u8;
        Timestamp([
            y1, y2, y3, y4, b'-', mo1, mo2, b'-', d1, d2, b'T', h1, h2, b':', mi1, mi2, b':', s1,
            s2, b'.', ms1, ms2, ms3, b'Z',
        ])
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    /// A record read back (a dead-letter line) has the timestamp a record was written
    /// with: an RFC 3339 UTC time with milliseconds, which is read again as such.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        parse_rfc3339_ms(&text)
            .map(Timestamp::from_ms)
            .filter(|time| time.as_str() == text)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "timestamp {text:?} is not an RFC 3339 UTC time with milliseconds"
                ))
            })
    }
}

/// The proleptic Gregorian (year, month, day) of a day counted from 1970-01-01, for days
/// from 0 on (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Parses an RFC 3339 time into epoch milliseconds.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let time = humantime::parse_rfc3339_weak(text).ok()?;
    let ms = time.duration_since(UNIX_EPOCH).ok()?.as_millis();
    i64::try_from(ms).ok()
}

/// The current time in epoch milliseconds.
pub fn now_ms() -> i64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// The bytes of a record's line that are not its values: the braces, each key quoted with
/// its colon, and the commas between (`{"id":…,"source":…,…}`).
const LINE_KEYS_LEN: usize = {
    const KEYS: [&str; 9] = [
        "id",
        "source",
        "project_id",
        "service_id",
        "service_name",
        "occur_time",
        "timestamp",
        "event_type",
        "event_info",
    ];
    let mut len = 2 + KEYS.len() - 1;
    let mut i = 0;
    while i < KEYS.len() {
        len += KEYS[i].len() + 3;
        i += 1;
    }
    len
};

impl EventRecord {
    /// Builds a record from the id's parts, computing `id` and `timestamp`.
    pub fn new(source: &str, service_name: &str, parts: IdParts<'_>) -> Self {
        EventRecord {
            id: event_id_measuring(parts).0,
            source: source.into(),
            project_id: parts.project_id.into(),
            service_id: parts.service_id.into(),
            service_name: service_name.into(),
            occur_time: parts.occur_time,
            timestamp: Timestamp::from_ms(parts.occur_time),
            event_type: parts.event_type.to_owned(),
            event_info: parts.event_info.to_owned(),
        }
    }

    /// The record as one compact JSON line, without the newline.
    pub fn to_json_line(&self) -> String {
        let mut line = Vec::with_capacity(self.json_line_len());
        self.write_json_line(&mut line);
        // serde_json writes only valid UTF-8.
        String::from_utf8(line).expect("serde_json writes UTF-8")
    }

    /// Appends the record's JSON line (without the newline) to `out`.
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        // The same bytes as `serde_json::to_writer(out, self)` (a test holds them to it).
        self.write_line_with(out, json::push_str);
    }

    /// Writes the line field by field (see [`write_line_with`]).
    fn write_line_with(&self, out: &mut Vec<u8>, text: impl Fn(&mut Vec<u8>, &[u8])) {
        write_line_with(out, self.texts(), self.occur_time, text);
    }

    /// The length in bytes of [`to_json_line`](Self::to_json_line), counted without
    /// writing it: a batch is sized by it before any sink serializes a record.
    pub fn json_line_len(&self) -> usize {
        self.json_line_measure().0
    }

    /// The texts of the record, in the order of its line.
    fn texts(&self) -> [&[u8]; 8] {
        [
            self.id.as_bytes(),
            self.source.as_bytes(),
            self.project_id.as_bytes(),
            self.service_id.as_bytes(),
            self.service_name.as_bytes(),
            self.timestamp.as_bytes(),
            self.event_type.as_bytes(),
            self.event_info.as_bytes(),
        ]
    }

    /// The length of the JSON line, and whether none of its texts needs escaping.
    fn json_line_measure(&self) -> (usize, bool) {
        let mut clean = true;
        let mut strings = 0;
        for text in self.texts() {
            let len = json::str_len(text);
            clean &= len == text.len() + 2;
            strings += len;
        }
        (
            LINE_KEYS_LEN + strings + json::int_len(self.occur_time),
            clean,
        )
    }

    /// Writes the line of a record none of whose texts needs escaping: every text is
    /// copied between its quotes as it is.
    fn write_clean_json_line(&self, out: &mut Vec<u8>) {
        self.write_line_with(out, |out, text| {
            out.push(b'"');
            out.extend_from_slice(text);
            out.push(b'"');
        });
    }
}

/// Writes a record's JSON line field by field: the keys as constants, each text by `text`
/// and the number as it is. `texts` are the record's texts in the order of the line (see
/// [`EventRecord::texts`]); `occur_time` goes between the service's name and the
/// timestamp.
fn write_line_with(
    out: &mut Vec<u8>,
    texts: [&[u8]; 8],
    occur_time: i64,
    text: impl Fn(&mut Vec<u8>, &[u8]),
) {
    const KEYS: [&[u8]; 8] = [
        b"{\"id\":",
        b",\"source\":",
        b",\"project_id\":",
        b",\"service_id\":",
        b",\"service_name\":",
        b",\"timestamp\":",
        b",\"event_type\":",
        b",\"event_info\":",
    ];
    for (i, (key, value)) in KEYS.into_iter().zip(texts).enumerate() {
        if i == 5 {
            out.extend_from_slice(b",\"occur_time\":");
            out.extend_from_slice(itoa::Buffer::new().format(occur_time).as_bytes());
        }
        out.extend_from_slice(key);
        text(out, value);
    }
    out.push(b'}');
}

/// A record as the pipeline hands it to sinks: shared by every sink that receives it
/// (cloning is a reference count). Its JSON line is made at most once as a string
/// ([`json_line`](Self::json_line)), by the first sink that needs one; the file and stdout
/// sinks write it straight into their batch's buffer instead
/// ([`write_json_line`](Self::write_json_line)), using the string only if it exists.
/// Dereferences to the [`EventRecord`], which cannot change once shared: the line's length
/// and whether any text needs escaping are measured once, when it is made (by the service
/// job), not by every sink's driver that sizes or writes a batch.
#[derive(Clone)]
pub struct SharedRecord(Arc<Shared>);

struct Shared {
    record: EventRecord,
    json: OnceLock<Box<str>>,
    /// The length of the JSON line.
    line_len: usize,
    /// No text of the record needs escaping: the line is its texts copied between quotes.
    clean: bool,
}

impl SharedRecord {
    pub fn new(record: EventRecord) -> Self {
        let measure = record.json_line_measure();
        Self::measured(record, measure)
    }

    /// The record of an event of `service`, shared: the record [`EventRecord::new`]
    /// builds, with the service's fields shared, the event's texts taken rather than
    /// copied, and its line measured without reading its texts again (a backfill builds
    /// one per event).
    pub fn of_service(
        service: &ServiceFields,
        occur_time: i64,
        event_type: String,
        event_info: String,
        twin: u32,
    ) -> Self {
        // The line is measured from what was measured already: the service's fields once
        // per service, the event's texts while the id was computed, and the id and
        // timestamp, which never need escaping.
        let (id, type_len, info_len) = event_id_measuring(IdParts {
            project_id: &service.project_id,
            service_id: &service.service_id,
            occur_time,
            event_type: &event_type,
            event_info: &event_info,
            twin,
        });
        let clean = service.measure.1
            && type_len == event_type.len() + 2
            && info_len == event_info.len() + 2;
        let timestamp = Timestamp::from_ms(occur_time);
        let len = LINE_KEYS_LEN
            + service.measure.0
            + (id.as_bytes().len() + 2)
            + (timestamp.as_bytes().len() + 2)
            + json::int_len(occur_time)
            + type_len
            + info_len;
        let record = EventRecord {
            id,
            source: service.source.clone(),
            project_id: service.project_id.clone(),
            service_id: service.service_id.clone(),
            service_name: service.service_name.clone(),
            occur_time,
            timestamp,
            event_type,
            event_info,
        };
        Self::measured(record, (len, clean))
    }

    fn measured(record: EventRecord, (line_len, clean): (usize, bool)) -> Self {
        SharedRecord(Arc::new(Shared {
            record,
            json: OnceLock::new(),
            line_len,
            clean,
        }))
    }

    /// The record.
    pub fn record(&self) -> &EventRecord {
        &self.0.record
    }

    /// The record as one compact JSON line, without the newline; computed once and
    /// shared by every sink.
    pub fn json_line(&self) -> &str {
        self.0.json.get_or_init(|| {
            let mut line = Vec::with_capacity(self.0.line_len);
            self.write_json_line(&mut line);
            // Only whole UTF-8 texts and ASCII were written.
            String::from_utf8(line)
                .expect("a JSON line is UTF-8")
                .into()
        })
    }

    /// Appends the record's JSON line (without the newline) to `out`: the shared line
    /// when a sink already made it, or else serialized straight into `out`, so that a
    /// sink that writes lines into one buffer per batch (file, stdout) makes no string per
    /// record.
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        match self.0.json.get() {
            Some(line) => out.extend_from_slice(line.as_bytes()),
            None if self.0.clean => self.0.record.write_clean_json_line(out),
            None => self.0.record.write_json_line(out),
        }
    }

    /// The length of the JSON line in bytes, without making it.
    pub fn json_line_len(&self) -> usize {
        self.0.line_len
    }
}

/// Room for `batch`'s JSON lines with their newlines, guessed from its first line without
/// writing it (the buffer grows if later lines are longer): one count per batch, not one
/// per record.
pub fn json_lines_capacity(batch: &[SharedRecord]) -> usize {
    batch
        .first()
        .map_or(0, |first| (first.json_line_len() + 1) * batch.len())
}

impl Deref for SharedRecord {
    type Target = EventRecord;

    fn deref(&self) -> &EventRecord {
        &self.0.record
    }
}

impl From<EventRecord> for SharedRecord {
    fn from(record: EventRecord) -> Self {
        SharedRecord::new(record)
    }
}

impl fmt::Debug for SharedRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.record.fmt(f)
    }
}

impl PartialEq for SharedRecord {
    fn eq(&self, other: &Self) -> bool {
        self.0.record == other.0.record
    }
}

impl Eq for SharedRecord {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const PROJECT: &str = "0123456789abcdef0123456789abcdef";
    const SERVICE: &str = "35de3ca9-1bca-4ae7-9cb0-914f30fa7d3e";

    fn parts(twin: u32) -> IdParts<'static> {
        IdParts {
            project_id: PROJECT,
            service_id: SERVICE,
            occur_time: 1562597251764,
            event_type: "normal",
            event_info: "start to deploy service",
            twin,
        }
    }

    #[test]
    fn id_matches_design_notes_vector_twin_1() {
        assert_eq!(
            event_id(parts(1)),
            "aa88b48872f231d0b792fe08e7bba1c84337c4778ecdc3aec1841ffd7eb1546b"
        );
    }

    #[test]
    fn id_matches_design_notes_vector_twin_2() {
        assert_eq!(
            event_id(parts(2)),
            "0b4510c883a8ffcfecd0dc66e423af8287248ef3cca76eb305d772ddcd89bbfe"
        );
    }

    #[test]
    fn id_escapes_json_in_event_info() {
        let a = event_id(IdParts {
            event_info: "quote \" and \\ and \n",
            ..parts(1)
        });
        let b = event_id(IdParts {
            event_info: "quote \" and \\ and",
            ..parts(1)
        });
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn timestamp_is_rfc3339_millis_utc() {
        assert_eq!(timestamp_rfc3339(1562597251764), "2019-07-08T14:47:31.764Z");
        assert_eq!(timestamp_rfc3339(-5), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            parse_rfc3339_ms("2019-07-08T14:47:31.764Z"),
            Some(1562597251764)
        );
    }

    #[test]
    fn an_id_reads_back_only_as_written() {
        let record = EventRecord::new("prod", "svc", parts(1));
        let line = record.to_json_line();
        let back: EventRecord = serde_json::from_str(&line).expect("a record line parses back");
        assert_eq!(back.id, record.id);
        assert_eq!(back.id, event_id(parts(1)));
        let id = record.id.as_str();
        for bad in [&id[1..], &id.to_uppercase(), &format!("{}g", &id[1..]), ""] {
            let edited = line.replace(id, bad);
            let error = serde_json::from_str::<EventRecord>(&edited).expect_err(bad);
            assert!(
                error.to_string().contains("not 64 lowercase hex digits"),
                "{error}"
            );
            assert_eq!(EventId::parse(bad), None);
        }
    }

    #[test]
    fn a_timestamp_reads_back_only_as_written() {
        let line = EventRecord::new("prod", "svc", parts(1)).to_json_line();
        let back: EventRecord = serde_json::from_str(&line).expect("a record line parses back");
        assert_eq!(back.timestamp, "2019-07-08T14:47:31.764Z");
        for bad in ["2019-07-08T14:47:31Z", "2019-07-08 14:47:31.764Z", "", "é"] {
            let edited = line.replace("2019-07-08T14:47:31.764Z", bad);
            let error = serde_json::from_str::<EventRecord>(&edited).expect_err(bad);
            assert!(
                error.to_string().contains("not an RFC 3339 UTC time"),
                "{error}"
            );
        }
    }

    #[test]
    fn timestamps_are_the_ones_humantime_writes() {
        let humantime = |ms: i64| {
            let time = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).expect("after 1970"));
            humantime::format_rfc3339_millis(time).to_string()
        };
        // Every day boundary around leap days and century years, and a spread of times.
        let days = [
            0, 58, 59, 60, 364, 365, 789, 790, 10_956, 10_957, 11_016, 11_017, 11_018, 47_541,
            47_540, 47_482, 2_932_896,
        ];
        let mut times: Vec<i64> = days
            .iter()
            .flat_map(|d| [d * 86_400_000, d * 86_400_000 + 86_399_999])
            .collect();
        times.extend((0..2_000).map(|i| i * 126_755_917_331 + i % 1000));
        times.extend([1562597251764, 1796056290108, 253_402_300_799_999]);
        for ms in times {
            assert_eq!(timestamp_rfc3339(ms), humantime(ms), "{ms}");
        }
        assert_eq!(timestamp_rfc3339(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(
            timestamp_rfc3339(253_402_300_800_000),
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(timestamp_rfc3339(i64::MIN), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn the_id_array_is_the_json_serde_writes() {
        // The id is the hash of serde_json's text of the array, for any texts.
        for info in [
            "",
            "start to deploy service",
            "quote \" \\ \n \u{1} é 🙂",
            &"é\"".repeat(40),
        ] {
            let parts = IdParts {
                event_info: info,
                event_type: info,
                occur_time: -3,
                ..parts(7)
            };
            let text = serde_json::to_string(&(
                parts.project_id,
                parts.service_id,
                parts.occur_time,
                parts.event_type,
                parts.event_info,
                parts.twin,
            ))
            .expect("serializes");
            let digest = Sha256::digest(text.as_bytes());
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(event_id(parts), hex, "{info:?}");
        }
    }

    #[test]
    fn record_line_has_contract_field_order() {
        let r = EventRecord::new(
            "prod",
            "svc",
            IdParts {
                event_info: "x",
                ..parts(1)
            },
        );
        let line = r.to_json_line();
        assert!(
            line.starts_with("{\"id\":\"") && line.contains("\"source\":\"prod\",\"project_id\"")
        );
        assert!(line.contains("\"timestamp\":\"2019-07-08T14:47:31.764Z\""));
    }

    #[test]
    fn a_record_of_a_service_is_the_record_new_builds_byte_for_byte() {
        let service = ServiceFields::new("prod", PROJECT, SERVICE, "svc");
        let info = "quote \" and \\ and \n";
        let built = EventRecord::new(
            "prod",
            "svc",
            IdParts {
                event_info: info,
                ..parts(2)
            },
        );
        let shared = SharedRecord::of_service(
            &service,
            parts(2).occur_time,
            "normal".to_owned(),
            info.to_owned(),
            2,
        );
        assert_eq!(*shared, built);
        assert_eq!(shared.json_line(), built.to_json_line());
        // The pinned line: the service's fields serialize as plain strings, in order.
        assert_eq!(
            SharedRecord::of_service(
                &service,
                parts(1).occur_time,
                "normal".to_owned(),
                "start to deploy service".to_owned(),
                1
            )
            .json_line(),
            format!(
                "{{\"id\":\"aa88b48872f231d0b792fe08e7bba1c84337c4778ecdc3aec1841ffd7eb1546b\",\"source\":\"prod\",\"project_id\":\"{PROJECT}\",\"service_id\":\"{SERVICE}\",\"service_name\":\"svc\",\"occur_time\":1562597251764,\"timestamp\":\"2019-07-08T14:47:31.764Z\",\"event_type\":\"normal\",\"event_info\":\"start to deploy service\"}}"
            )
        );
        let back: EventRecord =
            serde_json::from_str(&built.to_json_line()).expect("a record line parses back");
        assert_eq!(back, built);
    }

    #[test]
    fn the_counted_line_length_is_the_written_one() {
        let long = format!("{}\"{}", "a".repeat(300), "b".repeat(300));
        let texts = [
            "",
            long.as_str(),
            &long[..255],
            "start to deploy service",
            "quote \" and \\ and \n \r \t \u{8} \u{c}",
            "control \u{0} \u{1} \u{1f} and \u{7f}",
            "slash / and unicode é 日本 \u{2028} 🙂",
        ];
        let times = [0, 7, 1562597251764, 253402300799999, -5, i64::MIN];
        for (i, text) in texts.iter().enumerate() {
            for &occur_time in &times {
                let mut r = EventRecord::new(
                    texts[(i + 1) % texts.len()],
                    text,
                    IdParts {
                        event_info: text,
                        event_type: texts[(i + 2) % texts.len()],
                        occur_time,
                        ..parts(1)
                    },
                );
                r.source = (*text).into();
                let line = r.to_json_line();
                assert_eq!(r.json_line_len(), line.len(), "{line}");
                assert_eq!(line, serde_json::to_string(&r).expect("serializes"));
                let shared = SharedRecord::new(r);
                let mut out = b"x".to_vec();
                shared.write_json_line(&mut out);
                assert_eq!(&out[1..], line.as_bytes());
                assert_eq!(shared.json_line_len(), line.len());
                assert_eq!(shared.json_line(), line);
                out.truncate(1);
                shared.write_json_line(&mut out);
                assert_eq!(&out[1..], line.as_bytes());
            }
        }
    }

    #[test]
    fn a_shared_record_writes_the_line_serde_json_writes_with_or_without_escapes() {
        let clean = EventRecord::new("prod", "svc", parts(1));
        for info in [
            "start to deploy service",
            "a \"quoted\" word",
            "tab\there",
            "é 🙂",
        ] {
            let record = EventRecord {
                event_info: info.to_owned(),
                ..clean.clone()
            };
            let expected = serde_json::to_vec(&record).expect("serializes");
            let shared = SharedRecord::new(record);
            let mut out = Vec::new();
            shared.write_json_line(&mut out);
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&expected)
            );
            assert_eq!(shared.json_line_len(), expected.len());
            assert_eq!(shared.json_line().as_bytes(), expected);
        }
    }

    #[test]
    fn a_record_of_a_service_is_measured_as_it_is_written() {
        let infos = [
            "start to deploy service",
            "a \"quoted\" word",
            "tab\there",
            "é 🙂",
            "",
        ];
        let mut service = ServiceFields::new("prod", PROJECT, SERVICE, "svc");
        for name in ["svc", "quoted \"name\"", "plain again", "control \u{1}"] {
            service.set_service_name(name);
            assert_eq!(service.service_name(), name);
            for (i, info) in infos.iter().enumerate() {
                let event_type = infos[(i + 1) % infos.len()];
                let built = EventRecord::new(
                    "prod",
                    name,
                    IdParts {
                        occur_time: 1562597251764,
                        event_type,
                        event_info: info,
                        ..parts(2)
                    },
                );
                let expected = serde_json::to_vec(&built).expect("serializes");
                let shared = SharedRecord::of_service(
                    &service,
                    1562597251764,
                    event_type.to_owned(),
                    (*info).to_owned(),
                    2,
                );
                assert_eq!(*shared, built);
                assert_eq!(shared.json_line_len(), expected.len(), "{name:?} {info:?}");
                let mut out = Vec::new();
                shared.write_json_line(&mut out);
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&expected),
                    "{name:?} {info:?}"
                );
                // The same line, written without making the record.
                let mut line = Vec::new();
                service.write_event_line(&mut line, 1562597251764, event_type, info, 2);
                assert_eq!(
                    String::from_utf8_lossy(&line),
                    String::from_utf8_lossy(&expected),
                    "without a record: {name:?} {info:?}"
                );
            }
        }
    }

    #[test]
    fn shared_record_serializes_once_and_matches_the_record() {
        let r = EventRecord::new("prod", "svc", parts(1));
        let shared = SharedRecord::new(r.clone());
        let copy = shared.clone();
        assert_eq!(shared.json_line(), r.to_json_line());
        // The clone shares the one serialization.
        assert!(std::ptr::eq(shared.json_line(), copy.json_line()));
        assert_eq!(copy.id, r.id);
        assert_eq!(copy, shared);
    }
}
