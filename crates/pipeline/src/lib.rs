//! The deduplicating pipeline and its delivery engine: pull each followed service from
//! the oldest position any of its sinks needs, turn rows into records, hand every sink
//! what it does not have yet, and commit each sink's positions after that sink
//! acknowledged them.
//!
//! # Shape
//!
//! - A **service job** ([`job`]) per followed service pulls pages
//!   ([`source::ServicePull`], read one batch ahead in its own task), builds each record
//!   once ([`record::SharedRecord`]: shared by every sink, its JSON line made at most
//!   once), and *offers* each sink what its cursor says it lacks, over that sink's
//!   bounded channel.
//! - A **sink driver** ([`driver`]) per sink forms batches **across services**, bounded
//!   by the sink's `batch.max_events`, `batch.max_bytes` and `batch.timeout`; it sends
//!   them (at most `request.concurrency` at once), retries within the run, writes
//!   rejected records to the sink's dead-letter file ([`dead_letter`]), and commits the
//!   positions of what was acknowledged in one SQLite transaction per batch, in the order
//!   the batches were formed. A batch is sent when it is full, when its timeout passes,
//!   or as soon as every job feeding the driver is waiting on it or done, so a one-shot
//!   `sync` never waits for a timer at the end.
//!
//! # Guarantees
//!
//! - **Prefix rule.** A cursor commits only the acknowledged-or-dead-lettered prefix of
//!   what was offered for it, in `occur_time` order ([`ledger`]): a record waiting for a
//!   retry holds its service's position for that sink; records acknowledged after it are
//!   fingerprinted, so they are not sent again when the position is re-read.
//! - **One sink's trouble stays its own.** A sink whose channel stays full for longer
//!   than its `batch.timeout` is left behind by the pull; it keeps its position and
//!   catches up after the other sinks are done (or next run). A sink that fails
//!   (retries spent, or a permanent error) fails once for the cycle, keeps its
//!   positions, and the others go on.
//! - **Dead letters before the commit.** Rejected records are appended and fsynced to
//!   the dead-letter file before the transaction that acknowledges them.
//! - **A failed commit rolls the sink back** ([`sink::Sink::rollback`]: the file sink cuts
//!   back to its committed length) and fails it for the cycle.

pub mod dead_letter;
pub mod driver;
pub mod error;
pub mod job;
pub mod ledger;
mod prefetch;
pub mod preview;
pub mod replay;
pub mod report;
pub mod run;
pub mod sinks;
pub mod state;

// The simulator's source settings the engine tests use, shared with the unit tests.
#[cfg(test)]
#[path = "../tests/support/sim_settings.rs"]
mod sim_settings;

pub use dead_letter::{DeadLetterEntry, DeadLetterFile};
pub use error::{ServiceFailure, SinkFailure, SourceFailure, StateFailure};
pub use preview::DryRunPreview;
pub use report::{RunReport, ServiceSummary, SinkSummary, Totals};
pub use run::{Followed, Mode, Pipeline, Selection, SourceRuntime};
pub use sinks::{SINK_HOLD, SinkRuntime};
pub use state::StateHandle;
