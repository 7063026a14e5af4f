//! The connection settings of the benchmark's one source, in one place, so that the runner
//! (through the `[sources.sim]` table of its config) and the fetch-only client (through the
//! [`SourceSettings`] the runner would build from that table) ask the same server the same
//! way: same page size, timeouts, rate cap, retries and lookback. They are the runner's
//! defaults except `max_requests_per_second`, raised so that the cap never binds (the issue
//! measures the shipper, not its politeness).

use serde::{Deserialize, Serialize};
use simulator::SimHandle;
use source::{
    AuthSettings, OffsetUnit, Secret, SecretSource, SourceSettings, StartAt, TlsSettings,
};
use std::fmt::Write as _;
use std::time::Duration;

/// The source's name in every config the benchmark writes (it is not part of any id).
pub const SOURCE_NAME: &str = "sim";

/// What both the runner and the fetch-only client are told about the source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceParams {
    pub endpoint: String,
    pub project_id: String,
    /// The simulator's static `X-Auth-Token`.
    pub token: String,
    pub services: Vec<String>,
    pub page_size: u32,
    pub lookback_ms: u64,
    pub max_clock_skew_ms: u64,
    pub request_timeout_ms: u64,
    pub max_requests_per_second: f64,
    pub max_retries: u32,
    pub max_response_bytes: u64,
    pub retry_initial_backoff_ms: u64,
    pub retry_max_backoff_ms: u64,
}

impl SourceParams {
    /// Every service of `sim`, with the runner's defaults (page size 1000, lookback 10
    /// minutes, 30 s timeouts, 8 retries from 1 s to 60 s) and the highest rate cap the
    /// runner accepts, 10,000 requests per second: a page takes longer than 0.1 ms to
    /// serve, so the cap never binds.
    pub fn for_sim(sim: &SimHandle) -> SourceParams {
        SourceParams {
            endpoint: sim.base_url(),
            project_id: sim.project_id(),
            token: sim.token(),
            services: sim.service_ids(),
            page_size: 1000,
            lookback_ms: 10 * 60 * 1000,
            max_clock_skew_ms: 5 * 60 * 1000,
            request_timeout_ms: 30_000,
            max_requests_per_second: 10_000.0,
            max_retries: 8,
            max_response_bytes: 64 * 1024 * 1024,
            retry_initial_backoff_ms: 1_000,
            retry_max_backoff_ms: 60_000,
        }
    }

    /// The settings the runner builds from [`SourceParams::toml`].
    pub fn settings(&self) -> SourceSettings {
        SourceSettings {
            name: SOURCE_NAME.to_owned(),
            endpoint: self.endpoint.clone(),
            project_id: Some(self.project_id.clone()),
            services: self.services.clone(),
            discover: None,
            event_type: None,
            page_size: self.page_size,
            lookback: Duration::from_millis(self.lookback_ms),
            max_clock_skew: Duration::from_millis(self.max_clock_skew_ms),
            start_at: StartAt::Beginning,
            offset_unit: OffsetUnit::Auto,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            connect_timeout: Duration::from_secs(10),
            max_requests_per_second: self.max_requests_per_second,
            max_retries: self.max_retries,
            max_response_bytes: self.max_response_bytes,
            retry_initial_backoff: Duration::from_millis(self.retry_initial_backoff_ms),
            retry_max_backoff: Duration::from_millis(self.retry_max_backoff_ms),
            tls: TlsSettings::default(),
            auth: AuthSettings::Token {
                token: SecretSource::Inline(Secret::new(self.token.clone())),
            },
            origin: Default::default(),
        }
    }

    /// The `[sources.sim]` table (with its `auth` table), every key written out.
    pub fn toml(&self) -> String {
        let duration =
            |ms: u64| toml_str(&humantime::format_duration(Duration::from_millis(ms)).to_string());
        let services: Vec<String> = self.services.iter().map(|s| toml_str(s)).collect();
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(text, "[sources.{SOURCE_NAME}]");
        let _ = writeln!(text, "type = \"modelarts\"");
        let _ = writeln!(text, "endpoint = {}", toml_str(&self.endpoint));
        let _ = writeln!(text, "project_id = {}", toml_str(&self.project_id));
        let _ = writeln!(text, "services = [{}]", services.join(", "));
        let _ = writeln!(text, "page_size = {}", self.page_size);
        let _ = writeln!(text, "lookback = {}", duration(self.lookback_ms));
        let _ = writeln!(
            text,
            "max_clock_skew = {}",
            duration(self.max_clock_skew_ms)
        );
        let _ = writeln!(text, "start_at = \"beginning\"");
        let _ = writeln!(text, "offset_unit = \"auto\"");
        let _ = writeln!(
            text,
            "request_timeout = {}",
            duration(self.request_timeout_ms)
        );
        let _ = writeln!(
            text,
            "max_requests_per_second = {:?}",
            self.max_requests_per_second
        );
        let _ = writeln!(text, "max_retries = {}", self.max_retries);
        let _ = writeln!(text, "max_response_bytes = {}", self.max_response_bytes);
        let _ = writeln!(
            text,
            "retry_initial_backoff = {}",
            duration(self.retry_initial_backoff_ms)
        );
        let _ = writeln!(
            text,
            "retry_max_backoff = {}",
            duration(self.retry_max_backoff_ms)
        );
        let _ = writeln!(text, "\n[sources.{SOURCE_NAME}.auth]");
        let _ = writeln!(text, "type = \"token\"");
        let _ = writeln!(text, "token = {}", toml_str(&self.token));
        text
    }
}

/// A TOML basic string (JSON's escapes are TOML's).
pub fn toml_str(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn params() -> SourceParams {
        SourceParams {
            endpoint: "http://127.0.0.1:9".to_owned(),
            project_id: "p".to_owned(),
            token: "t\"oken".to_owned(),
            services: vec!["a".to_owned(), "b".to_owned()],
            page_size: 1000,
            lookback_ms: 600_000,
            max_clock_skew_ms: 300_000,
            request_timeout_ms: 30_000,
            max_requests_per_second: 1_000_000.0,
            max_retries: 8,
            max_response_bytes: 64 << 20,
            retry_initial_backoff_ms: 1_000,
            retry_max_backoff_ms: 60_000,
        }
    }

    #[test]
    fn the_table_says_what_the_settings_say() {
        let params = params();
        let table: toml::Table = toml::from_str(&params.toml()).unwrap();
        let source = &table["sources"][SOURCE_NAME];
        let settings = params.settings();
        assert_eq!(
            source["endpoint"].as_str(),
            Some(settings.endpoint.as_str())
        );
        assert_eq!(source["services"].as_array().unwrap().len(), 2);
        assert_eq!(
            source["page_size"].as_integer(),
            Some(i64::from(settings.page_size))
        );
        assert_eq!(source["lookback"].as_str(), Some("10m"));
        assert_eq!(source["request_timeout"].as_str(), Some("30s"));
        assert_eq!(source["retry_max_backoff"].as_str(), Some("1m"));
        assert_eq!(
            source["max_requests_per_second"].as_float(),
            Some(settings.max_requests_per_second)
        );
        assert_eq!(source["auth"]["token"].as_str(), Some("t\"oken"));
        assert_eq!(settings.lookback, Duration::from_secs(600));
    }

    #[test]
    fn params_survive_the_plan_file() {
        let params = params();
        let text = serde_json::to_string(&params).unwrap();
        assert_eq!(serde_json::from_str::<SourceParams>(&text).unwrap(), params);
    }
}
