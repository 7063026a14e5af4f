//! Source settings for a simulator on 127.0.0.1, shared by the engine tests
//! (`tests/support`) and the crate's own unit tests (included with `#[path]`).

use simulator::SimHandle;
use source::{
    AuthSettings, OffsetUnit, Secret, SecretSource, SourceSettings, StartAt, TlsSettings,
};
use std::time::Duration;

/// Every service of `sim`, pages of `page_size`, fast retries and no rate cap to speak
/// of. Also installs the process's TLS crypto provider, which building the source's client
/// needs (the runner installs it in `main`).
pub fn sim_settings(sim: &SimHandle, page_size: u32) -> SourceSettings {
    tls_provider::install();
    SourceSettings {
        name: "sim".to_owned(),
        endpoint: sim.base_url(),
        project_id: Some(sim.project_id()),
        discover: None,
        tls: TlsSettings::default(),
        services: sim.service_ids(),
        event_type: None,
        page_size,
        lookback: Duration::from_secs(600),
        max_clock_skew: Duration::from_secs(300),
        start_at: StartAt::Beginning,
        offset_unit: OffsetUnit::Auto,
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(10),
        max_requests_per_second: 1_000_000.0,
        max_retries: 4,
        max_response_bytes: 64 * 1024 * 1024,
        retry_initial_backoff: Duration::from_millis(2),
        retry_max_backoff: Duration::from_millis(20),
        auth: AuthSettings::Token {
            token: SecretSource::Inline(Secret::new(sim.token())),
        },
        origin: Default::default(),
    }
}
