//! One send: the checks Loki would fail an entry on, the push, and what its answer means
//! for each record.
//!
//! 1. **Plan** ([`plan`], pure, the clock a parameter). Per record: more than 10 minutes
//!    ahead of the clock (`creation_grace_period`) → held; no label left, a label value over
//!    2048 bytes, a line over 256 KiB or structured metadata over 64 KiB → rejected with the
//!    reason; older than `too_old_after` → rejected as the expected `too_old`, or stamped with
//!    the current time under `too_old = "rewrite_timestamp"`. The rest are grouped into
//!    streams, sorted.
//! 2. **Push** all of it in one request. A 2xx acknowledges every entry (except 260: Loki's
//!    blocked ingestion, which stores nothing and is a permanent error). 429, 5xx and
//!    transport failures are retryable, with `Retry-After`; 401 (`no org id`), 403 and the
//!    other 4xx are permanent.
//! 3. On a **400**, Loki kept the valid entries and refused others without saying which,
//!    so each entry goes again in a request of its own, a few at a time: a 2xx (most are
//!    dropped as duplicates) acknowledges it, a 400 or 413 rejects it with Loki's message, a
//!    retryable failure hands it back to the engine to retry alone, and any other failure
//!    fails the batch (nothing acknowledged; the next attempt's copies are duplicates too).

use super::request_builder::{self, Entry, Labels, Line, Stream, StreamsBuilder};
use super::{LineFormat, LokiConfig, TooOld};
use crate::http::{HttpClient, HttpRequest, HttpResponse};
use crate::{Delivery, ItemHold, ItemRetry, Rejection, SharedRecord, SinkError};
use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tracing::{debug, warn};

/// Loki's `creation_grace_period`: newer entries are refused.
pub const CREATION_GRACE_PERIOD: Duration = Duration::from_secs(10 * 60);
/// Loki 3's default `max_line_size` (`256KB`).
pub const MAX_LINE_SIZE: usize = 256 * 1024;
/// Loki's `max_label_value_length`.
pub const MAX_LABEL_VALUE_LENGTH: usize = 2048;
/// Loki's `max_structured_metadata_size` (`64kb`): names and values.
pub const MAX_STRUCTURED_METADATA_SIZE: usize = 64 * 1024;
/// How far behind its stream's newest entry Loki takes an entry (`max_chunk_age / 2`).
pub const OUT_OF_ORDER_WINDOW: Duration = Duration::from_secs(3600);
/// Loki's default `block_ingestion_status_code`.
pub const BLOCKED_STATUS: u16 = 260;
/// Requests in flight while entries are sent one by one after a 400.
const ONE_BY_ONE_CONCURRENCY: usize = 4;
/// Most characters of Loki's message kept in a rejection.
const MESSAGE_CHARS: usize = 1000;
/// What a rejection for a record older than `too_old_after` is counted as.
pub const TOO_OLD: &str = "too_old";

const TENANT_HEADER: HeaderName = HeaderName::from_static("x-scope-orgid");

/// What to do with a batch before anything is sent.
#[derive(Debug, Default)]
pub(super) struct Plan<'a> {
    pub streams: Vec<Stream<'a>>,
    pub rejected: Vec<Rejection>,
    pub held: Vec<ItemHold>,
}

fn ns(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

/// Sorts `batch` into entries to push, records to reject, and records to hold, at the
/// time `now_ns`.
pub(super) fn plan<'a>(config: &'a LokiConfig, batch: &'a [SharedRecord], now_ns: i64) -> Plan<'a> {
    let newest_allowed = now_ns.saturating_add(ns(CREATION_GRACE_PERIOD));
    let oldest_allowed = now_ns.saturating_sub(ns(config.too_old_after));
    let mut rejected = Vec::new();
    let mut held = Vec::new();
    let mut streams = StreamsBuilder::default();
    // Each label's value for the record at hand, rendered into buffers kept from record to
    // record; a stream's labels are made only for its first record.
    let mut values: Vec<String> = vec![String::new(); config.labels.len()];
    for (index, record) in batch.iter().enumerate() {
        let mut reject = |reason: String, expected: Option<&'static str>| {
            rejected.push(Rejection {
                index,
                reason,
                status: None,
                expected,
            });
        };
        let timestamp_ns = record.occur_time.saturating_mul(1_000_000);
        if timestamp_ns > newest_allowed {
            held.push(ItemHold {
                index,
                reason: format!(
                    "occur_time {} is more than 10 minutes ahead of this host's clock, and \
                     Loki refuses such entries (creation_grace_period); a later run sends it",
                    record.timestamp
                ),
            });
            continue;
        }
        for ((_, template), value) in config.labels.iter().zip(&mut values) {
            value.clear();
            template.render_into(record, value);
        }
        // The labels: name and value, without those that render empty.
        let labels = || {
            config
                .labels
                .iter()
                .zip(&values)
                .filter(|(_, value)| !value.is_empty())
                .map(|((name, _), value)| (name.as_str(), value.as_str()))
        };
        if labels().next().is_none() {
            reject(
                "every label renders empty for this record, and Loki refuses a stream \
                 without labels"
                    .to_owned(),
                None,
            );
            continue;
        }
        if let Some((name, value)) =
            labels().find(|(_, value)| value.len() > MAX_LABEL_VALUE_LENGTH)
        {
            reject(
                format!(
                    "label {name} is {} bytes long; Loki allows {MAX_LABEL_VALUE_LENGTH} \
                     (max_label_value_length)",
                    value.len()
                ),
                None,
            );
            continue;
        }
        let line = match config.line_format {
            LineFormat::Json => Line::Json(record),
            LineFormat::Text => Line::Text(&record.event_info),
        };
        if line.len() > MAX_LINE_SIZE {
            reject(
                format!(
                    "the line is {} bytes long; Loki's default max_line_size is {MAX_LINE_SIZE}",
                    line.len()
                ),
                None,
            );
            continue;
        }
        let structured_metadata: Vec<(&'a str, String)> = config
            .structured_metadata
            .iter()
            .map(|(name, template)| (name.as_str(), template.render(record)))
            .filter(|(_, value)| !value.is_empty())
            .collect();
        let metadata_size: usize = structured_metadata
            .iter()
            .map(|(n, v)| n.len() + v.len())
            .sum();
        if metadata_size > MAX_STRUCTURED_METADATA_SIZE {
            reject(
                format!(
                    "the structured metadata is {metadata_size} bytes; Loki's default \
                     max_structured_metadata_size is {MAX_STRUCTURED_METADATA_SIZE}"
                ),
                None,
            );
            continue;
        }
        let timestamp_ns = if timestamp_ns < oldest_allowed {
            match config.too_old {
                TooOld::DeadLetter => {
                    reject(
                        format!(
                            "occur_time {} is older than too_old_after ({}), and Loki refuses \
                             entries older than its reject_old_samples_max_age",
                            record.timestamp,
                            humantime::format_duration(config.too_old_after)
                        ),
                        Some(TOO_OLD),
                    );
                    continue;
                }
                TooOld::RewriteTimestamp => now_ns,
            }
        } else {
            timestamp_ns
        };
        let stream = match streams.find(|known| {
            known.len() == labels().count()
                && known
                    .iter()
                    .zip(labels())
                    .all(|((n, v), (name, value))| *n == name && v == value)
        }) {
            Some(stream) => stream,
            None => streams.add(
                labels()
                    .map(|(name, value)| (name, value.to_owned()))
                    .collect::<Labels<'a>>(),
            ),
        };
        streams.push(
            stream,
            Entry {
                index,
                timestamp_ns,
                line,
                structured_metadata,
            },
        );
    }
    Plan {
        streams: streams.finish(),
        rejected,
        held,
    }
}

/// How Loki answered a push that it did not fail as a whole.
enum Pushed {
    /// Every entry stored (or dropped as a duplicate).
    Accepted,
    /// A 400: some entries refused, which ones unknown. Loki's message.
    Refused(String),
}

/// Sends batches to one Loki.
pub(super) struct LokiService {
    sink: String,
    client: HttpClient,
    config: Arc<LokiConfig>,
}

impl LokiService {
    pub fn new(sink: &str, client: HttpClient, config: Arc<LokiConfig>) -> Self {
        LokiService {
            sink: sink.to_owned(),
            client,
            config,
        }
    }

    pub fn client(&self) -> &HttpClient {
        &self.client
    }

    pub fn config(&self) -> &LokiConfig {
        &self.config
    }

    /// Delivers `batch` at the time `now_ns`; see the module documentation.
    pub async fn deliver(
        &self,
        batch: &[SharedRecord],
        now_ns: i64,
    ) -> Result<Delivery, SinkError> {
        let Plan {
            streams,
            rejected,
            held,
        } = plan(&self.config, batch, now_ns);
        let mut delivery = Delivery {
            rejected,
            held,
            ..Delivery::default()
        };
        let count: usize = streams.iter().map(|s| s.entries.len()).sum();
        if count == 0 {
            return Ok(delivery);
        }
        let body = self.encode(&streams)?;
        let message = match self.push(body).await? {
            Pushed::Accepted => return Ok(delivery),
            Pushed::Refused(message) => message,
        };
        if count == 1 {
            // Already one entry per request: the refusal is this entry's.
            let index = streams[0].entries[0].index;
            delivery.rejected.push(refusal(index, 400, &message, false));
            return Ok(delivery);
        }
        warn!(sink = %self.sink, entries = count, error = %message,
            "Loki refused part of a push without saying which entries; sending each entry on its own to find them.");
        let (rejected, retry) = self.one_by_one(&streams).await?;
        debug!(sink = %self.sink, rejected = rejected.len(), retry = retry.len(), "Sent a refused push one entry at a time.");
        delivery.rejected.extend(rejected);
        delivery.retry = retry;
        Ok(delivery)
    }

    fn encode(&self, streams: &[Stream<'_>]) -> Result<Vec<u8>, SinkError> {
        request_builder::encode(streams, self.config.encoding)
            .map_err(|message| SinkError::permanent(&self.sink, message))
    }

    fn request(&self, body: Vec<u8>) -> Result<HttpRequest, SinkError> {
        let mut request = HttpRequest::post(
            self.config.push_url.clone(),
            request_builder::content_type(self.config.encoding),
            body,
        );
        if let Some(tenant) = &self.config.tenant_id {
            // The config allows only characters that are legal in a header.
            let value = HeaderValue::from_str(tenant).map_err(|_| {
                SinkError::permanent(&self.sink, "tenant_id cannot go in an HTTP header")
            })?;
            request = request.with_header(TENANT_HEADER, value);
        }
        Ok(request)
    }

    /// One push; `Ok` for a 2xx (but 260) and for a 400, an error for every other answer.
    async fn push(&self, body: Vec<u8>) -> Result<Pushed, SinkError> {
        let response = self.client.send_raw(self.request(body)?).await?;
        match response.status.as_u16() {
            BLOCKED_STATUS => Err(self.blocked(&response)),
            400 => Ok(Pushed::Refused(loki_message(&response.body))),
            _ if response.status.is_success() => Ok(Pushed::Accepted),
            _ => Err(self.failure(response)),
        }
    }

    /// Sends each entry of `streams` in a request of its own; what was refused and what
    /// should be retried alone. An answer that fails the whole batch is an error.
    async fn one_by_one(
        &self,
        streams: &[Stream<'_>],
    ) -> Result<(Vec<Rejection>, Vec<ItemRetry>), SinkError> {
        let window = ns(OUT_OF_ORDER_WINDOW);
        let mut waiting = VecDeque::new();
        for stream in streams {
            // Sorted by time, so the last entry is the newest.
            let newest = stream.entries.last().map_or(i64::MIN, |e| e.timestamp_ns);
            for entry in &stream.entries {
                let single = Stream {
                    labels: stream.labels.clone(),
                    entries: vec![entry.clone()],
                };
                let request = self.request(self.encode(&[single])?)?;
                let behind = entry.timestamp_ns < newest.saturating_sub(window);
                waiting.push_back((entry.index, behind, request));
            }
        }
        let mut rejected = Vec::new();
        let mut retry = Vec::new();
        let mut running = JoinSet::new();
        loop {
            while running.len() < ONE_BY_ONE_CONCURRENCY {
                let Some((index, behind, request)) = waiting.pop_front() else {
                    break;
                };
                let client = self.client.clone();
                running.spawn(async move { (index, behind, client.send_raw(request).await) });
            }
            let Some(joined) = running.join_next().await else {
                break;
            };
            let (index, behind, answer) = joined.map_err(|e| {
                SinkError::retryable(&self.sink, "sending an entry on its own did not finish")
                    .with_source(e)
            })?;
            let response = match answer {
                Ok(response) => response,
                Err(e) if e.is_retryable() => {
                    retry.push(ItemRetry {
                        index,
                        reason: e.message,
                        status: e.status,
                    });
                    continue;
                }
                Err(e) => return Err(e),
            };
            let status = response.status.as_u16();
            match status {
                BLOCKED_STATUS => return Err(self.blocked(&response)),
                400 | 413 => {
                    let message = loki_message(&response.body);
                    rejected.push(refusal(index, status, &message, behind));
                }
                _ if response.status.is_success() => {}
                _ => match self.failure(response) {
                    e if e.is_retryable() => retry.push(ItemRetry {
                        index,
                        reason: e.message,
                        status: e.status,
                    }),
                    e => return Err(e),
                },
            }
        }
        rejected.sort_by_key(|r| r.index);
        retry.sort_by_key(|r| r.index);
        Ok((rejected, retry))
    }

    /// The error a non-2xx answer (other than a 400) means.
    fn failure(&self, response: HttpResponse) -> SinkError {
        let status = response.status.as_u16();
        let mut error = match self
            .client
            .classify(&Method::POST, &self.config.push_url, response)
        {
            Err(error) => error,
            // Only a 2xx classifies as accepted, and those never get here.
            Ok(_) => SinkError::permanent(&self.sink, "an unexpected answer").with_status(status),
        };
        if status == 401 && self.config.tenant_id.is_none() {
            error.message.push_str(
                " (Loki answers \"no org id\" when it runs with auth_enabled: set tenant_id)",
            );
        }
        error
    }

    fn blocked(&self, response: &HttpResponse) -> SinkError {
        SinkError::permanent(
            &self.sink,
            format!(
                "Loki blocks ingestion for this tenant and stored nothing (HTTP 260, a 2xx): {}",
                loki_message(&response.body)
            ),
        )
        .with_status(BLOCKED_STATUS)
    }
}

/// A rejection with Loki's own message.
///
/// Loki's out-of-order refusal (`entry too far behind`) is an expected kind,
/// `out_of_order`: Loki checks its window before it drops duplicates, so a re-send of an
/// entry it already stored (the batch of a run killed before its commit, or the single
/// re-sends after a 400) is refused that way. Such an entry is most likely in Loki
/// already; it is dead-lettered (an entry that really is missing can be replayed from
/// there) but does not fail the run, like `too_old`.
fn refusal(index: usize, status: u16, message: &str, behind: bool) -> Rejection {
    let mut reason = format!("Loki refused the entry (HTTP {status}): {message}");
    if behind {
        reason.push_str(
            " (the entry is more than an hour older than the newest entry of its stream in the \
             same push, which Loki accepted; Loki checks that window before it drops \
             duplicates, so it may have stored this entry with the first push)",
        );
    }
    let expected = message
        .contains(OUT_OF_ORDER_MESSAGE)
        .then_some(OUT_OF_ORDER_KIND);
    Rejection {
        index,
        reason,
        status: Some(status),
        expected,
    }
}

/// What Loki says of an entry older than its stream's out-of-order window.
const OUT_OF_ORDER_MESSAGE: &str = "entry too far behind";
/// The name the summary counts such refusals under.
pub(crate) const OUT_OF_ORDER_KIND: &str = "out_of_order";

/// Loki's message on one line: trimmed, newlines as spaces, other control characters
/// escaped, at most [`MESSAGE_CHARS`] characters.
fn loki_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out = String::new();
    for (count, c) in text.trim().chars().enumerate() {
        if count == MESSAGE_CHARS {
            out.push('…');
            break;
        }
        match c {
            '\n' => out.push(' '),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::http::HttpOptions;
    use crate::loki::{LokiEncoding, Template};
    use record::{EventRecord, IdParts};

    /// 2024-06-10T06:13:20Z.
    const NOW_MS: i64 = 1_718_000_000_000;
    const NOW: i64 = NOW_MS * 1_000_000;
    const MINUTE_MS: i64 = 60_000;
    const DAY_MS: i64 = 24 * 60 * MINUTE_MS;

    fn config() -> LokiConfig {
        let template = |t: &str| Template::parse(t).unwrap();
        LokiConfig {
            endpoint: "http://loki:3100".to_owned(),
            push_url: "http://loki:3100/loki/api/v1/push".parse().unwrap(),
            ready_url: "http://loki:3100/ready".parse().unwrap(),
            encoding: LokiEncoding::Protobuf,
            tenant_id: None,
            labels: vec![
                ("event_type".to_owned(), template("{{ event_type }}")),
                ("service_name".to_owned(), template("{{ service_name }}")),
            ],
            structured_metadata: Vec::new(),
            line_format: LineFormat::Json,
            too_old_after: Duration::from_secs(7 * 24 * 3600),
            too_old: TooOld::DeadLetter,
            http: HttpOptions::default(),
        }
    }

    fn record(service: &str, occur_time: i64, info: &str) -> SharedRecord {
        EventRecord::new(
            "prod",
            service,
            IdParts {
                project_id: "p",
                service_id: "s",
                occur_time,
                event_type: "normal",
                event_info: info,
                twin: 1,
            },
        )
        .into()
    }

    fn indices(plan: &Plan<'_>) -> Vec<Vec<usize>> {
        plan.streams
            .iter()
            .map(|s| s.entries.iter().map(|e| e.index).collect())
            .collect()
    }

    #[test]
    fn entries_are_grouped_sorted_and_stamped_from_occur_time() {
        let config = config();
        let batch = [
            record("b", NOW_MS - 1000, "b late"),
            record("a", NOW_MS - 3000, "a first"),
            record("b", NOW_MS - 2000, "b early"),
            record("a", NOW_MS - 1000, "a second"),
        ];
        let plan = plan(&config, &batch, NOW);
        assert!(plan.rejected.is_empty() && plan.held.is_empty());
        assert_eq!(indices(&plan), [vec![1, 3], vec![2, 0]]);
        let first = &plan.streams[0];
        assert_eq!(
            first.labels,
            [
                ("event_type", "normal".to_owned()),
                ("service_name", "a".to_owned())
            ]
        );
        assert_eq!(first.entries[0].timestamp_ns, (NOW_MS - 3000) * 1_000_000);
        assert_eq!(first.entries[0].line.text(), batch[1].json_line());
    }

    #[test]
    fn too_new_is_held_and_too_old_dead_lettered_as_expected() {
        let config = config();
        let batch = [
            record("a", NOW_MS + 11 * MINUTE_MS, "ahead"),
            record("a", NOW_MS + 9 * MINUTE_MS, "within the grace period"),
            record("a", NOW_MS - 8 * DAY_MS, "too old"),
            record("a", NOW_MS - 6 * DAY_MS, "old but fine"),
        ];
        let plan = plan(&config, &batch, NOW);
        assert_eq!(indices(&plan), [vec![3, 1]]);
        assert_eq!(plan.held.len(), 1);
        assert_eq!(plan.held[0].index, 0);
        assert!(plan.held[0].reason.contains("more than 10 minutes ahead"));
        assert_eq!(plan.rejected.len(), 1);
        let rejection = &plan.rejected[0];
        assert_eq!(rejection.index, 2);
        assert_eq!(rejection.expected, Some("too_old"));
        assert_eq!(rejection.status, None);
        assert!(
            rejection
                .reason
                .contains("older than too_old_after (7days)"),
            "{}",
            rejection.reason
        );
    }

    #[test]
    fn rewrite_timestamp_sends_old_entries_now_with_their_line() {
        let config = LokiConfig {
            too_old: TooOld::RewriteTimestamp,
            too_old_after: Duration::from_secs(3600),
            ..config()
        };
        let batch = [record("a", NOW_MS - 2 * 3_600_000, "two hours old")];
        let plan = plan(&config, &batch, NOW);
        assert!(plan.rejected.is_empty());
        let entry = &plan.streams[0].entries[0];
        assert_eq!(entry.timestamp_ns, NOW);
        assert!(
            entry
                .line
                .text()
                .contains(&format!("\"occur_time\":{}", NOW_MS - 2 * 3_600_000))
        );
    }

    #[test]
    fn what_loki_would_refuse_is_rejected_with_a_reason() {
        let config = LokiConfig {
            structured_metadata: vec![(
                "info".to_owned(),
                Template::parse("{{ event_info }}").unwrap(),
            )],
            ..config()
        };
        let huge = "x".repeat(MAX_LINE_SIZE);
        // No service name and no event type: no label left.
        let unlabelled: SharedRecord = EventRecord::new(
            "prod",
            "",
            IdParts {
                project_id: "p",
                service_id: "s",
                occur_time: NOW_MS,
                event_type: "",
                event_info: "no labels",
                twin: 1,
            },
        )
        .into();
        let batch = [
            unlabelled,
            record(
                &"n".repeat(MAX_LABEL_VALUE_LENGTH + 1),
                NOW_MS,
                "long label",
            ),
            record("a", NOW_MS, &huge),
            record("a", NOW_MS, "fine"),
        ];
        let plan = plan(&config, &batch, NOW);
        assert_eq!(indices(&plan), [vec![3]]);
        let reasons: Vec<(usize, &str)> = plan
            .rejected
            .iter()
            .map(|r| (r.index, r.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 3);
        assert!(
            reasons[0].1.starts_with("every label renders empty"),
            "{reasons:?}"
        );
        assert!(
            reasons[1]
                .1
                .starts_with("label service_name is 2049 bytes long"),
            "{reasons:?}"
        );
        assert!(reasons[2].1.starts_with("the line is"), "{reasons:?}");
        assert!(plan.rejected.iter().all(|r| r.expected.is_none()));
        // The metadata check: event_info in metadata, over 64 KiB.
        let big = "y".repeat(MAX_STRUCTURED_METADATA_SIZE);
        let batch = [record("a", NOW_MS, &big)];
        let plan = self::plan(&config, &batch, NOW);
        assert!(
            plan.rejected[0]
                .reason
                .starts_with("the structured metadata is"),
            "{:?}",
            plan.rejected
        );
    }

    #[test]
    fn empty_labels_and_metadata_are_left_out() {
        let config = LokiConfig {
            structured_metadata: vec![
                (
                    "service_id".to_owned(),
                    Template::parse("{{ service_id }}").unwrap(),
                ),
                (
                    "empty".to_owned(),
                    Template::parse("{{ project_id }}").unwrap(),
                ),
            ],
            ..config()
        };
        let record: SharedRecord = EventRecord::new(
            "prod",
            "",
            IdParts {
                project_id: "",
                service_id: "s1",
                occur_time: NOW_MS,
                event_type: "normal",
                event_info: "x",
                twin: 1,
            },
        )
        .into();
        let batch = [record];
        let plan = plan(&config, &batch, NOW);
        assert_eq!(
            plan.streams[0].labels,
            [("event_type", "normal".to_owned())]
        );
        assert_eq!(
            plan.streams[0].entries[0].structured_metadata,
            [("service_id", "s1".to_owned())]
        );
    }

    #[test]
    fn text_lines_are_the_event_info() {
        let config = LokiConfig {
            line_format: LineFormat::Text,
            ..config()
        };
        let batch = [record("a", NOW_MS, "deploy failed")];
        let plan = plan(&config, &batch, NOW);
        assert_eq!(plan.streams[0].entries[0].line.text(), "deploy failed");
    }

    #[test]
    fn lokis_message_on_one_line() {
        assert_eq!(
            loki_message(b"entry ignored,\nuser 'fake', total ignored: 1\n"),
            "entry ignored, user 'fake', total ignored: 1"
        );
        assert_eq!(loki_message(b"a\x1bb"), "a\\u{1b}b");
        let long = loki_message("z".repeat(5000).as_bytes());
        assert_eq!(long.chars().count(), MESSAGE_CHARS + 1);
        assert!(long.ends_with('…'));
    }
}
