//! The file sink (`type = "file"`): JSON lines appended to one file, **exactly once even
//! across SIGKILL**.
//!
//! Every send appends the batch with one write and `fdatasync`s it, then hands back a
//! [`FileCheckpoint`] (length and identity of the file) as its sink state. The engine
//! commits that state in SQLite in the same transaction as the sink's positions. A
//! process killed after the fsync but before the commit leaves a tail the state does not
//! know about; [`FileSink::open`] cuts exactly that tail at start-up, and the engine
//! delivers those records again. When the commit itself fails, the engine calls
//! [`Sink::rollback`](crate::Sink::rollback), which cuts the tail at once. A file that
//! another tool rotated (new inode) or truncated (shorter than committed) is never cut:
//! the sink appends to it and reports [`Recovery::StartedAfresh`].
//!
//! The file belongs to the sink: bytes that another writer appends to the same inode after
//! the last commit are treated like an uncommitted tail and cut.

mod config;
mod recovery;
mod sink;

pub use config::FileConfig;
pub use sink::{FileCheckpoint, FileSink, Recovery, TAIL_BYTES};

use crate::{BatchSettings, SinkKind};
use std::time::Duration;

/// `type = "file"`. Each batch costs an `fdatasync` and a state commit; its size in
/// bytes bounds the memory a backfill holds.
pub const KIND: SinkKind = SinkKind {
    name: "file",
    batch: BatchSettings {
        max_events: 10_000,
        max_bytes: 1024 * 1024,
        timeout: Duration::from_secs(1),
    },
    read: config::read,
};
