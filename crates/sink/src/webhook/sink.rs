//! [`WebhookSink`]: the [`Sink`] the engine drives. It plans a batch into messages
//! ([`super::request_builder`]), posts them one after the other ([`super::service`]),
//! and turns what each post became into the batch's [`Delivery`].
//!
//! - A record older than `max_age` is skipped (`too_old_to_alert`): acknowledged, never
//!   posted, never dead-lettered.
//! - The records of a message the platform took are delivered; those of a message it
//!   refused as such are rejected with its reason (the dead-letter file).
//! - When a post fails before anything of the batch was resolved, the send fails with
//!   that error: retryable (throttled, 5xx, no answer) or permanent (bad token, removed
//!   hook, bad signature), and the engine retries the batch or fails the sink.
//! - When a post fails after other messages of the batch went out, those stay
//!   delivered (a chat message cannot be taken back, and sending it again would be a
//!   duplicate), and the records of the failed message and of every message after it
//!   are returned for a retry. After a permanent failure (a removed hook) they are not
//!   retried: the delivery says it stopped ([`Delivery::stopped`]), they wait for a later
//!   run, and the engine fails the sink for the run at once.

use super::config::WebhookConfig;
use super::request_builder::{self, TOO_OLD_TO_ALERT};
use super::service::{Posted, WebhookService};
use crate::{Delivery, ItemRetry, ItemSkip, Rejection, SharedRecord, Sink, SinkError, Stopped};
use std::fmt;
use std::sync::Arc;
use tracing::{debug, warn};

/// Posts alerts to a chat platform, or signed JSON to an HTTP endpoint (see the
/// [module documentation](super)).
pub struct WebhookSink {
    name: String,
    config: Arc<WebhookConfig>,
    service: WebhookService,
}

impl fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSink")
            .field("name", &self.name)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl WebhookSink {
    /// A sink for `config`: reads the URL and secret files, builds the HTTP client. No
    /// network.
    pub async fn new(name: &str, config: &WebhookConfig) -> Result<WebhookSink, SinkError> {
        Ok(WebhookSink {
            name: name.to_owned(),
            service: WebhookService::new(name, config).await?,
            config: Arc::new(config.clone()),
        })
    }

    /// The settings it was built with.
    pub fn config(&self) -> &WebhookConfig {
        &self.config
    }

    /// `scheme://host[:port]` of its URL (the rest is a secret).
    pub fn origin(&self) -> String {
        self.service.origin()
    }
}

#[async_trait::async_trait]
impl Sink for WebhookSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        super::KIND.name
    }

    /// The URL and the secret were read and are well-formed. Nothing is posted: a test
    /// message would alert the people in the chat.
    async fn healthcheck(&self) -> Result<(), SinkError> {
        Ok(())
    }

    async fn send(&self, batch: &[SharedRecord]) -> Result<Delivery, SinkError> {
        let plan = request_builder::plan(&self.config, batch, record::now_ms());
        let mut delivery = Delivery::all_accepted();
        delivery.skipped = plan
            .skipped
            .iter()
            .map(|&index| ItemSkip {
                index,
                kind: TOO_OLD_TO_ALERT,
            })
            .collect();
        for (indices, reason) in &plan.refused {
            for &index in indices {
                delivery.rejected.push(Rejection {
                    index,
                    reason: reason.clone(),
                    status: None,
                    expected: None,
                });
            }
        }
        let mut resolved = !delivery.skipped.is_empty() || !delivery.rejected.is_empty();
        for (number, message) in plan.messages.iter().enumerate() {
            match self.service.post(message).await {
                Ok(Posted::Accepted) => resolved = true,
                Ok(Posted::Refused { reason, status }) => {
                    for &index in &message.indices {
                        delivery.rejected.push(Rejection {
                            index,
                            reason: reason.clone(),
                            status,
                            expected: None,
                        });
                    }
                    resolved = true;
                }
                Err(error) if !resolved => return Err(error),
                Err(error) => {
                    let waiting: Vec<usize> = plan.messages[number..]
                        .iter()
                        .flat_map(|m| m.indices.iter().copied())
                        .collect();
                    warn!(sink = %self.name, posted = number, waiting = waiting.len(), error = %error,
                        "A message failed after others of the batch were posted; those stay delivered, the rest waits.");
                    for &index in &waiting {
                        delivery.retry.push(ItemRetry {
                            index,
                            reason: error.message.clone(),
                            status: error.status,
                        });
                    }
                    if !error.is_retryable() {
                        delivery.stopped = Some(Stopped {
                            message: error.message.clone(),
                            status: error.status,
                        });
                    }
                    break;
                }
            }
        }
        debug!(sink = %self.name, records = batch.len(), messages = plan.messages.len(),
            skipped = delivery.skipped.len(), rejected = delivery.rejected.len(),
            retry = delivery.retry.len(), "Batch handled.");
        Ok(delivery)
    }
}
