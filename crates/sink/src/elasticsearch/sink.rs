//! [`ElasticsearchSink`]: encodes a batch ([`super::request_builder`]), sends it
//! ([`super::service`]) and turns the per-item outcomes into a [`Delivery`]; and the
//! healthcheck, `GET /` (<https://www.elastic.co/docs/api/doc/elasticsearch/operation/operation-info>),
//! which reads `version.number` and `version.distribution` and warns about versions this
//! sink was not built against.

use super::config::ElasticsearchConfig;
use super::request_builder::{BulkBody, IndexPattern, Mode};
use super::service::{BulkService, ItemOutcome};
use crate::http::HttpClient;
use crate::{Delivery, ItemRetry, Rejection, SharedRecord, Sink, SinkError};
use serde_json::Value;
use std::fmt;
use tracing::{debug, info, warn};

/// Who made the server, from `version.distribution` (absent in Elasticsearch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Distribution {
    Elasticsearch,
    OpenSearch,
    /// Another `version.distribution`, as given.
    Other(String),
}

/// The server's version, from `GET /`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerVersion {
    pub distribution: Distribution,
    /// `version.number` as given (`8.15.0`).
    pub number: String,
    /// The number before the first dot, if it is one.
    pub major: Option<u64>,
}

impl ServerVersion {
    /// Reads the answer to `GET /`; `Err` says why it is not an Elasticsearch or
    /// OpenSearch root answer.
    pub fn parse(body: &[u8]) -> Result<ServerVersion, String> {
        let answer: Value = serde_json::from_slice(body).map_err(|_| {
            format!(
                "GET / did not answer with JSON; is this Elasticsearch or OpenSearch? {}",
                crate::http::response::excerpt(body)
            )
        })?;
        let Some(number) = answer.pointer("/version/number").and_then(Value::as_str) else {
            return Err(format!(
                "GET / gave no version.number; is this Elasticsearch or OpenSearch? {}",
                crate::http::response::excerpt(body)
            ));
        };
        let distribution = match answer
            .pointer("/version/distribution")
            .and_then(Value::as_str)
        {
            None | Some("elasticsearch") => Distribution::Elasticsearch,
            Some("opensearch") => Distribution::OpenSearch,
            Some(other) => Distribution::Other(other.to_owned()),
        };
        Ok(ServerVersion {
            distribution,
            number: number.to_owned(),
            major: number.split('.').next().and_then(|m| m.parse().ok()),
        })
    }

    /// Elasticsearch 7 or 8, OpenSearch 1 or 2: the servers whose `_bulk` answers this
    /// sink was written and tested against.
    pub fn is_known(&self) -> bool {
        matches!(
            (&self.distribution, self.major),
            (Distribution::Elasticsearch, Some(7 | 8)) | (Distribution::OpenSearch, Some(1 | 2))
        )
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.distribution {
            Distribution::Elasticsearch => write!(f, "Elasticsearch {}", self.number),
            Distribution::OpenSearch => write!(f, "OpenSearch {}", self.number),
            Distribution::Other(name) => write!(f, "{name} {}", self.number),
        }
    }
}

/// Writes records to Elasticsearch or OpenSearch with `_bulk` `create`s, idempotently.
#[derive(Debug)]
pub struct ElasticsearchSink {
    name: String,
    index: IndexPattern,
    mode: Mode,
    service: BulkService,
}

impl ElasticsearchSink {
    /// Builds the sink's HTTP client (reading TLS and secret files); no network.
    pub async fn new(name: &str, config: &ElasticsearchConfig) -> Result<Self, SinkError> {
        let urls: Vec<&reqwest::Url> = config.endpoints.iter().collect();
        let client = HttpClient::build_for(name, &config.http, &urls).await?;
        Ok(ElasticsearchSink {
            name: name.to_owned(),
            index: config.index.clone(),
            mode: config.mode,
            service: BulkService::new(client, &config.endpoints, config.pipeline.as_deref()),
        })
    }

    /// `GET /` of every endpoint: each one's origin and version, or why it could not
    /// be read. A 403 says how to turn the healthcheck off for a write-only key.
    pub async fn versions(&self) -> Vec<(String, Result<ServerVersion, SinkError>)> {
        let mut versions = Vec::new();
        for (index, origin) in self.service.origins().into_iter().enumerate() {
            let version = match self.service.get_root(index).await {
                Ok(answer) => ServerVersion::parse(&answer.body).map_err(|why| {
                    SinkError::permanent(&self.name, format!("GET {origin}/: {why}"))
                        .with_status(answer.status.as_u16())
                }),
                Err(error) if error.status == Some(403) => Err(SinkError::permanent(
                    &self.name,
                    format!(
                        "{}; an API key that may only write cannot read GET /: set \
                         healthcheck.enabled = false for this sink",
                        error.message
                    ),
                )
                .with_status(403)),
                Err(error) => Err(error),
            };
            versions.push((origin, version));
        }
        versions
    }
}

#[async_trait::async_trait]
impl Sink for ElasticsearchSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        super::KIND.name
    }

    /// Healthy when at least one endpoint answers `GET /` like Elasticsearch or
    /// OpenSearch (the others are warned about: sends skip an endpoint that fails).
    /// A version this sink does not know is a warning, not a failure.
    async fn healthcheck(&self) -> Result<(), SinkError> {
        let mut first_error = None;
        let mut healthy = 0;
        for (origin, version) in self.versions().await {
            match version {
                Ok(version) if version.is_known() => {
                    healthy += 1;
                    info!(sink = %self.name, endpoint = %origin, version = %version, "Endpoint is healthy.");
                }
                Ok(version) => {
                    healthy += 1;
                    warn!(sink = %self.name, endpoint = %origin, version = %version,
                        "Endpoint runs a version this sink was not tested against \
                         (Elasticsearch 7 and 8, OpenSearch 1 and 2 are); delivering anyway.");
                }
                Err(error) => {
                    warn!(sink = %self.name, endpoint = %origin, error = %error, "Endpoint failed its healthcheck.");
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(error) if healthy == 0 => Err(error),
            _ => Ok(()),
        }
    }

    async fn send(&self, batch: &[SharedRecord]) -> Result<Delivery, SinkError> {
        if batch.is_empty() {
            return Ok(Delivery::all_accepted());
        }
        let body = BulkBody::encode(batch, &self.index, self.mode);
        // The ids are copied side by side while the records are fresh from encoding: the
        // answer is checked against them a request later, when reading each from its own
        // record missed the cache (7% of the sink's CPU in a 100k backfill).
        let copied: Vec<record::EventId> = batch.iter().map(|r| r.id).collect();
        let ids: Vec<&str> = copied.iter().map(|id| id.as_str()).collect();
        let outcomes = self.service.deliver(&body, &ids).await?;
        let mut delivery = Delivery::all_accepted();
        for (index, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                ItemOutcome::Delivered => {}
                ItemOutcome::Retry { reason, status } => delivery.retry.push(ItemRetry {
                    index,
                    reason,
                    status: Some(status),
                }),
                ItemOutcome::Rejected { reason, status } => delivery.rejected.push(Rejection {
                    index,
                    reason,
                    status: Some(status),
                    expected: None,
                }),
            }
        }
        debug!(sink = %self.name, records = batch.len(), retry = delivery.retry.len(),
            rejected = delivery.rejected.len(), "Bulk request answered.");
        Ok(delivery)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn versions_of_each_flavour() {
        let es8 = ServerVersion::parse(
            br#"{"name":"n","version":{"number":"8.15.0","build_flavor":"default"},"tagline":"You Know, for Search"}"#,
        )
        .unwrap();
        assert_eq!(es8.distribution, Distribution::Elasticsearch);
        assert_eq!(es8.major, Some(8));
        assert!(es8.is_known());
        assert_eq!(es8.to_string(), "Elasticsearch 8.15.0");
        let os =
            ServerVersion::parse(br#"{"version":{"distribution":"opensearch","number":"2.15.0"}}"#)
                .unwrap();
        assert_eq!(os.distribution, Distribution::OpenSearch);
        assert!(os.is_known());
        assert_eq!(os.to_string(), "OpenSearch 2.15.0");
        for unknown in [
            r#"{"version":{"number":"9.0.0"}}"#,
            r#"{"version":{"number":"6.8.23"}}"#,
            r#"{"version":{"distribution":"opensearch","number":"3.0.0"}}"#,
            r#"{"version":{"distribution":"opendistro","number":"1.13.0"}}"#,
            r#"{"version":{"number":"snapshot"}}"#,
        ] {
            let version = ServerVersion::parse(unknown.as_bytes()).unwrap();
            assert!(!version.is_known(), "{unknown}");
        }
    }

    #[test]
    fn root_answers_that_are_not_elasticsearch() {
        let error = ServerVersion::parse(b"<html>Kibana</html>").unwrap_err();
        assert!(error.contains("not answer with JSON"), "{error}");
        let error = ServerVersion::parse(br#"{"status":"green"}"#).unwrap_err();
        assert!(error.contains("no version.number"), "{error}");
        let error = ServerVersion::parse(br#"{"version":{"number":8}}"#).unwrap_err();
        assert!(error.contains("no version.number"), "{error}");
    }
}
