//! The file sink itself: appends with one write and an `fdatasync` per batch, start-up
//! recovery against the committed checkpoint, and rollback to it when a commit fails.

use crate::config::RecoveredCursor;
use crate::{Delivery, SharedRecord, Sink, SinkError, SinkState};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tracing::{error, warn};

/// What the engine commits for a file sink: the length and which file it belongs to.
/// `dev` and `ino` are the device and inode numbers (0 on platforms without them, where
/// only the length protects the file). `tail` identifies the committed content: a hash
/// of its last [`TAIL_BYTES`] bytes, so that a file another writer truncated and grew
/// again past the committed length is recognised and never cut in the middle of its
/// lines (`None` in a state written before it existed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileCheckpoint {
    pub len: u64,
    pub dev: u64,
    pub ino: u64,
    pub tail: Option<u64>,
}

/// How many bytes before the committed length the tail hash covers.
pub const TAIL_BYTES: u64 = 4096;

/// A [`FileCheckpoint`] as JSON in the state file, with the path it was taken for.
/// Device and inode numbers are stored bit for bit as signed integers (SQLite's), since
/// they are identities, not quantities, and may use the top bit.
#[derive(Serialize, Deserialize)]
struct StoredCheckpoint {
    path: String,
    len: u64,
    dev: i64,
    ino: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tail: Option<u64>,
}

impl FileCheckpoint {
    /// The checkpoint as the sink state committed for the file at `path`.
    pub fn to_state(&self, path: &Path) -> SinkState {
        let stored = StoredCheckpoint {
            path: path.to_string_lossy().into_owned(),
            len: self.len,
            dev: self.dev.cast_signed(),
            ino: self.ino.cast_signed(),
            tail: self.tail,
        };
        // A struct of a string and integers always serializes.
        SinkState(serde_json::to_string(&stored).unwrap_or_default())
    }

    /// The checkpoint committed for the file at `path`: `Ok(None)` when the state was
    /// taken for another path (the config changed; it says nothing about this file).
    pub fn from_state(state: &SinkState, path: &Path) -> Result<Option<FileCheckpoint>, String> {
        let stored: StoredCheckpoint = serde_json::from_str(&state.0)
            .map_err(|e| format!("the committed file sink state is not readable ({e})"))?;
        if stored.path != path.to_string_lossy() {
            return Ok(None);
        }
        Ok(Some(FileCheckpoint {
            len: stored.len,
            dev: stored.dev.cast_unsigned(),
            ino: stored.ino.cast_unsigned(),
            tail: stored.tail,
        }))
    }
}

/// What [`FileSink::open`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// No checkpoint, and the file did not exist or was empty: a fresh start.
    Created,
    /// The file is exactly as committed.
    Resumed,
    /// The file was longer than committed (a run killed between fsync and the state
    /// commit); the bytes from `committed` to `found` were cut and must be re-delivered.
    CutTail { committed: u64, found: u64 },
    /// The file is not the one committed (replaced, truncated, missing, its committed
    /// content changed) or there is no checkpoint for a non-empty file; nothing was cut,
    /// writing continues at its end.
    StartedAfresh { reason: String },
    /// No checkpoint and no position at all (the state was lost): the positions were
    /// recovered from the file's own records, and writing continues at its end.
    Recovered {
        records: u64,
        cursors: Vec<RecoveredCursor>,
    },
}

/// Appends records as JSON lines to a file, fsyncing every batch.
pub struct FileSink {
    name: String,
    path: PathBuf,
    state: Arc<Mutex<OpenFile>>,
}

/// The open file and what the sink knows about it; guarded so sends never interleave.
struct OpenFile {
    file: File,
    /// Length after the last successful append (or recovery), and the file's identity.
    checkpoint: FileCheckpoint,
    /// The checkpoint at open, where a rollback without a committed state goes back to.
    opened: FileCheckpoint,
}

impl FileSink {
    /// Opens (creating file and parent folders) and recovers against the committed checkpoint:
    /// - same file (dev+ino) and longer than committed: cut the uncommitted tail back to
    ///   `committed.len` (a run killed between fsync and the state commit); the cut events
    ///   get re-delivered by the runner.
    /// - same file, equal length: resume.
    /// - a different file (new inode: rotated by another tool), a missing file, or one
    ///   shorter than committed (truncated by another tool): never cut; append at its
    ///   current end; report `StartedAfresh` with the reason.
    /// - same file, at least as long as committed, but the committed content is not what
    ///   the sink wrote (its tail hash differs: another writer truncated and regrew it):
    ///   never cut; `StartedAfresh`.
    /// - no checkpoint: append at the current end (`Created` if the file did not exist or
    ///   was empty). A non-empty file is scanned for the positions it records when
    ///   `recover_within` is given (the state holds nothing of the sink: `Recovered`, or an
    ///   error if the file is not the sink's own output), otherwise `StartedAfresh`.
    ///
    /// Where writing continues after a file that does not end with a newline (a torn line
    /// left by another writer), a newline is added first so the next record starts its own
    /// line. Returns the checkpoint to store now.
    ///
    /// This does blocking file I/O; call it from `spawn_blocking` inside a runtime.
    pub fn open(
        name: &str,
        path: &Path,
        committed: Option<FileCheckpoint>,
        recover_within: Option<Duration>,
    ) -> Result<(FileSink, FileCheckpoint, Recovery), SinkError> {
        let (mut file, existed) = open_for_append(name, path)?;
        let meta = file
            .metadata()
            .map_err(|e| io_error(name, path, "inspect", e))?;
        let found = identity(meta.len(), &meta);
        let changed = match committed {
            Some(c) if (c.dev, c.ino) == (found.dev, found.ino) && found.len >= c.len => {
                !tail_matches(&mut file, c).map_err(|e| io_error(name, path, "read", e))?
            }
            _ => false,
        };
        let recovery = match committed {
            None if !existed || found.len == 0 => Recovery::Created,
            None if recover_within.is_some() => {
                let window = recover_within.unwrap_or_default();
                let (cursors, records) =
                    super::recovery::scan(name, path, &mut file, found.len, window)?;
                Recovery::Recovered { records, cursors }
            }
            None => Recovery::StartedAfresh {
                reason: format!(
                    "no committed length for this sink; appending after the {} bytes already in the file",
                    found.len
                ),
            },
            Some(_) if !existed => Recovery::StartedAfresh {
                reason: "the file was missing (moved or deleted); created a new one".to_owned(),
            },
            Some(c) if (c.dev, c.ino) != (found.dev, found.ino) => Recovery::StartedAfresh {
                reason: format!(
                    "the file was replaced by another one (inode {} on device {}, committed inode {} on device {}); nothing cut",
                    found.ino, found.dev, c.ino, c.dev
                ),
            },
            Some(c) if found.len < c.len => Recovery::StartedAfresh {
                reason: format!(
                    "the file was truncated by another tool ({} bytes, committed {}); nothing cut",
                    found.len, c.len
                ),
            },
            Some(_) if changed => Recovery::StartedAfresh {
                reason: "the content the sink committed was changed by another writer (its last \
                         bytes differ); nothing cut"
                    .to_owned(),
            },
            Some(c) if found.len > c.len => {
                cut_to(&file, c.len)
                    .map_err(|e| io_error(name, path, "cut the uncommitted tail of", e))?;
                Recovery::CutTail {
                    committed: c.len,
                    found: found.len,
                }
            }
            Some(_) => Recovery::Resumed,
        };
        let len = match recovery {
            Recovery::CutTail { committed, .. } => committed,
            Recovery::StartedAfresh { .. } => end_with_newline(&mut file, found.len)
                .map_err(|e| io_error(name, path, "append a newline to", e))?,
            Recovery::Created | Recovery::Resumed | Recovery::Recovered { .. } => found.len,
        };
        let tail = tail_hash(&mut file, len).map_err(|e| io_error(name, path, "read", e))?;
        let checkpoint = FileCheckpoint {
            len,
            tail: Some(tail),
            ..found
        };
        let sink = FileSink {
            name: name.to_owned(),
            path: path.to_owned(),
            state: Arc::new(Mutex::new(OpenFile {
                file,
                checkpoint,
                opened: checkpoint,
            })),
        };
        Ok((sink, checkpoint, recovery))
    }

    /// Checks, without opening a sink, that `path` can be appended to: creates missing
    /// parent folders and the file (as the first send would) and opens it for appending.
    /// Nothing is written into an existing file.
    pub fn check_path(name: &str, path: &Path) -> Result<(), SinkError> {
        open_for_append(name, path).map(|_| ())
    }

    /// The file this sink writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The checkpoint after the last successful send (or the recovery).
    pub async fn checkpoint(&self) -> FileCheckpoint {
        self.state.lock().await.checkpoint
    }
}

impl OpenFile {
    /// Appends `bytes` durably and returns the new checkpoint. On failure the file is cut
    /// back to its previous length, so a failed send never leaves a torn line.
    fn append(
        &mut self,
        name: &str,
        path: &Path,
        bytes: &[u8],
    ) -> Result<FileCheckpoint, SinkError> {
        self.follow_replacement(name, path)?;
        let meta = self
            .file
            .metadata()
            .map_err(|e| io_error(name, path, "inspect", e))?;
        let expected = self.checkpoint.len;
        if meta.len() > expected
            && !tail_matches(&mut self.file, self.checkpoint)
                .map_err(|e| io_error(name, path, "read", e))?
        {
            // Another writer truncated the file and wrote past our length: the bytes
            // before it are not ours either. Never cut a file we did not write.
            warn!(sink = %name, path = %path.display(), found = meta.len(), expected,
                "File was rewritten by another writer; appending at its end, nothing cut.");
            self.checkpoint.len = end_with_newline(&mut self.file, meta.len())
                .map_err(|e| io_error(name, path, "append a newline to", e))?;
        } else if meta.len() > expected {
            // Bytes we did not acknowledge: a cut that failed earlier, or another writer.
            // Start-up would cut them too; do it now so lines stay whole.
            warn!(sink = %name, path = %path.display(), found = meta.len(), expected,
                "File is longer than the sink wrote; cutting the unacknowledged bytes.");
            cut_to(&self.file, expected).map_err(|e| io_error(name, path, "cut", e))?;
        } else if meta.len() < expected {
            warn!(sink = %name, path = %path.display(), found = meta.len(), expected,
                "File was truncated by another tool; appending at its new end.");
            self.checkpoint.len = end_with_newline(&mut self.file, meta.len())
                .map_err(|e| io_error(name, path, "append a newline to", e))?;
        }
        let base = self.checkpoint.len;
        if let Err(e) = self
            .file
            .write_all(bytes)
            .and_then(|()| self.file.sync_data())
        {
            // After a failed fsync the kernel may already have dropped the dirty pages, so
            // the written bytes cannot be trusted either: cut back in both cases.
            if let Err(cut) = cut_to(&self.file, base) {
                // The next send, or start-up recovery (committed length), cuts it instead.
                error!(sink = %name, path = %path.display(), error = %cut, len = base,
                    "Could not cut a failed write back; the file may hold a torn line until the next send.");
            }
            return Err(io_error(name, path, "append to", e));
        }
        let len = self
            .file
            .metadata()
            .map_err(|e| io_error(name, path, "inspect", e))?
            .len();
        self.checkpoint.len = len;
        self.checkpoint.tail =
            Some(tail_hash(&mut self.file, len).map_err(|e| io_error(name, path, "read", e))?);
        Ok(self.checkpoint)
    }

    /// Goes back to `committed` (the last checkpoint the engine committed): the bytes
    /// written after it are cut, so that the re-delivery of their records next run does
    /// not duplicate them. The in-memory length goes back even when the cut fails, so the
    /// next append (or start-up recovery) cuts instead. A file that is no longer the one
    /// committed (rotated meanwhile) is left alone.
    fn rollback(
        &mut self,
        name: &str,
        path: &Path,
        committed: FileCheckpoint,
    ) -> Result<(), SinkError> {
        if (committed.dev, committed.ino) != (self.checkpoint.dev, self.checkpoint.ino) {
            return Ok(());
        }
        if committed.len >= self.checkpoint.len
            || !tail_matches(&mut self.file, committed)
                .map_err(|e| io_error(name, path, "read", e))?
        {
            return Ok(());
        }
        let written = self.checkpoint.len;
        self.checkpoint = committed;
        cut_to(&self.file, committed.len).map_err(|e| io_error(name, path, "cut back", e))?;
        warn!(sink = %name, path = %path.display(), committed = committed.len, written,
            "Cut the file back to its committed length; those events will be delivered again.");
        Ok(())
    }

    /// Reopens the path if another tool moved or replaced the file while we run
    /// (logrotate `create` mode), so records go where the user looks for them.
    fn follow_replacement(&mut self, name: &str, path: &Path) -> Result<(), SinkError> {
        let current = match fs::metadata(path) {
            Ok(meta) => Some(identity(meta.len(), &meta)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_error(name, path, "inspect", e)),
        };
        if current.is_some_and(|c| (c.dev, c.ino) == (self.checkpoint.dev, self.checkpoint.ino)) {
            return Ok(());
        }
        warn!(sink = %name, path = %path.display(), "File was moved or replaced; reopening the path.");
        let (mut file, _) = open_for_append(name, path)?;
        let meta = file
            .metadata()
            .map_err(|e| io_error(name, path, "inspect", e))?;
        let len = end_with_newline(&mut file, meta.len())
            .map_err(|e| io_error(name, path, "append a newline to", e))?;
        self.file = file;
        self.checkpoint = identity(len, &meta);
        self.checkpoint.tail =
            Some(tail_hash(&mut self.file, len).map_err(|e| io_error(name, path, "read", e))?);
        Ok(())
    }
}

/// Creates missing parent folders and opens `path` for appending. Returns whether the
/// file existed before. A new file's folder entry is fsynced, because `fdatasync` on the
/// file alone does not make its name durable.
fn open_for_append(name: &str, path: &Path) -> Result<(File, bool), SinkError> {
    let existed = match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            return Err(SinkError::permanent(
                name,
                format!("{} is a directory, not a file", path.display()),
            ));
        }
        Ok(_) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(io_error(name, path, "inspect", e)),
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !existed {
        fs::create_dir_all(parent).map_err(|e| io_error(name, parent, "create the folder", e))?;
    }
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| io_error(name, path, "open", e))?;
    if !existed {
        sync_folder(parent).map_err(|e| io_error(name, parent, "fsync the folder", e))?;
    }
    Ok((file, existed))
}

#[cfg(unix)]
fn sync_folder(folder: &Path) -> io::Result<()> {
    File::open(folder)?.sync_all()
}

#[cfg(not(unix))]
fn sync_folder(_folder: &Path) -> io::Result<()> {
    // Folders cannot be opened as files here; the file system orders the entry itself.
    Ok(())
}

#[cfg(unix)]
fn identity(len: u64, meta: &Metadata) -> FileCheckpoint {
    use std::os::unix::fs::MetadataExt;
    FileCheckpoint {
        len,
        dev: meta.dev(),
        ino: meta.ino(),
        tail: None,
    }
}

#[cfg(not(unix))]
fn identity(len: u64, _meta: &Metadata) -> FileCheckpoint {
    FileCheckpoint {
        len,
        dev: 0,
        ino: 0,
        tail: None,
    }
}

/// A hash of the last [`TAIL_BYTES`] bytes before `len` (SHA-256, the first 8 bytes):
/// stable across versions, unlike the standard library's hasher.
fn tail_hash(file: &mut File, len: u64) -> io::Result<u64> {
    let start = len.saturating_sub(TAIL_BYTES);
    let mut bytes = vec![0u8; usize::try_from(len - start).unwrap_or(0)];
    file.seek(SeekFrom::Start(start))?;
    file.read_exact(&mut bytes)?;
    let digest = Sha256::digest(&bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    Ok(u64::from_be_bytes(first))
}

/// Whether the content before `committed.len` is still what was committed (true when
/// the checkpoint has no tail hash to compare, or the file is shorter).
fn tail_matches(file: &mut File, committed: FileCheckpoint) -> io::Result<bool> {
    let Some(expected) = committed.tail else {
        return Ok(true);
    };
    if file.metadata()?.len() < committed.len {
        return Ok(true);
    }
    Ok(tail_hash(file, committed.len)? == expected)
}

/// Truncates to `len` and makes the cut durable before anything is appended after it.
fn cut_to(file: &File, len: u64) -> io::Result<()> {
    file.set_len(len)?;
    file.sync_data()
}

/// Makes sure the `len`-byte file ends with a newline (or is empty), so the next record
/// starts its own line. Returns the resulting length.
fn end_with_newline(file: &mut File, len: u64) -> io::Result<u64> {
    if len == 0 {
        return Ok(0);
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(len);
    }
    // The file is opened in append mode, so this lands at the end whatever the position.
    file.write_all(b"\n")?;
    file.sync_data()?;
    Ok(len + 1)
}

/// Maps an I/O error to a sink error naming the sink and the path. Errors a retry cannot
/// fix without a human (permissions, a file where a folder should be) are permanent.
fn io_error(name: &str, path: &Path, action: &str, e: io::Error) -> SinkError {
    let message = format!("cannot {action} {}: {e}", path.display());
    let error = match e.kind() {
        io::ErrorKind::PermissionDenied
        | io::ErrorKind::NotADirectory
        | io::ErrorKind::IsADirectory
        | io::ErrorKind::ReadOnlyFilesystem
        | io::ErrorKind::InvalidFilename
        | io::ErrorKind::InvalidInput => SinkError::permanent(name, message),
        _ => SinkError::retryable(name, message),
    };
    error.with_source(e)
}

impl FileSink {
    /// Runs `f` on the open file in a blocking task. The guard moves into the task, so a
    /// cancelled call still finishes (or cuts back) its write before the next one starts.
    async fn with_file<T: Send + 'static>(
        &self,
        action: &str,
        f: impl FnOnce(&mut OpenFile, &str, &Path) -> Result<T, SinkError> + Send + 'static,
    ) -> Result<T, SinkError> {
        let mut state = self.state.clone().lock_owned().await;
        let (name, path) = (self.name.clone(), self.path.clone());
        tokio::task::spawn_blocking(move || f(&mut state, &name, &path))
            .await
            .map_err(|e| {
                SinkError::retryable(
                    &self.name,
                    format!("{action} {}: the task did not finish", self.path.display()),
                )
                .with_source(e)
            })?
    }
}

#[async_trait::async_trait]
impl Sink for FileSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        super::KIND.name
    }

    async fn healthcheck(&self) -> Result<(), SinkError> {
        self.with_file("checking", |_, name, path| FileSink::check_path(name, path))
            .await
    }

    /// Appends the batch as JSON lines with one write, fsyncs, and returns the checkpoint
    /// to commit. Nothing is acknowledged on error, and the file is left as it was.
    async fn send(&self, batch: &[SharedRecord]) -> Result<Delivery, SinkError> {
        // One buffer for the batch, each line serialized straight into it.
        let mut bytes = Vec::with_capacity(record::json_lines_capacity(batch));
        for record in batch {
            record.write_json_line(&mut bytes);
            bytes.push(b'\n');
        }
        let checkpoint = self
            .with_file("appending to", move |file, name, path| {
                if bytes.is_empty() {
                    Ok(file.checkpoint)
                } else {
                    file.append(name, path, &bytes)
                }
            })
            .await?;
        Ok(Delivery {
            state: Some(checkpoint.to_state(&self.path)),
            ..Delivery::default()
        })
    }

    async fn rollback(&self, committed: Option<&SinkState>) -> Result<(), SinkError> {
        let committed = match committed {
            None => None,
            Some(state) => FileCheckpoint::from_state(state, &self.path)
                .map_err(|e| SinkError::permanent(&self.name, e))?,
        };
        self.with_file("cutting back", move |file, name, path| {
            let to = committed.unwrap_or(file.opened);
            file.rollback(name, path, to)
        })
        .await
    }
}
