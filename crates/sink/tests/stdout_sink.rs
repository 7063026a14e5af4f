//! The stdout sink through the `Sink` trait: what reaches the writer, and how a closed
//! pipe is reported.
#![allow(clippy::unwrap_used)]

use record::{EventRecord, SharedRecord};
use sink::{Sink, StdoutFormat, StdoutSink};
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

/// A writer the test can read back after the sink wrote into it.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

fn records() -> Vec<SharedRecord> {
    [
        EventRecord::new(
            "prod",
            "svc-name",
            record::IdParts {
                project_id: "p",
                service_id: "s1",
                occur_time: 1562597251764,
                event_type: "normal",
                event_info: "start to deploy service",
                twin: 1,
            },
        ),
        EventRecord::new(
            "prod",
            "svc-name",
            record::IdParts {
                project_id: "p",
                service_id: "s1",
                occur_time: 1562597251765,
                event_type: "abnormal",
                event_info: "deploy failed:\nimage pull error",
                twin: 1,
            },
        ),
    ]
    .into_iter()
    .map(SharedRecord::new)
    .collect()
}

#[tokio::test]
async fn json_format_writes_one_record_per_line() {
    let out = Captured::default();
    let sink = StdoutSink::with_writer("console", StdoutFormat::Json, Box::new(out.clone()));
    assert_eq!((sink.name(), sink.kind()), ("console", "stdout"));
    let batch = records();
    let delivery = sink.send(&batch).await.unwrap();
    assert!(delivery == sink::Delivery::all_accepted());

    let text = out.text();
    assert!(text.ends_with('\n'));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    let parsed: Vec<EventRecord> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let sent: Vec<EventRecord> = batch.iter().map(|r| r.record().clone()).collect();
    assert_eq!(parsed, sent);
    assert_eq!(lines[0], batch[0].to_json_line());
}

#[tokio::test]
async fn text_format_writes_human_lines() {
    let out = Captured::default();
    let sink = StdoutSink::with_writer("console", StdoutFormat::Text, Box::new(out.clone()));
    sink.send(&records()).await.unwrap();
    sink.flush().await.unwrap();
    assert_eq!(
        out.text(),
        "2019-07-08T14:47:31.764Z  normal    svc-name  start to deploy service\n\
         2019-07-08T14:47:31.765Z  ABNORMAL  svc-name  deploy failed:\\nimage pull error\n"
    );
}

#[tokio::test]
async fn empty_batch_writes_nothing() {
    let out = Captured::default();
    let sink = StdoutSink::with_writer("console", StdoutFormat::Json, Box::new(out.clone()));
    sink.send(&[]).await.unwrap();
    assert_eq!(out.text(), "");
}

#[tokio::test]
async fn closed_pipe_is_a_permanent_error() {
    let (reader, writer) = io::pipe().unwrap();
    drop(reader);
    let sink = StdoutSink::with_writer("console", StdoutFormat::Json, Box::new(writer));
    let err = sink.send(&records()).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert_eq!(err.sink(), "console");
    assert!(err.to_string().contains("stdout was closed"), "{err}");
}

#[tokio::test]
async fn open_pipe_receives_the_batch() {
    let (mut reader, writer) = io::pipe().unwrap();
    let sink = StdoutSink::with_writer("console", StdoutFormat::Json, Box::new(writer));
    sink.healthcheck().await.unwrap();
    sink.send(&records()).await.unwrap();
    drop(sink);
    let mut text = String::new();
    io::Read::read_to_string(&mut reader, &mut text).unwrap();
    assert_eq!(text.lines().count(), 2);
}
