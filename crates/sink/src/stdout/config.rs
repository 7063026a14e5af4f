//! The keys of a stdout sink: `format`.

use super::{StdoutFormat, StdoutSink};
use crate::config::{
    BuildContext, BuiltSink, ConfigContext, ReadError, SinkConfig, Table, deserialize,
};
use crate::{Sink, SinkError};
use serde::Deserialize;
use std::sync::Arc;

/// `[sinks.NAME]` of `type = "stdout"`, without the common keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StdoutTable {
    format: Option<StdoutFormat>,
}

/// A validated stdout sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StdoutConfig {
    pub format: StdoutFormat,
}

pub(super) fn read(
    table: Table<'_>,
    _ctx: &dyn ConfigContext,
) -> Result<Box<dyn SinkConfig>, ReadError> {
    let table: StdoutTable = deserialize(table)?;
    Ok(Box::new(StdoutConfig {
        format: table.format.unwrap_or_default(),
    }))
}

#[async_trait::async_trait]
impl SinkConfig for StdoutConfig {
    fn kind(&self) -> &'static str {
        super::KIND.name
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    async fn build(&self, name: &str, _: BuildContext) -> Result<BuiltSink, SinkError> {
        Ok(BuiltSink {
            sink: Arc::new(StdoutSink::new(name, self.format)),
            state: None,
            recovered: Vec::new(),
        })
    }

    async fn check(&self, name: &str) -> Result<(), SinkError> {
        StdoutSink::new(name, self.format).healthcheck().await
    }
}
