//! `runner sync --dry-run --sink NAME`: what one sink would send, rendered by the sink
//! kind ([`sink::SinkConfig::preview`]) instead of printed as records.
//!
//! The records the sink would receive are gathered, as the engine does, into batches of
//! its `batch.max_events` across services; each full batch is rendered and printed at
//! once, so a long dry run holds one batch, not the backlog. A kind with nothing to
//! render (`preview` gives `None`) prints the batch's records as JSON lines.

use record::SharedRecord;
use sink::SinkConfig;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// The batch being gathered for one sink's preview.
pub struct DryRunPreview {
    config: Arc<dyn SinkConfig>,
    max_events: usize,
    pending: Mutex<Vec<SharedRecord>>,
}

impl DryRunPreview {
    pub fn new(config: Arc<dyn SinkConfig>, max_events: usize) -> Self {
        DryRunPreview {
            config,
            max_events: max_events.max(1),
            pending: Mutex::new(Vec::new()),
        }
    }

    /// Adds records the sink would receive; prints each batch they fill.
    pub fn add(&self, records: impl IntoIterator<Item = SharedRecord>) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for record in records {
            pending.push(record);
            if pending.len() == self.max_events {
                let batch = std::mem::take(&mut *pending);
                self.print(&batch);
            }
        }
    }

    /// Prints what is left: the last, partly filled batch.
    pub fn finish(&self) {
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if !batch.is_empty() {
            self.print(&batch);
        }
    }

    fn print(&self, batch: &[SharedRecord]) {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let written = match self.config.preview(batch) {
            Some(preview) => write!(out, "{preview}"),
            None => batch
                .iter()
                .try_for_each(|record| writeln!(out, "{}", record.json_line())),
        };
        // A closed stdout (`| head`) ends the output, not the run.
        if written.is_ok() {
            let _ = out.flush();
        }
    }
}
