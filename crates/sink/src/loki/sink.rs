//! [`LokiSink`]: the [`Sink`] the engine drives; the work is in `service.rs`.

use super::LokiConfig;
use super::service::LokiService;
use crate::http::{HttpClient, HttpRequest};
use crate::{Delivery, SharedRecord, Sink, SinkError};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Pushes records to Grafana Loki (see the [module documentation](super)).
pub struct LokiSink {
    name: String,
    service: LokiService,
}

impl LokiSink {
    /// A sink for `config`: builds its HTTP client (reads the TLS and secret files). No
    /// network.
    pub async fn new(name: &str, config: &LokiConfig) -> Result<LokiSink, SinkError> {
        let client = HttpClient::build_for(name, &config.http, &[&config.push_url]).await?;
        Ok(LokiSink {
            name: name.to_owned(),
            service: LokiService::new(name, client, Arc::new(config.clone())),
        })
    }

    /// The settings it was built with.
    pub fn config(&self) -> &LokiConfig {
        self.service.config()
    }
}

fn now_ns() -> i64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    i64::try_from(nanos).unwrap_or(i64::MAX)
}

#[async_trait::async_trait]
impl Sink for LokiSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        super::KIND.name
    }

    /// `GET {endpoint}/ready`: 200 once Loki can take writes (503 while it starts).
    async fn healthcheck(&self) -> Result<(), SinkError> {
        let url = self.service.config().ready_url.clone();
        self.service
            .client()
            .send(HttpRequest::get(url))
            .await
            .map(|_| ())
    }

    async fn send(&self, batch: &[SharedRecord]) -> Result<Delivery, SinkError> {
        self.service.deliver(batch, now_ns()).await
    }
}
