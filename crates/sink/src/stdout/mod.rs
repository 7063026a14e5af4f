//! The stdout sink (`type = "stdout"`): one record per line on standard output, as JSON
//! (for `jq` and pipes) or as text (for people watching a terminal).
//!
//! Delivery is **at least once**: a record is acknowledged once its bytes are written and
//! flushed to the stdout file descriptor, but a crash between that write and the state
//! commit repeats the batch on the next run. Standard output has no way to take a line
//! back. A closed stdout (`runner sync | head`) fails the sink for the run; its positions
//! stay where they were.

mod config;
mod sink;

pub use config::StdoutConfig;
pub use sink::{StdoutFormat, StdoutSink};

use crate::{BatchSettings, SinkKind};
use std::time::Duration;

/// `type = "stdout"`. Batches are small: people read this output as it comes.
pub const KIND: SinkKind = SinkKind {
    name: "stdout",
    batch: BatchSettings {
        max_events: 1000,
        max_bytes: 1024 * 1024,
        timeout: Duration::from_secs(1),
    },
    read: config::read,
};
