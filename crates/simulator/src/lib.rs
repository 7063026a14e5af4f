//! A faithful local ModelArts API: `GET /v1/{project_id}/services/{service_id}/events` and
//! `GET /v1/{project_id}/services`, with the documented parameters, defaults, error bodies and
//! codes, realistic synthetic data, and the behaviours the documentation leaves open
//! (inclusive or exclusive time bounds, what `offset` counts, a clamped page size) switchable,
//! plus deterministic fault injection (429 with `Retry-After`, 500, 503, an HTML 502, a
//! truncated body, a dropped connection). It also plays IAM (`POST /v3/auth/tokens`, password
//! method) and the API gateway's checks of tokens and AK/SK signatures (`SDK-HMAC-SHA256`,
//! with the lockout after five failures). Admin endpoints (`POST /admin/services`,
//! `POST /admin/services/{service_id}/events`, `POST /admin/faults`) add data and change the
//! fault schedule while it runs.
//!
//! Tests, benchmarks and `runner demo` use it in-process; the `modelarts-sim` binary serves it
//! on its own so users can try the shipper without a cloud account.
//!
//! Upstream API: <https://docs.otc.t-systems.com/modelarts/api-ref/service_management/obtaining_service_event_logs.html>
//!
//! ```no_run
//! use simulator::{Behaviour, Fault, FaultRule, OffsetMode, SimConfig, SimEvent, Simulator};
//!
//! let config = SimConfig {
//!     services: 2,
//!     events_per_service: 5_000,
//!     seed: 7,
//!     behaviour: Behaviour {
//!         offset_mode: OffsetMode::Record,
//!         max_page_size: Some(100),
//!         faults: vec![FaultRule::every(Fault::TooManyRequests, 5)],
//!         ..Behaviour::default()
//!     },
//!     ..SimConfig::default()
//! };
//! let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), config).unwrap();
//! let service = &sim.service_ids()[0];
//! // Point the shipper at sim.base_url() with sim.project_id() and sim.token(), then:
//! sim.add_events(service, vec![SimEvent::new(1_700_000_000_000, "abnormal", "Insufficient resources.")]);
//! assert_eq!(sim.events(service).len(), 5_001);
//! println!("{} requests, {:?}", sim.request_count(), sim.requests().last());
//! sim.shutdown();
//! ```

mod auth;
mod config;
mod handle;
mod iam;
mod query;
mod server;
mod store;
mod synthetic;

pub use config::{
    AccessKey, Behaviour, DEFAULT_AKSK_LOCKOUT, DEFAULT_IAM_DOMAIN, DEFAULT_IAM_PASSWORD,
    DEFAULT_IAM_USER, DEFAULT_PROJECT_ID, DEFAULT_PROJECT_NAME, DEFAULT_TOKEN,
    DEFAULT_TOKEN_LIFETIME, Fault, FaultRule, FaultWhen, IamUser, OffsetMode, ParseOptionError,
    SimConfig, Spread,
};
pub use handle::{SimHandle, Simulator};
pub use server::RequestLog;
pub use store::SimEvent;
pub use synthetic::{SAMPLE_SERVICE_ID, SAMPLE_SERVICE_NAME};
