//! The runner's configuration file for one benchmark run: state in the run's folder, the
//! benchmark's one source ([`SourceParams`]), `[runner] concurrency`, and one sink.

use crate::source_params::{SourceParams, toml_str};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Where the file sink writes, relative to the config's folder.
pub const FILE_SINK_PATH: &str = "out/events.jsonl";
/// The name of the one sink in every config.
pub const SINK_NAME: &str = "out";

/// The sink a run delivers to.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkSpec {
    /// JSON lines at [`FILE_SINK_PATH`].
    File,
    /// A Loki double; `too_old_after` is at least the age of the oldest event, so the
    /// sink's own age check (Loki's `reject_old_samples`) refuses nothing.
    Loki {
        endpoint: String,
        too_old_after: String,
    },
    /// An Elasticsearch double, default index.
    Elasticsearch { endpoint: String },
}

impl SinkSpec {
    /// The sink's kind, as its `type` names it.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkSpec::File => "file",
            SinkSpec::Loki { .. } => "loki",
            SinkSpec::Elasticsearch { .. } => "elasticsearch",
        }
    }
}

/// One config file.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    pub source: SourceParams,
    /// `[runner] concurrency`; `None` keeps the runner's default.
    pub concurrency: Option<usize>,
    pub sink: SinkSpec,
}

impl RunnerConfig {
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(text, "[state]\npath = \"state/events.db\"\n");
        if let Some(concurrency) = self.concurrency {
            let _ = writeln!(text, "[runner]\nconcurrency = {concurrency}\n");
        }
        let _ = writeln!(text, "{}", self.source.toml());
        let _ = writeln!(text, "[sinks.{SINK_NAME}]");
        let _ = writeln!(text, "type = {}", toml_str(self.sink.kind()));
        match &self.sink {
            SinkSpec::File => {
                let _ = writeln!(text, "path = {}", toml_str(FILE_SINK_PATH));
            }
            SinkSpec::Loki {
                endpoint,
                too_old_after,
            } => {
                let _ = writeln!(text, "endpoint = {}", toml_str(endpoint));
                let _ = writeln!(text, "too_old_after = {}", toml_str(too_old_after));
            }
            SinkSpec::Elasticsearch { endpoint } => {
                let _ = writeln!(text, "endpoint = {}", toml_str(endpoint));
            }
        }
        text
    }

    /// Writes `runner.toml` into `folder` and returns its path.
    pub fn write(&self, folder: &Path) -> std::io::Result<PathBuf> {
        let path = folder.join("runner.toml");
        std::fs::write(&path, self.render())?;
        Ok(path)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn source() -> SourceParams {
        SourceParams {
            endpoint: "http://127.0.0.1:9".to_owned(),
            project_id: "p".to_owned(),
            token: "t".to_owned(),
            services: vec!["a".to_owned()],
            page_size: 1000,
            lookback_ms: 600_000,
            max_clock_skew_ms: 300_000,
            request_timeout_ms: 30_000,
            max_requests_per_second: 1e6,
            max_retries: 8,
            max_response_bytes: 1 << 26,
            retry_initial_backoff_ms: 1_000,
            retry_max_backoff_ms: 60_000,
        }
    }

    #[test]
    fn every_sink_kind_renders_as_toml() {
        let sinks = [
            SinkSpec::File,
            SinkSpec::Loki {
                endpoint: "http://127.0.0.1:1".to_owned(),
                too_old_after: "400d".to_owned(),
            },
            SinkSpec::Elasticsearch {
                endpoint: "http://127.0.0.1:2".to_owned(),
            },
        ];
        for sink in sinks {
            let config = RunnerConfig {
                source: source(),
                concurrency: Some(50),
                sink: sink.clone(),
            };
            let table: toml::Table = toml::from_str(&config.render()).unwrap();
            assert_eq!(table["state"]["path"].as_str(), Some("state/events.db"));
            assert_eq!(table["runner"]["concurrency"].as_integer(), Some(50));
            let out = &table["sinks"][SINK_NAME];
            assert_eq!(out["type"].as_str(), Some(sink.kind()));
            match sink {
                SinkSpec::File => assert_eq!(out["path"].as_str(), Some(FILE_SINK_PATH)),
                SinkSpec::Loki { .. } => assert_eq!(out["too_old_after"].as_str(), Some("400d")),
                SinkSpec::Elasticsearch { endpoint } => {
                    assert_eq!(out["endpoint"].as_str(), Some(endpoint.as_str()))
                }
            }
        }
    }

    #[test]
    fn default_concurrency_writes_no_runner_table() {
        let config = RunnerConfig {
            source: source(),
            concurrency: None,
            sink: SinkSpec::File,
        };
        let table: toml::Table = toml::from_str(&config.render()).unwrap();
        assert!(!table.contains_key("runner"));
    }
}
