//! The keys of a file sink (`path`), and opening it with start-up recovery.

use super::{FileCheckpoint, FileSink, Recovery};
use crate::SinkError;
use crate::config::{
    BuildContext, BuiltSink, ConfigContext, ReadError, SinkConfig, Table, WrittenPath, deserialize,
};
use serde::Deserialize;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use toml::Spanned;
use tracing::{info, warn};

/// `[sinks.NAME]` of `type = "file"`, without the common keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTable {
    path: Spanned<String>,
}

/// A validated file sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConfig {
    /// Resolved against the config file's folder.
    pub path: PathBuf,
    /// Where `path` is in the config file.
    pub path_span: Range<usize>,
}

pub(super) fn read(
    table: Table<'_>,
    ctx: &dyn ConfigContext,
) -> Result<Box<dyn SinkConfig>, ReadError> {
    let table: FileTable = deserialize(table)?;
    Ok(Box::new(FileConfig {
        path: ctx.path(&table.path, "path")?,
        path_span: table.path.span(),
    }))
}

#[async_trait::async_trait]
impl SinkConfig for FileConfig {
    fn kind(&self) -> &'static str {
        super::KIND.name
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn written_paths(&self) -> Vec<WrittenPath> {
        vec![WrittenPath {
            field: "path".to_owned(),
            path: self.path.clone(),
            span: self.path_span.clone(),
        }]
    }

    /// Opens the file and recovers against the committed checkpoint (cutting an
    /// uncommitted tail), or, when the state holds nothing of the sink, recovers its
    /// positions from the file; the state to commit is the checkpoint after recovery.
    async fn build(&self, name: &str, context: BuildContext) -> Result<BuiltSink, SinkError> {
        let BuildContext {
            committed,
            recover_within,
        } = context;
        let committed = match committed {
            None => None,
            Some(state) => FileCheckpoint::from_state(&state, &self.path)
                .map_err(|e| SinkError::permanent(name, e))?,
        };
        let (owned_name, path) = (name.to_owned(), self.path.clone());
        let (sink, checkpoint, recovery) = tokio::task::spawn_blocking(move || {
            FileSink::open(&owned_name, &path, committed, recover_within)
        })
        .await
        .map_err(|e| {
            SinkError::retryable(
                name,
                format!("opening {}: the task did not finish", self.path.display()),
            )
            .with_source(e)
        })??;
        let path = self.path.display();
        let mut recovered = Vec::new();
        match recovery {
            Recovery::CutTail { committed, found } => warn!(
                sink = %name, %path, committed, found,
                "Cut an uncommitted tail left by an interrupted run; those events will be delivered again."
            ),
            Recovery::StartedAfresh { reason } => {
                warn!(sink = %name, %path, %reason, "Starting the file afresh.");
            }
            Recovery::Recovered { records, cursors } => {
                info!(sink = %name, %path, records, services = cursors.len(),
                    "Recovered the sink's positions from its file: the state held nothing of it \
                     (lost or new). Services that have no record in the file start at their \
                     source's start_at.");
                recovered = cursors;
            }
            Recovery::Created | Recovery::Resumed => {}
        }
        let state = (committed != Some(checkpoint)).then(|| checkpoint.to_state(&self.path));
        Ok(BuiltSink {
            sink: Arc::new(sink),
            state,
            recovered,
        })
    }

    async fn check(&self, name: &str) -> Result<(), SinkError> {
        let (owned_name, path) = (name.to_owned(), self.path.clone());
        tokio::task::spawn_blocking(move || FileSink::check_path(&owned_name, &path))
            .await
            .map_err(|e| {
                SinkError::retryable(
                    name,
                    format!("checking {}: the task did not finish", self.path.display()),
                )
                .with_source(e)
            })?
    }
}
