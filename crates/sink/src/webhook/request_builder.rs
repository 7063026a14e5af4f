//! What a webhook sink posts for a batch: which records are too old to alert about, how
//! the rest are grouped into messages, and each message's body in its format. Pure: the
//! clock is a parameter, nothing is signed here (signatures carry the time of each
//! attempt, see `service.rs`).
//!
//! # Grouping
//!
//! Records are grouped by service (source, project and service id) in the order their
//! services first appear in the batch, each group sorted by `occur_time` (then batch
//! order), and cut into messages of at most `max_events_per_message`. The same records
//! always give the same messages, so a retried message keeps its `webhook-id`.
//!
//! # A chat message
//!
//! A title (`ModelArts billing: 3 abnormal events`), then each event with its time in
//! `timezone`, its type and its text, then how many more events the message stands for
//! when not all of them fit, then the source, project and service id. Every value is
//! placed where the platform shows text as it is (Slack `plain_text`, Adaptive Card
//! `TextRun`s, Feishu `text` elements, DingTalk and WeCom `text` messages), so markdown
//! characters, `<`, `&` and mentions in an event's text are shown, never interpreted;
//! Slack's notification `text` is escaped as Slack asks (`&amp;`, `&lt;`, `&gt;`). JSON
//! escaping is serde_json's.
//!
//! # Size limits
//!
//! | format | limit |
//! |---|---|
//! | slack | 50 blocks, 150 characters of header, 3000 characters a section |
//! | teams | 28 KB of body (the connector limit; Workflows documents none) |
//! | feishu | 20 KB of body ("请求体的数据大小不能超过 20 KB"), signature included |
//! | dingtalk | 20,000 bytes of body |
//! | wecom | 2048 bytes of text content |
//!
//! A message that does not fit is made smaller, in this order, until it fits: event texts
//! cut to 1000 then 300 characters (`… (N more characters)`), fewer events shown (`… N
//! more events`, still acknowledged with the message: they are folded into it), the one
//! event's text cut shorter. A message that cannot fit even so (a service name of
//! kilobytes) is refused: its records go to the dead-letter file with the reason.

use super::config::{Format, WebhookConfig};
use crate::config::{Preview, PreviewMessage};
use crate::{ItemSkip, Rejection, SharedRecord};
use jiff::tz::TimeZone;
use minijinja::value::{Serde, Value as TemplateValue};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use record::EventRecord;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;

/// The kind a too-old event is counted under.
pub const TOO_OLD_TO_ALERT: &str = "too_old_to_alert";

/// Slack's block limits (Block Kit reference).
const SLACK_MAX_BLOCKS: usize = 50;
const SLACK_HEADER_CHARS: usize = 150;
const SLACK_SECTION_CHARS: usize = 3000;
const SLACK_FALLBACK_CHARS: usize = 500;
/// The Teams message size limit (about 28 KB).
const TEAMS_MAX_BODY: usize = 28_000;
/// Feishu's 20 KB, less room for `timestamp` and `sign`.
const FEISHU_MAX_BODY: usize = 20_000 - 100;
const DINGTALK_MAX_BODY: usize = 20_000;
const WECOM_MAX_CONTENT: usize = 2048;
/// Characters of a service name in a title.
const SERVICE_NAME_CHARS: usize = 100;

/// One POST.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Indices of its records in the batch.
    pub indices: Vec<usize>,
    /// `msg_` and 32 hex digits of the SHA-256 of its record ids: the `webhook-id` and
    /// `Idempotency-Key`, the same for the same records on every attempt.
    pub id: String,
    /// One line for logs and `--dry-run`.
    pub summary: String,
    pub body: Body,
}

/// A message's body before signing.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// A chat preset's JSON object (Feishu's signature fields are added to it).
    Json(Value),
    /// A generic body, sent byte for byte as rendered.
    Raw(Vec<u8>),
}

impl Body {
    /// The bytes to send (unsigned).
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Body::Json(value) => value.to_string().into_bytes(),
            Body::Raw(bytes) => bytes.clone(),
        }
    }

    /// For people: a chat body as pretty JSON; a generic body exactly as it is sent
    /// (a template's layout is its author's, and its keys keep their order).
    pub fn pretty(&self) -> String {
        match self {
            Body::Json(value) => {
                serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
            }
            Body::Raw(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        }
    }
}

/// What a batch becomes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Records older than `max_age`: acknowledged without a post.
    pub skipped: Vec<usize>,
    pub messages: Vec<Message>,
    /// Records of messages that cannot be rendered, and why.
    pub refused: Vec<(Vec<usize>, String)>,
}

impl Plan {
    /// The plan as a [`Preview`] for `--dry-run`.
    pub fn preview(self) -> Preview {
        Preview {
            messages: self
                .messages
                .into_iter()
                .map(|m| PreviewMessage {
                    body: m.body.pretty(),
                    summary: m.summary,
                    records: m.indices,
                })
                .collect(),
            skipped: self
                .skipped
                .into_iter()
                .map(|index| ItemSkip {
                    index,
                    kind: TOO_OLD_TO_ALERT,
                })
                .collect(),
            rejected: self
                .refused
                .into_iter()
                .flat_map(|(indices, reason)| {
                    indices.into_iter().map(move |index| Rejection {
                        index,
                        reason: reason.clone(),
                        status: None,
                        expected: None,
                    })
                })
                .collect(),
        }
    }
}

/// The messages for `batch` at `now_ms`.
pub fn plan(config: &WebhookConfig, batch: &[SharedRecord], now_ms: i64) -> Plan {
    let mut plan = Plan::default();
    let oldest = config
        .max_age
        .map(|age| now_ms.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)));
    // Groups in order of first appearance, by (source, project id, service id).
    type Service<'a> = (&'a str, &'a str, &'a str);
    let mut groups: Vec<(Service<'_>, Vec<usize>)> = Vec::new();
    for (index, record) in batch.iter().enumerate() {
        if oldest.is_some_and(|oldest| record.occur_time < oldest) {
            plan.skipped.push(index);
            continue;
        }
        let key = (&*record.source, &*record.project_id, &*record.service_id);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, indices)) => indices.push(index),
            None => groups.push((key, vec![index])),
        }
    }
    for (_, mut indices) in groups {
        indices.sort_by_key(|&i| (batch[i].occur_time, i));
        for chunk in indices.chunks(config.max_events_per_message.max(1)) {
            let events: Vec<&EventRecord> = chunk.iter().map(|&i| batch[i].record()).collect();
            let id = message_id(&events);
            match render(config, &events, &id) {
                Ok((body, shown)) => plan.messages.push(Message {
                    indices: chunk.to_vec(),
                    summary: summary(config.format, &events, shown),
                    id,
                    body,
                }),
                Err(reason) => plan.refused.push((chunk.to_vec(), reason)),
            }
        }
    }
    plan
}

/// `msg_` and the first 32 hex digits of the SHA-256 of the ids, comma-separated.
pub fn message_id(events: &[&EventRecord]) -> String {
    let mut hash = Sha256::new();
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            hash.update(b",");
        }
        hash.update(event.id.as_bytes());
    }
    let digest = hex::encode(hash.finalize());
    format!("msg_{}", &digest[..32])
}

fn summary(format: Format, events: &[&EventRecord], shown: usize) -> String {
    let first = events[0];
    let service = display_service(first);
    let count = events.len();
    let events_word = if count == 1 { "event" } else { "events" };
    let mut line = format!(
        "{} message: {count} {events_word} of service {service:?} (source {:?})",
        format.name(),
        first.source
    );
    if shown < count {
        line.push_str(&format!(", {shown} shown"));
    }
    line
}

/// The body of one message and how many of its events it shows.
fn render(
    config: &WebhookConfig,
    events: &[&EventRecord],
    id: &str,
) -> Result<(Body, usize), String> {
    let alert = Alert {
        events,
        zone: &config.timezone.1,
    };
    match config.format {
        Format::Json => match &config.template {
            Some(template) => Ok((Body::Raw(template.render(events, id)?), events.len())),
            None => Ok((Body::Raw(events_body(events)), events.len())),
        },
        Format::Slack => fit(&alert, |shown, cap| {
            let body = slack(&alert, shown, cap);
            let blocks = body["blocks"].as_array().map_or(0, Vec::len);
            (blocks <= SLACK_MAX_BLOCKS).then_some(body)
        }),
        Format::Teams => fit(&alert, |shown, cap| {
            within(teams(&alert, shown, cap), TEAMS_MAX_BODY)
        }),
        Format::Feishu => fit(&alert, |shown, cap| {
            within(feishu(&alert, shown, cap), FEISHU_MAX_BODY)
        }),
        Format::DingTalk => fit(&alert, |shown, cap| {
            within(dingtalk(&alert, shown, cap), DINGTALK_MAX_BODY)
        }),
        Format::WeCom => fit(&alert, |shown, cap| {
            let content = alert.plain(shown, cap);
            (content.len() <= WECOM_MAX_CONTENT)
                .then(|| json!({"msgtype": "text", "text": {"content": content}}))
        }),
    }
    .map_err(|why| {
        format!(
            "the {} message for these {} event(s) cannot be rendered: {why}",
            config.format.name(),
            events.len()
        )
    })
}

/// `{"events":[...]}` with each record's JSON line as it is, one per line (JSON allows
/// the whitespace, and `--dry-run` shows the body as it is sent).
fn events_body(events: &[&EventRecord]) -> Vec<u8> {
    let mut body = b"{\"events\":[\n".to_vec();
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            body.extend_from_slice(b",\n");
        }
        body.extend_from_slice(event.to_json_line().as_bytes());
    }
    body.extend_from_slice(b"\n]}");
    body
}

fn within(body: Value, limit: usize) -> Option<Value> {
    (body.to_string().len() <= limit).then_some(body)
}

/// The first rendering that `build` accepts (returns `Some` for), trying: every event in
/// full; event texts cut to 1000, then 300 characters; fewer events; one event with
/// its text cut shorter.
fn fit(
    alert: &Alert<'_>,
    build: impl Fn(usize, Option<usize>) -> Option<Value>,
) -> Result<(Body, usize), String> {
    let count = alert.events.len();
    for cap in [None, Some(1000), Some(300)] {
        if let Some(body) = build(count, cap) {
            return Ok((Body::Json(body), count));
        }
    }
    for shown in (1..count).rev() {
        if let Some(body) = build(shown, Some(300)) {
            return Ok((Body::Json(body), shown));
        }
    }
    for cap in [100, 30, 0] {
        if let Some(body) = build(1, Some(cap)) {
            return Ok((Body::Json(body), 1));
        }
    }
    Err("it does not fit in the platform's size limit even with one event and no text".to_owned())
}

/// The events of one message, as people read them.
struct Alert<'a> {
    events: &'a [&'a EventRecord],
    zone: &'a TimeZone,
}

impl Alert<'_> {
    fn first(&self) -> &EventRecord {
        self.events[0]
    }

    fn title(&self) -> String {
        let first = self.first();
        let service = display_service(first);
        let count = self.events.len();
        let same_type = self.events.iter().all(|e| e.event_type == first.event_type);
        match (count, same_type) {
            (1, _) => format!("ModelArts {service}: {} event", first.event_type),
            (_, true) => format!("ModelArts {service}: {count} {} events", first.event_type),
            (_, false) => format!("ModelArts {service}: {count} events"),
        }
    }

    /// `2019-07-08 16:47:31 CEST · abnormal`.
    fn heading(&self, event: &EventRecord) -> String {
        format!(
            "{} · {}",
            local_time(event.occur_time, self.zone),
            event.event_type
        )
    }

    fn more(&self, shown: usize) -> Option<String> {
        let more = self.events.len().saturating_sub(shown);
        match more {
            0 => None,
            1 => Some("… 1 more event".to_owned()),
            n => Some(format!("… {n} more events")),
        }
    }

    fn footer(&self) -> String {
        let first = self.first();
        format!(
            "Source: {} · Project: {} · Service ID: {}",
            first.source, first.project_id, first.service_id
        )
    }

    fn shown(&self, shown: usize) -> &[&EventRecord] {
        &self.events[..shown.min(self.events.len())]
    }

    /// The whole message as plain text (DingTalk, WeCom).
    fn plain(&self, shown: usize, cap: Option<usize>) -> String {
        let mut text = self.title();
        text.push('\n');
        for event in self.shown(shown) {
            text.push('\n');
            text.push_str(&self.heading(event));
            text.push('\n');
            text.push_str(&cut(&event.event_info, cap));
            text.push('\n');
        }
        if let Some(more) = self.more(shown) {
            text.push('\n');
            text.push_str(&more);
            text.push('\n');
        }
        text.push('\n');
        text.push_str(&self.footer());
        text
    }
}

/// The service as a title shows it: its name, or its id when it has none.
fn display_service(event: &EventRecord) -> String {
    let name = if event.service_name.is_empty() {
        &event.service_id
    } else {
        &event.service_name
    };
    cut(name, Some(SERVICE_NAME_CHARS))
}

/// `text` cut to at most `max` characters, the cut said: `… (N more characters)`.
fn cut(text: &str, max: Option<usize>) -> String {
    let Some(max) = max else {
        return text.to_owned();
    };
    let total = text.chars().count();
    if total <= max {
        return text.to_owned();
    }
    let note = |n: usize| format!("… ({n} more characters)");
    let room = note(total).chars().count();
    if room > max {
        return text.chars().take(max).collect();
    }
    let keep = max - room;
    let kept: String = text.chars().take(keep).collect();
    format!("{kept}{}", note(total - keep))
}

/// Epoch milliseconds in `zone`: `2019-07-08 16:47:31 CEST`.
pub fn local_time(ms: i64, zone: &TimeZone) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(at) => at
            .to_zoned_datetime(zone.clone())
            .strftime("%Y-%m-%d %H:%M:%S %Z")
            .to_string(),
        Err(_) => record::timestamp_rfc3339(ms),
    }
}

/// Slack's reserved characters, escaped as Slack asks for text it parses.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn slack_plain(text: &str) -> Value {
    json!({"type": "plain_text", "text": text, "emoji": false})
}

fn slack(alert: &Alert<'_>, shown: usize, cap: Option<usize>) -> Value {
    let mut blocks = vec![json!({
        "type": "header",
        "text": slack_plain(&cut(&alert.title(), Some(SLACK_HEADER_CHARS))),
    })];
    for event in alert.shown(shown) {
        let heading = alert.heading(event);
        let room = SLACK_SECTION_CHARS.saturating_sub(heading.chars().count() + 1);
        let text = cut(&cut(&event.event_info, cap), Some(room));
        blocks.push(json!({
            "type": "section",
            "text": slack_plain(&format!("{heading}\n{text}")),
        }));
    }
    if let Some(more) = alert.more(shown) {
        blocks.push(json!({"type": "context", "elements": [slack_plain(&more)]}));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [slack_plain(&cut(&alert.footer(), Some(SLACK_SECTION_CHARS)))],
    }));
    // The notification text: the title and the first event.
    let first = alert.first();
    let fallback = format!(
        "{}\n{}\n{}",
        alert.title(),
        alert.heading(first),
        cut(&first.event_info, Some(SLACK_FALLBACK_CHARS))
    );
    json!({"text": slack_escape(&fallback), "blocks": blocks})
}

fn text_run(text: &str) -> Value {
    json!({"type": "TextRun", "text": text})
}

fn teams(alert: &Alert<'_>, shown: usize, cap: Option<usize>) -> Value {
    let mut body = vec![json!({
        "type": "RichTextBlock",
        "inlines": [{"type": "TextRun", "text": alert.title(), "weight": "bolder", "size": "medium"}],
    })];
    for event in alert.shown(shown) {
        body.push(json!({
            "type": "RichTextBlock",
            "separator": true,
            "inlines": [{"type": "TextRun", "text": alert.heading(event), "weight": "bolder"}],
        }));
        body.push(json!({
            "type": "RichTextBlock",
            "inlines": [text_run(&cut(&event.event_info, cap))],
        }));
    }
    if let Some(more) = alert.more(shown) {
        body.push(json!({"type": "RichTextBlock", "inlines": [text_run(&more)]}));
    }
    body.push(json!({
        "type": "RichTextBlock",
        "separator": true,
        "inlines": [{"type": "TextRun", "text": alert.footer(), "isSubtle": true}],
    }));
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.2",
                "msteams": {"width": "Full"},
                "body": body,
            },
        }],
    })
}

fn feishu_line(text: &str) -> Value {
    json!([{"tag": "text", "text": text}])
}

fn feishu(alert: &Alert<'_>, shown: usize, cap: Option<usize>) -> Value {
    let mut lines = Vec::new();
    for event in alert.shown(shown) {
        lines.push(feishu_line(&alert.heading(event)));
        lines.push(feishu_line(&cut(&event.event_info, cap)));
        lines.push(feishu_line(""));
    }
    if let Some(more) = alert.more(shown) {
        lines.push(feishu_line(&more));
    }
    lines.push(feishu_line(&alert.footer()));
    json!({
        "msg_type": "post",
        "content": {"post": {"zh_cn": {"title": alert.title(), "content": lines}}},
    })
}

fn dingtalk(alert: &Alert<'_>, shown: usize, cap: Option<usize>) -> Value {
    json!({
        "msgtype": "text",
        "text": {"content": alert.plain(shown, cap)},
        "at": {"atMobiles": [], "atUserIds": [], "isAtAll": false},
    })
}

/// A generic body template (`template`, format `json`): [minijinja](https://docs.rs/minijinja)
/// with JSON auto-escaping, so every `{{ value }}` is inserted as JSON (a string with its
/// quotes): no value can break the body. `json` is an alias of `tojson`, for saying so;
/// `local_time` formats an `occur_time` in the sink's `timezone`. Undefined names are
/// errors. `Debug` shows the source.
#[derive(Clone)]
pub struct BodyTemplate {
    source: String,
    env: Arc<Environment<'static>>,
}

impl fmt::Debug for BodyTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BodyTemplate({:?})", self.source)
    }
}

/// What a template sees.
#[derive(Serialize)]
struct TemplateContext<'a> {
    /// The message id (`webhook-id`).
    id: &'a str,
    count: usize,
    source: &'a str,
    project_id: &'a str,
    service_id: &'a str,
    service_name: &'a str,
    events: &'a [&'a EventRecord],
    first: &'a EventRecord,
    last: &'a EventRecord,
}

impl BodyTemplate {
    /// Compiles `source` and renders it once over a sample event with quotes, `<`, `&`
    /// and a newline in its text: a template that cannot give JSON is refused now, not
    /// at the first alert.
    pub fn new(source: &str, zone: TimeZone) -> Result<BodyTemplate, String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| AutoEscape::Json);
        env.add_filter("json", minijinja::filters::tojson);
        env.add_filter("local_time", move |ms: i64| local_time(ms, &zone));
        env.add_template_owned("template", source.to_owned())
            .map_err(|e| format!("is not a valid template: {e}"))?;
        let template = BodyTemplate {
            source: source.to_owned(),
            env: Arc::new(env),
        };
        let sample = EventRecord::new(
            "prod",
            "billing",
            record::IdParts {
                project_id: "0123456789abcdef0123456789abcdef",
                service_id: "35de3ca9-1bca-4ae7-9cb0-914f30fa7d3e",
                occur_time: 1_562_597_251_764,
                event_type: "abnormal",
                event_info: "sample \"text\" with <tags> & a\nnewline",
                twin: 1,
            },
        );
        template
            .render(&[&sample], "msg_sample")
            .map_err(|why| format!("does not work with a sample event: {why}"))?;
        Ok(template)
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The body for `events` (at least one) of message `id`; it must be JSON.
    pub fn render(&self, events: &[&EventRecord], id: &str) -> Result<Vec<u8>, String> {
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Err("a message without events".to_owned());
        };
        let context = TemplateContext {
            id,
            count: events.len(),
            source: &first.source,
            project_id: &first.project_id,
            service_id: &first.service_id,
            service_name: &first.service_name,
            events,
            first,
            last,
        };
        let text = self
            .env
            .get_template("template")
            .and_then(|t| t.render(TemplateValue::from(Serde(&context))))
            .map_err(|e| format!("the template failed: {e}"))?;
        serde_json::from_str::<Value>(&text).map_err(|e| {
            format!(
                "the template rendered a body that is not JSON ({e}); values are inserted as \
                 JSON, quotes included: write \"key\": {{{{ value }}}}, not \"key\": \"{{{{ value }}}}\""
            )
        })?;
        Ok(text.into_bytes())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::TestContext;
    use record::IdParts;
    use toml::de::DeTable;

    const NOW: i64 = 1_700_000_000_000;
    const NASTY: &str =
        "quote \" and <b>tag</b> & *bold* _it_ `code` ~x~ > quote\nline 2 \\ 部署失败 ✅";

    fn config(text: &str) -> WebhookConfig {
        let table = DeTable::parse(text).unwrap();
        WebhookConfig::read(table, &TestContext::new("alerts", &[])).unwrap()
    }

    fn preset(format: &str, extra: &str) -> WebhookConfig {
        let url = match format {
            "dingtalk" => "https://oapi.dingtalk.com/robot/send?access_token=t",
            _ => "https://hooks.example.com/x",
        };
        config(&format!("format = \"{format}\"\nurl = \"{url}\"\n{extra}"))
    }

    fn event(service: &str, occur_time: i64, event_type: &str, info: &str) -> SharedRecord {
        EventRecord::new(
            "prod",
            service,
            IdParts {
                project_id: "0123456789abcdef0123456789abcdef",
                service_id: &format!("id-{service}"),
                occur_time,
                event_type,
                event_info: info,
                twin: 1,
            },
        )
        .into()
    }

    fn indices(plan: &Plan) -> Vec<Vec<usize>> {
        plan.messages.iter().map(|m| m.indices.clone()).collect()
    }

    #[test]
    fn one_message_per_service_capped_and_in_time_order() {
        let config = preset("slack", "max_events_per_message = 2\n");
        let batch = [
            event("a", NOW - 5, "abnormal", "a3"),
            event("b", NOW - 9, "abnormal", "b1"),
            event("a", NOW - 7, "abnormal", "a1"),
            event("a", NOW - 6, "abnormal", "a2"),
            event("b", NOW - 8, "abnormal", "b2"),
        ];
        let plan = plan(&config, &batch, NOW);
        // a's events by time, cut at two; then b's.
        assert_eq!(indices(&plan), [vec![2, 3], vec![0], vec![1, 4]]);
        assert!(plan.skipped.is_empty() && plan.refused.is_empty());
        // The same records give the same ids; other records other ids.
        let again = super::plan(&config, &batch, NOW + 1000);
        let ids = |p: &Plan| p.messages.iter().map(|m| m.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&plan), ids(&again));
        assert_eq!(plan.messages[0].id.len(), 4 + 32);
        assert_ne!(plan.messages[0].id, plan.messages[1].id);
    }

    #[test]
    fn services_of_other_sources_or_projects_are_other_groups() {
        let config = preset("wecom", "");
        let mut other_source = (*event("a", NOW, "abnormal", "x")).clone();
        other_source.source = "staging".into();
        let batch = [event("a", NOW, "abnormal", "x"), other_source.into()];
        assert_eq!(indices(&plan(&config, &batch, NOW)), [vec![0], vec![1]]);
    }

    #[test]
    fn events_older_than_max_age_are_skipped() {
        let config = preset("dingtalk", "max_age = \"1h\"\n");
        let batch = [
            event("a", NOW - 3_600_001, "abnormal", "old"),
            event("a", NOW - 3_600_000, "abnormal", "just in time"),
            event("a", NOW, "abnormal", "new"),
        ];
        let plan = plan(&config, &batch, NOW);
        assert_eq!(plan.skipped, [0]);
        assert_eq!(indices(&plan), [vec![1, 2]]);
        // The generic format has no max_age unless set.
        let json = config_json("");
        assert!(super::plan(&json, &batch, NOW).skipped.is_empty());
    }

    fn config_json(extra: &str) -> WebhookConfig {
        config(&format!(
            "format = \"json\"\nurl = \"https://hooks.example.com/x\"\n{extra}"
        ))
    }

    #[test]
    fn the_generic_body_holds_the_records_as_they_are() {
        let config = config_json("");
        let batch = [
            event("a", NOW, "normal", NASTY),
            event("a", NOW + 1, "abnormal", "y"),
        ];
        let plan = plan(&config, &batch, NOW);
        let Body::Raw(bytes) = &plan.messages[0].body else {
            panic!("{:?}", plan.messages[0].body)
        };
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(
            text,
            format!(
                "{{\"events\":[\n{},\n{}\n]}}",
                batch[0].json_line(),
                batch[1].json_line()
            )
        );
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["events"][0]["event_info"], NASTY);
    }

    #[test]
    fn a_template_inserts_every_value_as_json() {
        let config = config_json(
            "template = '''{\"text\": {{ \"Service \" ~ service_name ~ \": \" ~ first.event_info }}, \"n\": {{ count }}, \"id\": {{ id | json }}, \"at\": {{ first.occur_time | local_time }}, \"types\": {{ events | map(attribute=\"event_type\") | list }}}'''\ntimezone = \"Asia/Shanghai\"\n",
        );
        let batch = [event("a\"b<c>&", NOW, "abnormal", NASTY)];
        let plan = plan(&config, &batch, NOW);
        let Body::Raw(bytes) = &plan.messages[0].body else {
            panic!()
        };
        let parsed: Value = serde_json::from_slice(bytes).unwrap();
        assert_eq!(parsed["text"], format!("Service a\"b<c>&: {NASTY}"));
        assert_eq!(parsed["n"], 1);
        assert_eq!(parsed["id"], plan.messages[0].id);
        assert_eq!(parsed["at"], "2023-11-15 06:13:20 CST");
        assert_eq!(parsed["types"], json!(["abnormal"]));
    }

    #[test]
    fn a_template_failing_for_one_message_refuses_its_records() {
        // Fine for the one-event sample it is checked with when read; fails for two.
        let config = config_json(
            "template = '{% if count > 1 %}{{ events[5].id }}{% else %}{}{% endif %}'\n",
        );
        let batch = [
            event("a", NOW, "abnormal", "x"),
            event("a", NOW + 1, "abnormal", "y"),
            event("b", NOW, "abnormal", "z"),
        ];
        let plan = plan(&config, &batch, NOW);
        assert_eq!(indices(&plan), [vec![2]]);
        assert_eq!(plan.refused.len(), 1);
        assert_eq!(plan.refused[0].0, [0, 1]);
        assert!(
            plan.refused[0].1.contains("the template failed"),
            "{}",
            plan.refused[0].1
        );
    }

    #[test]
    fn chat_messages_show_service_type_time_text_source_and_project() {
        let batch = [
            event("billing", 1_562_597_251_764, "abnormal", "deploy failed"),
            event("billing", 1_562_597_255_000, "abnormal", "scale failed"),
        ];
        let config = preset(
            "wecom",
            "timezone = \"Europe/Berlin\"\nmax_age = \"100000d\"\n",
        );
        let plan = plan(&config, &batch, NOW);
        let Body::Json(body) = &plan.messages[0].body else {
            panic!()
        };
        assert_eq!(body["msgtype"], "text");
        let text = body["text"]["content"].as_str().unwrap();
        assert_eq!(
            text,
            "ModelArts billing: 2 abnormal events\n\
             \n2019-07-08 16:47:31 CEST · abnormal\ndeploy failed\n\
             \n2019-07-08 16:47:35 CEST · abnormal\nscale failed\n\
             \nSource: prod · Project: 0123456789abcdef0123456789abcdef · Service ID: id-billing"
        );
        assert_eq!(
            plan.messages[0].summary,
            "wecom message: 2 events of service \"billing\" (source \"prod\")"
        );
    }

    /// Every string in a JSON value, depth first.
    fn strings(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(s) => out.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
            Value::Object(map) => map.values().for_each(|v| strings(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_preset_shows_nasty_text_as_it_is() {
        let batch = [event("svc <&> \"x\"", NOW, "abnormal", NASTY)];
        for format in ["slack", "teams", "feishu", "dingtalk", "wecom"] {
            let config = preset(format, "");
            let plan = plan(&config, &batch, NOW);
            let message = &plan.messages[0];
            let bytes = message.body.bytes();
            // Valid JSON that gives the text back exactly.
            let parsed: Value = serde_json::from_slice(&bytes).unwrap();
            let mut found = Vec::new();
            strings(&parsed, &mut found);
            let all = found.join("\n");
            assert!(all.contains(NASTY), "{format}: {all}");
            assert!(all.contains("svc <&> \"x\""), "{format}: {all}");
            // Newlines are escaped in the JSON, never raw.
            assert!(!bytes.contains(&b'\n'), "{format}");
        }
        // Slack's notification text is escaped as Slack asks.
        let plan = plan(&preset("slack", ""), &batch, NOW);
        let Body::Json(body) = &plan.messages[0].body else {
            panic!()
        };
        let fallback = body["text"].as_str().unwrap();
        assert!(fallback.contains("svc &lt;&amp;&gt; \"x\""), "{fallback}");
        assert!(!fallback.contains("<b>") && fallback.contains("&lt;b&gt;tag&lt;/b&gt;"));
        assert_eq!(body["blocks"][1]["text"]["type"], "plain_text");
    }

    #[test]
    fn wecom_messages_fit_2048_bytes_and_say_what_was_folded_in() {
        let long = "失败".repeat(400); // 2400 bytes
        let batch: Vec<SharedRecord> = (0..10)
            .map(|i| event("a", NOW + i, "abnormal", &long))
            .collect();
        let config = preset("wecom", "");
        let plan = plan(&config, &batch, NOW + 100);
        assert_eq!(plan.messages.len(), 1);
        let message = &plan.messages[0];
        assert_eq!(message.indices.len(), 10);
        let Body::Json(body) = &message.body else {
            panic!()
        };
        let content = body["text"]["content"].as_str().unwrap();
        assert!(content.len() <= WECOM_MAX_CONTENT, "{}", content.len());
        assert!(content.contains("more events"), "{content}");
        assert!(content.contains("more characters"), "{content}");
        assert!(message.summary.ends_with("shown"), "{}", message.summary);
    }

    #[test]
    fn slack_keeps_to_fifty_blocks_and_three_thousand_characters() {
        let long = "x".repeat(5000);
        let batch: Vec<SharedRecord> = (0..60)
            .map(|i| event("a", NOW + i, "abnormal", &long))
            .collect();
        let config = preset("slack", "max_events_per_message = 60\n");
        let plan = plan(&config, &batch, NOW + 100);
        let Body::Json(body) = &plan.messages[0].body else {
            panic!()
        };
        let blocks = body["blocks"].as_array().unwrap();
        assert!(blocks.len() <= 50);
        for block in blocks {
            if let Some(text) = block["text"]["text"].as_str() {
                assert!(text.chars().count() <= 3000);
            }
        }
        let mut found = Vec::new();
        strings(body, &mut found);
        assert!(found.iter().any(|s| s.contains("more events")));
    }

    #[test]
    fn feishu_teams_and_dingtalk_keep_to_their_body_limits() {
        let long = "é".repeat(30_000);
        let batch: Vec<SharedRecord> = (0..10)
            .map(|i| event("a", NOW + i, "abnormal", &long))
            .collect();
        for (format, limit) in [
            ("feishu", FEISHU_MAX_BODY),
            ("teams", TEAMS_MAX_BODY),
            ("dingtalk", DINGTALK_MAX_BODY),
        ] {
            let plan = plan(&preset(format, ""), &batch, NOW + 100);
            assert_eq!(plan.messages.len(), 1, "{format}");
            assert!(plan.messages[0].body.bytes().len() <= limit, "{format}");
        }
    }

    #[test]
    fn a_message_that_cannot_fit_is_refused_with_its_records() {
        let mut huge = (*event("a", NOW, "abnormal", "x")).clone();
        huge.source = "s".repeat(5000).into();
        let plan = plan(&preset("wecom", ""), &[huge.into()], NOW);
        assert!(plan.messages.is_empty());
        assert_eq!(plan.refused.len(), 1);
        assert_eq!(plan.refused[0].0, [0]);
        assert!(
            plan.refused[0].1.contains("size limit"),
            "{}",
            plan.refused[0].1
        );
    }

    #[test]
    fn cut_says_how_much_is_left_out() {
        assert_eq!(cut("abc", Some(3)), "abc");
        assert_eq!(cut("abc", None), "abc");
        let text = "x".repeat(100);
        let short = cut(&text, Some(40));
        assert!(short.chars().count() <= 40, "{short}");
        assert!(short.ends_with("more characters)"), "{short}");
        assert_eq!(cut(&text, Some(0)), "");
        assert_eq!(cut(&text, Some(5)), "xxxxx");
    }

    #[test]
    fn titles_count_and_name_the_type() {
        let zone = TimeZone::UTC;
        let one = [event("a", NOW, "abnormal", "x")];
        let records: Vec<&EventRecord> = one.iter().map(|r| r.record()).collect();
        let alert = Alert {
            events: &records,
            zone: &zone,
        };
        assert_eq!(alert.title(), "ModelArts a: abnormal event");
        let mixed = [
            event("a", NOW, "abnormal", "x"),
            event("a", NOW, "normal", "y"),
        ];
        let records: Vec<&EventRecord> = mixed.iter().map(|r| r.record()).collect();
        let alert = Alert {
            events: &records,
            zone: &zone,
        };
        assert_eq!(alert.title(), "ModelArts a: 2 events");
        let nameless = [event("", NOW, "abnormal", "x")];
        let records: Vec<&EventRecord> = nameless.iter().map(|r| r.record()).collect();
        let alert = Alert {
            events: &records,
            zone: &zone,
        };
        assert_eq!(alert.title(), "ModelArts id-: abnormal event");
    }

    #[test]
    fn times_in_the_configured_zone() {
        let ms = 1_562_597_251_764;
        assert_eq!(local_time(ms, &TimeZone::UTC), "2019-07-08 14:47:31 UTC");
        let shanghai = TimeZone::get("Asia/Shanghai").unwrap();
        assert_eq!(local_time(ms, &shanghai), "2019-07-08 22:47:31 CST");
    }
}
