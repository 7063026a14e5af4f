//! The keys of a file sink (`path`), and opening it with start-up recovery.

use super::{FileCheckpoint, FileSink, Recovery};
use crate::config::{
    BuiltSink, ConfigContext, ReadError, SinkConfig, Table, WrittenPath, deserialize,
};
use crate::{SinkError, SinkState};
use serde::Deserialize;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use toml::Spanned;
use tracing::warn;

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
    /// uncommitted tail); the state to commit is the checkpoint after recovery.
    async fn build(
        &self,
        name: &str,
        committed: Option<SinkState>,
    ) -> Result<BuiltSink, SinkError> {
        let committed = match committed {
            None => None,
            Some(state) => FileCheckpoint::from_state(&state, &self.path)
                .map_err(|e| SinkError::permanent(name, e))?,
        };
        let (owned_name, path) = (name.to_owned(), self.path.clone());
        let (sink, checkpoint, recovery) =
            tokio::task::spawn_blocking(move || FileSink::open(&owned_name, &path, committed))
                .await
                .map_err(|e| {
                    SinkError::retryable(
                        name,
                        format!("opening {}: the task did not finish", self.path.display()),
                    )
                    .with_source(e)
                })??;
        let path = self.path.display();
        match &recovery {
            Recovery::CutTail { committed, found } => warn!(
                sink = %name, %path, committed, found,
                "Cut an uncommitted tail left by an interrupted run; those events will be delivered again."
            ),
            Recovery::StartedAfresh { reason } => {
                warn!(sink = %name, %path, %reason, "Starting the file afresh.");
            }
            Recovery::Created | Recovery::Resumed => {}
        }
        let state = (committed != Some(checkpoint)).then(|| checkpoint.to_state(&self.path));
        Ok(BuiltSink {
            sink: Arc::new(sink),
            state,
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
