//! The dead-letter file of one sink: records the destination refused for good, one JSON
//! line each, `{"record": …, "sink": …, "reason": …, "status": …, "time": …}`.
//!
//! Entries are appended and fsynced **before** the state commit that acknowledges their
//! records, so a rejected record is never just logged. That makes the file
//! at-least-once: a crash between the append and the commit repeats the entry on the
//! next run (`record.id` identifies it). Past `dead_letter_max_bytes` the file takes
//! nothing more and the sink fails for the run instead of dropping records.
//!
//! `runner dead-letter replay` offers the entries to the sink again and rewrites the file
//! with the ones that were not accepted (write to a temporary file, fsync, rename).

use record::{EventRecord, SharedRecord};
use serde::Deserialize;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Why the dead-letter file could not take or give entries.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("dead-letter file {}: cannot {action}: {source}", .path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    #[error(
        "dead-letter file {} would grow past dead_letter_max_bytes ({max} bytes; it holds {len}); \
         nothing more is written to it. Replay or move its entries, or raise the limit",
        .path.display()
    )]
    Full { path: PathBuf, len: u64, max: u64 },
}

/// One record refused for good, as the engine writes it.
#[derive(Debug, Clone)]
pub struct DeadLetterEntry {
    pub record: SharedRecord,
    pub reason: String,
    pub status: Option<u16>,
}

/// One line of the file, as read back.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct StoredDeadLetter {
    pub record: EventRecord,
    pub sink: String,
    pub reason: String,
    pub status: Option<u16>,
    pub time: String,
}

/// What reading the file found.
#[derive(Debug, Default)]
pub struct DeadLetters {
    /// The entries in file order, with their line numbers (1-based).
    pub entries: Vec<(usize, StoredDeadLetter)>,
    /// Lines that are not entries (a torn last line after a crash, or foreign text),
    /// with their line numbers; a rewrite keeps them.
    pub unreadable: Vec<(usize, String)>,
}

/// The dead-letter file of one sink.
#[derive(Debug, Clone)]
pub struct DeadLetterFile {
    sink: String,
    path: PathBuf,
    max_bytes: u64,
}

impl DeadLetterFile {
    pub fn new(sink: &str, path: PathBuf, max_bytes: u64) -> Self {
        DeadLetterFile {
            sink: sink.to_owned(),
            path,
            max_bytes,
        }
    }

    /// The dead-letter file a sink's settings name.
    pub fn for_sink(settings: &sink::SinkSettings) -> Self {
        DeadLetterFile::new(
            &settings.name,
            settings.options.dead_letter_path.clone(),
            settings.options.dead_letter_max_bytes,
        )
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The JSON line of one entry written now, with its newline.
    pub fn entry_line(&self, entry: &DeadLetterEntry) -> String {
        self.line(entry, &record::timestamp_rfc3339(record::now_ms()))
    }

    /// The JSON line of one entry, with its newline.
    fn line(&self, entry: &DeadLetterEntry, time: &str) -> String {
        // Strings serialize infallibly; the record's own JSON is spliced in as is.
        let text = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned());
        let status = entry
            .status
            .map_or_else(|| "null".to_owned(), |s| s.to_string());
        format!(
            "{{\"record\":{},\"sink\":{},\"reason\":{},\"status\":{status},\"time\":{}}}\n",
            entry.record.json_line(),
            text(&self.sink),
            text(&entry.reason),
            text(time),
        )
    }

    /// Appends `entries` with one write and fsyncs them (and the folder entry of a new
    /// file). Nothing is written when the file would grow past its limit. Blocking.
    pub fn append(&self, entries: &[DeadLetterEntry]) -> Result<(), DeadLetterError> {
        if entries.is_empty() {
            return Ok(());
        }
        let time = record::timestamp_rfc3339(record::now_ms());
        let bytes: String = entries.iter().map(|e| self.line(e, &time)).collect();
        let err = |action| {
            move |source| DeadLetterError::Io {
                path: self.path.clone(),
                action,
                source,
            }
        };
        let folder = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let existed = self.path.exists();
        if !existed {
            fs::create_dir_all(&folder).map_err(err("create its folder"))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(err("open"))?;
        let len = file.metadata().map_err(err("inspect"))?.len();
        // A crash mid-append leaves a torn line; the next entry starts its own.
        let newline = len > 0 && !ends_with_newline(&mut file, len).map_err(err("read"))?;
        let grown = len + u64::from(newline) + bytes.len() as u64;
        if grown > self.max_bytes {
            return Err(DeadLetterError::Full {
                path: self.path.clone(),
                len,
                max: self.max_bytes,
            });
        }
        if newline {
            file.write_all(b"\n").map_err(err("append to"))?;
        }
        file.write_all(bytes.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(err("append to"))?;
        if !existed {
            File::open(&folder)
                .and_then(|f| f.sync_all())
                .map_err(err("fsync the folder of"))?;
        }
        Ok(())
    }

    /// Every entry in the file (none when it does not exist). Blocking.
    pub fn read(&self) -> Result<DeadLetters, DeadLetterError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(DeadLetters::default()),
            Err(source) => {
                return Err(DeadLetterError::Io {
                    path: self.path.clone(),
                    action: "read",
                    source,
                });
            }
        };
        let mut found = DeadLetters::default();
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<StoredDeadLetter>(line) {
                Ok(entry) => found.entries.push((index + 1, entry)),
                Err(_) => found.unreadable.push((index + 1, line.to_owned())),
            }
        }
        Ok(found)
    }

    /// Replaces the file's content with `lines` (each without its newline) atomically:
    /// a temporary file beside it, fsynced, renamed over it. An empty list removes the
    /// file. Blocking.
    pub fn rewrite(&self, lines: &[String]) -> Result<(), DeadLetterError> {
        let err = |action| {
            move |source| DeadLetterError::Io {
                path: self.path.clone(),
                action,
                source,
            }
        };
        if lines.is_empty() {
            return match fs::remove_file(&self.path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(err("remove")(e)),
                _ => Ok(()),
            };
        }
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".rewrite");
        let temporary = self.path.with_file_name(name);
        let mut file = File::create(&temporary).map_err(err("write a new version of"))?;
        let mut text = lines.join("\n");
        text.push('\n');
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(err("write a new version of"))?;
        fs::rename(&temporary, &self.path).map_err(err("replace"))?;
        if let Some(folder) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            File::open(folder)
                .and_then(|f| f.sync_all())
                .map_err(err("fsync the folder of"))?;
        }
        Ok(())
    }
}

fn ends_with_newline(file: &mut File, len: u64) -> io::Result<bool> {
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry(info: &str, status: Option<u16>) -> DeadLetterEntry {
        DeadLetterEntry {
            record: SharedRecord::new(EventRecord::new(
                "prod",
                "svc",
                record::IdParts {
                    project_id: "p",
                    service_id: "s",
                    occur_time: 1_562_597_251_764,
                    event_type: "normal",
                    event_info: info,
                    twin: 1,
                },
            )),
            reason: format!("mapper_parsing_exception: \"{info}\""),
            status,
        }
    }

    #[test]
    fn entries_are_appended_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = DeadLetterFile::new("es", dir.path().join("dl/es.jsonl"), 1 << 20);
        file.append(&[entry("a\nb", Some(400)), entry("c", None)])
            .unwrap();
        file.append(&[entry("d", Some(409))]).unwrap();
        let read = file.read().unwrap();
        assert!(read.unreadable.is_empty());
        let got: Vec<_> = read
            .entries
            .iter()
            .map(|(line, e)| {
                (
                    *line,
                    e.record.event_info.as_str(),
                    e.status,
                    e.sink.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (1, "a\nb", Some(400), "es"),
                (2, "c", None, "es"),
                (3, "d", Some(409), "es")
            ]
        );
        assert_eq!(
            read.entries[0].1.reason,
            "mapper_parsing_exception: \"a\nb\""
        );
        assert_eq!(
            read.entries[0].1.record,
            entry("a\nb", None).record.record().clone()
        );
    }

    #[test]
    fn a_full_file_takes_nothing_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("es.jsonl");
        let file = DeadLetterFile::new("es", path.clone(), 600);
        file.append(&[entry("a", Some(400))]).unwrap();
        let before = fs::read(&path).unwrap();
        let error = file.append(&[entry("b", Some(400)), entry("c", Some(400))]);
        assert!(
            matches!(error, Err(DeadLetterError::Full { max: 600, .. })),
            "{error:?}"
        );
        assert!(
            error
                .unwrap_err()
                .to_string()
                .contains("dead_letter_max_bytes")
        );
        assert_eq!(
            fs::read(&path).unwrap(),
            before,
            "nothing of the refused append"
        );
    }

    #[test]
    fn a_torn_line_is_kept_apart_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("es.jsonl");
        let file = DeadLetterFile::new("es", path.clone(), 1 << 20);
        file.append(&[entry("a", Some(400))]).unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"record\":{\"id\":\"tor").unwrap();
        file.append(&[entry("b", Some(400))]).unwrap();
        let read = file.read().unwrap();
        assert_eq!(read.entries.len(), 2);
        assert_eq!(read.unreadable.len(), 1);
        assert_eq!(read.unreadable[0].0, 2);
    }

    #[test]
    fn rewrite_replaces_and_an_empty_rewrite_removes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("es.jsonl");
        let file = DeadLetterFile::new("es", path.clone(), 1 << 20);
        file.append(&[entry("a", Some(400)), entry("b", Some(400))])
            .unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let second = text.lines().nth(1).unwrap().to_owned();
        file.rewrite(std::slice::from_ref(&second)).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("{second}\n"));
        file.rewrite(&[]).unwrap();
        assert!(!path.exists());
        assert!(file.read().unwrap().entries.is_empty());
    }
}
