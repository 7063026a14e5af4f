//! The ModelArts side of the shipper: the HTTP client for the service events
//! API (auth, retries, rate cap), the incremental pull that pages by time
//! without trusting the server's paging model, per-sink cursors, and the
//! SQLite checkpoint store.
//!
//! API: <https://docs.otc.t-systems.com/modelarts/api-ref/> ("Querying Service
//! Event Logs", `GET /v1/{project_id}/services/{service_id}/events`).

mod auth;
pub mod checkpoint;
pub mod client;
pub mod cursor;
pub mod discovery;
pub mod error;
pub mod pull;
pub mod rate;
pub mod regions;
mod response;
pub mod retry;
pub mod secret;
pub mod settings;
pub mod shard;

pub use auth::read_secret_files;
pub use client::{EventsPage, EventsQuery, ModelArtsClient, RawEvent, ServiceInfo};
pub use cursor::SinkCursor;
pub use error::SourceError;
pub use pull::{PullOptions, PulledBatch, PulledEvent, ServerModel, ServicePull};
pub use regions::{Cloud, RegionEndpoints};
pub use secret::Secret;
pub use settings::{
    AuthKind, AuthSettings, Discover, OffsetUnit, SecretSource, SettingsOrigin, SourceSettings,
    StartAt, TlsSettings,
};
pub use shard::Shard;
