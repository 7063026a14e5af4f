//! The state file as the async side sees it: one [`CheckpointStore`] behind a mutex,
//! every call on a blocking thread, so SQLite's fsyncs never stall the async workers.

use crate::error::StateFailure;
use source::checkpoint::{
    CheckpointStore, Commit, CursorKey, CursorState, SinkStateRow, StateError,
};
use std::sync::{Arc, Mutex};

/// The state file, shared by every task.
#[derive(Clone)]
pub struct StateHandle {
    store: Arc<Mutex<CheckpointStore>>,
}

impl StateHandle {
    pub fn new(store: CheckpointStore) -> Self {
        StateHandle {
            store: Arc::new(Mutex::new(store)),
        }
    }

    /// Runs `f` on the store on a blocking thread.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut CheckpointStore) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, StateFailure> {
        let store = self.store.clone();
        let result = tokio::task::spawn_blocking(move || {
            // A poisoned lock means another call panicked mid-way; SQLite's own
            // transactions keep the file consistent, so the store is still usable.
            let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut store)
        })
        .await?;
        Ok(result?)
    }

    /// The stored cursors of `keys`, in order, read in one call.
    pub async fn cursors(
        &self,
        keys: Vec<CursorKey>,
    ) -> Result<Vec<Option<CursorState>>, StateFailure> {
        self.call(move |s| keys.iter().map(|key| s.cursor(key)).collect())
            .await
    }

    /// The committed row of `sink`, if any.
    pub async fn sink_state(&self, sink: String) -> Result<Option<SinkStateRow>, StateFailure> {
        self.call(move |s| s.sink_state(&sink)).await
    }

    /// Writes one acknowledgement in one transaction.
    pub async fn commit(&self, commit: Commit) -> Result<(), StateFailure> {
        self.call(move |s| s.commit(&commit)).await
    }
}
