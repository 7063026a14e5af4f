//! The stdout sink itself: the encoder (JSON lines, or text for people) and the blocking
//! writes, kept off the async threads.

use crate::{Delivery, SharedRecord, Sink, SinkError};
use record::EventRecord;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::Arc;
use tokio::sync::Mutex;

/// How the stdout sink renders a record (`format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StdoutFormat {
    /// The record as one compact JSON object per line (the default).
    #[default]
    Json,
    /// `timestamp  type  service  info`, abnormal events in capitals, control characters
    /// escaped so one record stays one line.
    Text,
}

type SharedWriter = Arc<Mutex<Box<dyn Write + Send>>>;

/// Writes records to standard output (or any writer, for tests). At least once.
pub struct StdoutSink {
    name: String,
    format: StdoutFormat,
    writer: SharedWriter,
}

impl StdoutSink {
    /// A sink writing to the process's standard output.
    pub fn new(name: &str, format: StdoutFormat) -> Self {
        Self::with_writer(name, format, Box::new(io::stdout()))
    }

    /// A sink writing to `writer` instead of standard output.
    pub fn with_writer(name: &str, format: StdoutFormat, writer: Box<dyn Write + Send>) -> Self {
        StdoutSink {
            name: name.to_owned(),
            format,
            writer: Arc::new(Mutex::new(writer)),
        }
    }

    /// The rendering this sink uses.
    pub fn format(&self) -> StdoutFormat {
        self.format
    }

    fn encode(&self, batch: &[SharedRecord]) -> Vec<u8> {
        match self.format {
            // One buffer for the batch, each line serialized straight into it.
            StdoutFormat::Json => {
                let mut out = Vec::with_capacity(record::json_lines_capacity(batch));
                for record in batch {
                    record.write_json_line(&mut out);
                    out.push(b'\n');
                }
                out
            }
            StdoutFormat::Text => {
                let mut out = String::with_capacity(batch.len() * 256);
                for record in batch {
                    push_text_line(&mut out, record);
                    out.push('\n');
                }
                out.into_bytes()
            }
        }
    }

    /// Runs a blocking write on the shared writer: a full pipe blocks, and that must not
    /// stall the async worker threads.
    async fn with_writer_blocking<F>(&self, action: &'static str, f: F) -> Result<(), SinkError>
    where
        F: FnOnce(&mut (dyn Write + Send)) -> io::Result<()> + Send + 'static,
    {
        let mut writer = self.writer.clone().lock_owned().await;
        let outcome = tokio::task::spawn_blocking(move || f(&mut **writer)).await;
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.io_error(action, e)),
            Err(join) => Err(SinkError::retryable(
                &self.name,
                format!("{action} stdout: the writing task did not finish"),
            )
            .with_source(join)),
        }
    }

    fn io_error(&self, action: &str, e: io::Error) -> SinkError {
        if e.kind() == io::ErrorKind::BrokenPipe {
            // The reader is gone (`runner sync | head`); nothing will ever read again.
            SinkError::permanent(
                &self.name,
                format!("stdout was closed by the reading process ({e})"),
            )
        } else {
            SinkError::retryable(&self.name, format!("{action} stdout: {e}"))
        }
        .with_source(e)
    }
}

/// Renders `2019-07-08T14:47:31.764Z  normal    svc-name  event info`.
fn push_text_line(out: &mut String, record: &EventRecord) {
    push_escaped(out, &record.timestamp);
    out.push_str("  ");
    // Abnormal events page humans; capitals make them stand out in a scrolling terminal.
    let kind = if record.event_type.eq_ignore_ascii_case("abnormal") {
        "ABNORMAL".to_owned()
    } else {
        let mut kind = String::new();
        push_escaped(&mut kind, &record.event_type);
        kind
    };
    let _ = write!(out, "{kind:<8}  ");
    let service = if record.service_name.is_empty() {
        &record.service_id
    } else {
        &record.service_name
    };
    push_escaped(out, service);
    out.push_str("  ");
    push_escaped(out, &record.event_info);
}

/// Appends `text` with control characters (and Unicode line/paragraph separators)
/// escaped, so a record can never span or forge lines. Other characters, including
/// non-ASCII text, are kept as they are.
fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

#[async_trait::async_trait]
impl Sink for StdoutSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "stdout"
    }

    /// Flushing an empty buffer proves the descriptor is still usable without writing
    /// anything a reader would see.
    async fn healthcheck(&self) -> Result<(), SinkError> {
        self.with_writer_blocking("flush", |w| w.flush()).await
    }

    async fn send(&self, batch: &[SharedRecord]) -> Result<Delivery, SinkError> {
        if batch.is_empty() {
            return Ok(Delivery::all_accepted());
        }
        let bytes = self.encode(batch);
        self.with_writer_blocking("write to", move |w| {
            w.write_all(&bytes)?;
            w.flush()
        })
        .await?;
        Ok(Delivery::all_accepted())
    }

    async fn flush(&self) -> Result<(), SinkError> {
        self.with_writer_blocking("flush", |w| w.flush()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(event_type: &str, info: &str) -> EventRecord {
        EventRecord::new(
            "prod",
            "svc-name",
            record::IdParts {
                project_id: "p",
                service_id: "35de3ca9",
                occur_time: 1562597251764,
                event_type,
                event_info: info,
                twin: 1,
            },
        )
    }

    fn text(record: &EventRecord) -> String {
        let mut out = String::new();
        push_text_line(&mut out, record);
        out
    }

    #[test]
    fn text_line_has_columns() {
        assert_eq!(
            text(&record("normal", "start to deploy service")),
            "2019-07-08T14:47:31.764Z  normal    svc-name  start to deploy service"
        );
    }

    #[test]
    fn text_line_marks_abnormal() {
        assert_eq!(
            text(&record("abnormal", "deploy failed")),
            "2019-07-08T14:47:31.764Z  ABNORMAL  svc-name  deploy failed"
        );
    }

    #[test]
    fn text_line_escapes_control_characters_but_keeps_unicode() {
        let line = text(&record("normal", "a\nb\r\tc\u{1b}[31md\u{2028}e 部署"));
        assert!(!line.contains('\n') && !line.contains('\r') && !line.contains('\u{1b}'));
        assert!(
            line.ends_with("a\\nb\\r\\tc\\u{001b}[31md\\u{2028}e 部署"),
            "{line}"
        );
    }

    #[test]
    fn text_line_falls_back_to_service_id() {
        let mut r = record("WARNING", "x");
        r.service_name = "".into();
        assert_eq!(text(&r), "2019-07-08T14:47:31.764Z  WARNING   35de3ca9  x");
    }
}
