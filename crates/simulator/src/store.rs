//! The simulator's data: services and their event rows, stored compactly (texts interned, rows
//! of a few machine words) so that millions of synthetic events stay cheap, and the queries the
//! API answers from them (time window, type filter, order, paging).
//!
//! Rows of a service are kept sorted by their time; within one millisecond they keep insertion
//! order, which is what makes the order inside a millisecond stable across requests.
//!
//! The IAM tokens the simulator has issued live here too ([`IssuedTokens`]), beside the data
//! they give access to.

use crate::config::Behaviour;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// One row to add to a service: a well-formed event, or any JSON object served verbatim.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "SimEventWire")]
pub struct SimEvent {
    kind: SimEventKind,
}

#[derive(Debug, Clone, PartialEq)]
enum SimEventKind {
    Event {
        occur_time: i64,
        event_type: String,
        event_info: String,
    },
    Raw {
        sort_time: i64,
        row: serde_json::Value,
    },
}

/// The admin endpoint's JSON forms of a row.
#[derive(Deserialize)]
#[serde(untagged)]
enum SimEventWire {
    Raw {
        sort_time: i64,
        raw: serde_json::Value,
    },
    Event {
        occur_time: i64,
        event_type: String,
        event_info: String,
    },
}

impl From<SimEventWire> for SimEvent {
    fn from(wire: SimEventWire) -> Self {
        match wire {
            SimEventWire::Raw { sort_time, raw } => SimEvent::raw(sort_time, raw),
            SimEventWire::Event {
                occur_time,
                event_type,
                event_info,
            } => SimEvent::new(occur_time, &event_type, &event_info),
        }
    }
}

impl SimEvent {
    /// A well-formed event as the API documents it.
    pub fn new(occur_time: i64, event_type: &str, event_info: &str) -> Self {
        Self {
            kind: SimEventKind::Event {
                occur_time,
                event_type: event_type.to_owned(),
                event_info: event_info.to_owned(),
            },
        }
    }

    /// `row` is served verbatim (to serve malformed rows); `sort_time` places it for the
    /// time filter and the order.
    pub fn raw(sort_time: i64, row: serde_json::Value) -> Self {
        Self {
            kind: SimEventKind::Raw { sort_time, row },
        }
    }

    fn sort_time(&self) -> i64 {
        match &self.kind {
            SimEventKind::Event { occur_time, .. } => *occur_time,
            SimEventKind::Raw { sort_time, .. } => *sort_time,
        }
    }
}

/// Index of an interned text.
type TextId = u32;

/// A stored row: 24 bytes, whatever its texts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Row {
    pub(crate) sort_time: i64,
    pub(crate) body: RowBody,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum RowBody {
    Event {
        event_type: TextId,
        event_info: TextId,
    },
    Raw(u32),
}

/// A service as the services list shows it, with its rows.
#[derive(Debug)]
pub(crate) struct ServiceEntry {
    pub(crate) service_id: String,
    pub(crate) service_name: String,
    pub(crate) status: String,
    pub(crate) publish_at: i64,
    /// Sorted by `sort_time`; insertion order within one millisecond.
    pub(crate) rows: Vec<Row>,
}

/// What an events query asks for, already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EventsQuery {
    pub(crate) event_type: Option<String>,
    pub(crate) start_time: Option<i64>,
    pub(crate) end_time: Option<i64>,
    pub(crate) offset: u64,
    pub(crate) limit: u32,
    pub(crate) descending: bool,
}

/// All services and rows, plus the interned texts they point to, and the issued IAM tokens.
#[derive(Debug, Default)]
pub(crate) struct Store {
    services: Vec<ServiceEntry>,
    by_id: HashMap<String, usize>,
    texts: Vec<Arc<str>>,
    text_ids: HashMap<Arc<str>, TextId>,
    raw_rows: Vec<serde_json::Value>,
    pub(crate) tokens: IssuedTokens,
}

/// What an issued token is worth at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenStatus {
    Valid,
    Expired,
    Unknown,
}

/// IAM tokens issued by `POST /v3/auth/tokens`, each with the instant it expires (monotonic,
/// so that a clock step on the host neither revives nor kills tokens). Expired tokens are kept:
/// the API answers them differently from tokens it never issued.
#[derive(Default)]
pub(crate) struct IssuedTokens {
    expiry: HashMap<String, Instant>,
}

impl IssuedTokens {
    pub(crate) fn insert(&mut self, token: String, expires: Instant) {
        self.expiry.insert(token, expires);
    }

    pub(crate) fn status(&self, token: &str, now: Instant) -> TokenStatus {
        match self.expiry.get(token) {
            Some(expires) if now < *expires => TokenStatus::Valid,
            Some(_) => TokenStatus::Expired,
            None => TokenStatus::Unknown,
        }
    }

    /// Every issued token expires at `now`.
    pub(crate) fn expire_all(&mut self, now: Instant) {
        for expires in self.expiry.values_mut() {
            *expires = (*expires).min(now);
        }
    }
}

// By hand: the tokens are credentials; only their number is shown.
impl std::fmt::Debug for IssuedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedTokens")
            .field("count", &self.expiry.len())
            .finish()
    }
}

/// One served row, borrowed from the store, in the API's JSON shape.
#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum RowJson<'a> {
    Event {
        occur_time: i64,
        event_type: &'a str,
        event_info: &'a str,
    },
    Raw(&'a serde_json::Value),
}

/// A page of the events API, borrowed from the store; serialized on the fly.
#[derive(Serialize)]
pub(crate) struct EventsPage<'a> {
    pub(crate) service_id: &'a str,
    pub(crate) service_name: &'a str,
    pub(crate) count: usize,
    pub(crate) total_count: u128,
    pub(crate) events: Vec<RowJson<'a>>,
}

impl Store {
    pub(crate) fn intern(&mut self, text: &str) -> TextId {
        if let Some(id) = self.text_ids.get(text) {
            return *id;
        }
        let id = TextId::try_from(self.texts.len())
            .expect("fewer than 2^32 distinct texts are ever stored in one simulator");
        let text: Arc<str> = Arc::from(text);
        self.texts.push(Arc::clone(&text));
        self.text_ids.insert(text, id);
        id
    }

    fn text(&self, id: TextId) -> &str {
        self.texts.get(id as usize).map_or("", |text| text)
    }

    /// Adds a service, or renames it and sets its status if the id exists.
    pub(crate) fn upsert_service(
        &mut self,
        service_id: &str,
        service_name: &str,
        status: &str,
        publish_at: i64,
    ) {
        if let Some(index) = self.by_id.get(service_id) {
            let entry = &mut self.services[*index];
            entry.service_name = service_name.to_owned();
            entry.status = status.to_owned();
            return;
        }
        self.by_id
            .insert(service_id.to_owned(), self.services.len());
        self.services.push(ServiceEntry {
            service_id: service_id.to_owned(),
            service_name: service_name.to_owned(),
            status: status.to_owned(),
            publish_at,
            rows: Vec::new(),
        });
    }

    /// Removes a service and its rows; false if there was none.
    pub(crate) fn remove_service(&mut self, service_id: &str) -> bool {
        let Some(index) = self.by_id.remove(service_id) else {
            return false;
        };
        self.services.remove(index);
        // Later services moved down by one.
        for position in self.by_id.values_mut() {
            if *position > index {
                *position -= 1;
            }
        }
        true
    }

    /// Sets a service's status (`running`, `stopped`, `failed`, …); false if there is none.
    pub(crate) fn set_service_status(&mut self, service_id: &str, status: &str) -> bool {
        match self.by_id.get(service_id) {
            Some(index) => {
                self.services[*index].status = status.to_owned();
                true
            }
            None => false,
        }
    }

    pub(crate) fn service(&self, service_id: &str) -> Option<&ServiceEntry> {
        self.by_id
            .get(service_id)
            .map(|index| &self.services[*index])
    }

    pub(crate) fn services(&self) -> &[ServiceEntry] {
        &self.services
    }

    pub(crate) fn service_ids(&self) -> Vec<String> {
        self.services
            .iter()
            .map(|entry| entry.service_id.clone())
            .collect()
    }

    /// Appends rows that are already in time order (the generator's output) without sorting.
    pub(crate) fn push_sorted_rows(&mut self, service_id: &str, rows: Vec<Row>) -> bool {
        let Some(index) = self.by_id.get(service_id).copied() else {
            return false;
        };
        let entry = &mut self.services[index];
        let in_order = entry.rows.last().is_none_or(|last| {
            rows.first()
                .is_none_or(|first| last.sort_time <= first.sort_time)
        });
        entry.rows.extend(rows);
        if !in_order {
            entry.rows.sort_by_key(|row| row.sort_time);
        }
        true
    }

    /// Adds events to a service; returns false if the service does not exist.
    pub(crate) fn add_events(&mut self, service_id: &str, events: Vec<SimEvent>) -> bool {
        if !self.by_id.contains_key(service_id) {
            return false;
        }
        let mut rows = Vec::with_capacity(events.len());
        for event in events {
            let sort_time = event.sort_time();
            let body = match event.kind {
                SimEventKind::Event {
                    event_type,
                    event_info,
                    ..
                } => RowBody::Event {
                    event_type: self.intern(&event_type),
                    event_info: self.intern(&event_info),
                },
                SimEventKind::Raw { row, .. } => {
                    let id = u32::try_from(self.raw_rows.len())
                        .expect("fewer than 2^32 raw rows are ever stored in one simulator");
                    self.raw_rows.push(row);
                    RowBody::Raw(id)
                }
            };
            rows.push(Row { sort_time, body });
        }
        // A stable sort of the combined rows keeps insertion order inside each millisecond,
        // also for late events that land before existing ones.
        let index = self.by_id[service_id];
        let entry = &mut self.services[index];
        entry.rows.extend(rows);
        entry.rows.sort_by_key(|row| row.sort_time);
        true
    }

    fn row_json(&self, row: &Row) -> RowJson<'_> {
        match row.body {
            RowBody::Event {
                event_type,
                event_info,
            } => RowJson::Event {
                occur_time: row.sort_time,
                event_type: self.text(event_type),
                event_info: self.text(event_info),
            },
            RowBody::Raw(id) => match self.raw_rows.get(id as usize) {
                Some(value) => RowJson::Raw(value),
                None => RowJson::Raw(&serde_json::Value::Null),
            },
        }
    }

    /// The `event_type` a row would be filtered on (a raw row's own field, if a string).
    fn row_event_type(&self, row: &Row) -> Option<&str> {
        match row.body {
            RowBody::Event { event_type, .. } => Some(self.text(event_type)),
            RowBody::Raw(id) => self
                .raw_rows
                .get(id as usize)
                .and_then(|value| value.get("event_type"))
                .and_then(serde_json::Value::as_str),
        }
    }

    /// Answers an events query: the matching rows' count and the requested page.
    pub(crate) fn events_page<'a>(
        &'a self,
        entry: &'a ServiceEntry,
        query: &EventsQuery,
        behaviour: &Behaviour,
    ) -> EventsPage<'a> {
        let rows = &entry.rows;
        let lower = match query.start_time {
            None => 0,
            Some(start) if behaviour.start_inclusive => {
                rows.partition_point(|row| row.sort_time < start)
            }
            Some(start) => rows.partition_point(|row| row.sort_time <= start),
        };
        let upper = match query.end_time {
            None => rows.len(),
            Some(end) if behaviour.end_inclusive => {
                rows.partition_point(|row| row.sort_time <= end)
            }
            Some(end) => rows.partition_point(|row| row.sort_time < end),
        };
        let window = rows.get(lower..upper).unwrap_or(&[]);
        let wanted = query.event_type.as_deref();
        let matches =
            |row: &&Row| wanted.is_none_or(|wanted| self.row_event_type(row) == Some(wanted));

        let total_count = window.iter().filter(matches).count();
        let served_size = behaviour.served_size(query.limit);
        let skip = usize::try_from(behaviour.rows_to_skip(query.offset, served_size))
            .unwrap_or(usize::MAX);
        let take = served_size as usize;
        let events: Vec<RowJson<'a>> = if query.descending {
            window
                .iter()
                .rev()
                .filter(matches)
                .skip(skip)
                .take(take)
                .map(|row| self.row_json(row))
                .collect()
        } else {
            window
                .iter()
                .filter(matches)
                .skip(skip)
                .take(take)
                .map(|row| self.row_json(row))
                .collect()
        };
        EventsPage {
            service_id: &entry.service_id,
            service_name: &entry.service_name,
            count: events.len(),
            total_count: behaviour.total_count(total_count),
            events,
        }
    }

    /// The well-formed rows of a service in ascending order: what a correct shipper delivers.
    /// A raw row counts if its `occur_time` is an integer and its type and info are strings.
    pub(crate) fn ground_truth(&self, service_id: &str) -> Vec<(i64, String, String)> {
        let Some(entry) = self.service(service_id) else {
            return Vec::new();
        };
        entry
            .rows
            .iter()
            .filter_map(|row| match row.body {
                RowBody::Event {
                    event_type,
                    event_info,
                } => Some((
                    row.sort_time,
                    self.text(event_type).to_owned(),
                    self.text(event_info).to_owned(),
                )),
                RowBody::Raw(id) => {
                    let value = self.raw_rows.get(id as usize)?;
                    Some((
                        value.get("occur_time")?.as_i64()?,
                        value.get("event_type")?.as_str()?.to_owned(),
                        value.get("event_info")?.as_str()?.to_owned(),
                    ))
                }
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store_with(events: Vec<SimEvent>) -> Store {
        let mut store = Store::default();
        store.upsert_service("s", "svc", "running", 0);
        assert!(store.add_events("s", events));
        store
    }

    #[test]
    fn rows_in_one_millisecond_keep_insertion_order_even_when_late() {
        let mut store = store_with(vec![
            SimEvent::new(10, "normal", "a"),
            SimEvent::new(20, "normal", "c"),
        ]);
        store.add_events(
            "s",
            vec![
                SimEvent::new(10, "normal", "b"),
                SimEvent::new(5, "normal", "first"),
            ],
        );
        let infos: Vec<String> = store
            .ground_truth("s")
            .into_iter()
            .map(|(_, _, info)| info)
            .collect();
        assert_eq!(infos, vec!["first", "a", "b", "c"]);
    }

    #[test]
    fn raw_rows_are_served_verbatim_and_only_well_formed_ones_are_ground_truth() {
        let store = store_with(vec![
            SimEvent::raw(
                7,
                json!({"occur_time": "7", "event_type": "normal", "event_info": "string time"}),
            ),
            SimEvent::raw(
                8,
                json!({"occur_time": 8, "event_type": "WARNING", "event_info": "odd type"}),
            ),
        ]);
        let truth = store.ground_truth("s");
        assert_eq!(
            truth,
            vec![(8, "WARNING".to_owned(), "odd type".to_owned())]
        );
        let entry = store.service("s").unwrap();
        let query = EventsQuery {
            event_type: None,
            start_time: None,
            end_time: None,
            offset: 0,
            limit: 10,
            descending: false,
        };
        let page = store.events_page(entry, &query, &Behaviour::default());
        let text = serde_json::to_value(&page).unwrap();
        assert_eq!(text["events"][0]["occur_time"], json!("7"));
        assert_eq!(text["total_count"], json!(2));
    }

    #[test]
    fn removing_a_service_keeps_the_others_reachable() {
        let mut store = Store::default();
        for id in ["a", "b", "c"] {
            store.upsert_service(id, id, "running", 0);
        }
        assert!(store.add_events("c", vec![SimEvent::new(1, "normal", "x")]));
        assert!(store.remove_service("a"));
        assert!(!store.remove_service("a"));
        assert!(store.service("a").is_none());
        assert_eq!(store.service_ids(), vec!["b", "c"]);
        assert_eq!(store.service("c").unwrap().rows.len(), 1);
        assert!(store.set_service_status("c", "stopped"));
        assert_eq!(store.service("c").unwrap().status, "stopped");
        assert!(!store.set_service_status("a", "stopped"));
    }

    #[test]
    fn issued_tokens_expire_and_stay_known() {
        let mut tokens = IssuedTokens::default();
        let now = Instant::now();
        tokens.insert("t1".to_owned(), now + std::time::Duration::from_secs(60));
        assert_eq!(tokens.status("t1", now), TokenStatus::Valid);
        assert_eq!(
            tokens.status("t1", now + std::time::Duration::from_secs(60)),
            TokenStatus::Expired
        );
        assert_eq!(tokens.status("other", now), TokenStatus::Unknown);
        tokens.expire_all(now);
        assert_eq!(tokens.status("t1", now), TokenStatus::Expired);
        assert!(!format!("{tokens:?}").contains("t1"));
    }

    #[test]
    fn rows_stay_compact() {
        // 100,000 events per service must stay cheap: texts live once in the interner.
        assert!(std::mem::size_of::<Row>() <= 24);
    }

    #[test]
    fn deserializes_both_admin_row_forms() {
        let rows: Vec<SimEvent> = serde_json::from_value(json!([
            {"occur_time": 1, "event_type": "normal", "event_info": "x"},
            {"sort_time": 2, "raw": {"anything": true}}
        ]))
        .unwrap();
        assert_eq!(rows[0], SimEvent::new(1, "normal", "x"));
        assert_eq!(rows[1], SimEvent::raw(2, json!({"anything": true})));
    }
}
