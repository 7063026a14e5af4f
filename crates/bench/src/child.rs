//! Running one leg as a child process and measuring it the same way for every leg: wall
//! time from spawning the process until it is reaped (start-up and the last commit
//! included), and its peak resident set size (`ru_maxrss` from `wait4(2)`). stdout and
//! stderr go to files in the run's folder, never to pipes nobody reads while it runs.
//!
//! Why a spawner process: on Linux a child's `ru_maxrss` is at least the resident size of
//! the process that spawned it (with `fork` the child starts as a copy; with `vfork` or
//! `posix_spawn` it runs in the parent's memory until `exec`, and `exec` records the old
//! memory's peak as the child's). The benchmark itself holds the simulator's data, up to
//! hundreds of MiB, so its children would all report at least that. The children are
//! therefore started by a small process of their own (`bench spawner`, started first
//! thing, while the benchmark is small), whose own peak is the floor below which a child's
//! figure says nothing; the benchmark prints that floor.

// Reading the peak RSS of a child needs `wait4(2)`, which std does not wrap; the unsafe
// blocks are confined to `reap` below.
#![allow(unsafe_code)]

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Instant;

/// One child to run, in a form that crosses a pipe. Paths and arguments are text (the
/// benchmark's are temporary folders, binaries and numbers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub current_dir: PathBuf,
    pub env: Vec<(String, String)>,
    pub env_remove: Vec<String>,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Launch {
    /// `program`, run in `folder`, its stdout and stderr in `folder/NAME.stdout` and
    /// `folder/NAME.stderr`.
    pub fn in_folder(program: &Path, folder: &Path, name: &str) -> Launch {
        Launch {
            program: program.to_owned(),
            args: Vec::new(),
            current_dir: folder.to_owned(),
            env: Vec::new(),
            env_remove: Vec::new(),
            stdout: folder.join(format!("{name}.stdout")),
            stderr: folder.join(format!("{name}.stderr")),
        }
    }

    pub fn arg(mut self, arg: impl AsRef<str>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn path_arg(self, path: &Path) -> Self {
        self.arg(path.to_string_lossy())
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn env_remove(mut self, key: &str) -> Self {
        self.env_remove.push(key.to_owned());
        self
    }
}

/// What one finished child cost and said.
#[derive(Debug)]
pub struct Measured {
    pub seconds: f64,
    pub peak_rss_kib: u64,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Measured {
    /// Fails unless the child exited 0, quoting the end of its stderr.
    pub fn expect_success(&self, what: &str) -> anyhow::Result<()> {
        if self.status.success() {
            return Ok(());
        }
        let tail: Vec<&str> = self.stderr.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "{what} ended with {} (expected exit code 0); the end of its stderr:\n{}",
            self.status,
            tail.join("\n")
        )
    }
}

/// The spawner's answer to one [`Launch`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Reaped {
    /// The status as `wait4` gives it.
    raw_status: i32,
    seconds: f64,
    peak_rss_kib: u64,
    /// The spawner's own peak RSS: a child's figure is meaningful only above it.
    spawner_peak_kib: u64,
}

/// Starts children and measures them; see the module docs.
pub struct Spawner {
    mode: Mode,
    floor_kib: Mutex<u64>,
}

enum Mode {
    /// `bench spawner`, spoken to over its stdin and stdout, one JSON line each way.
    Process(Mutex<Connection>),
    /// This process starts the children itself (tests: the RSS figures are not clean).
    #[cfg_attr(not(test), allow(dead_code))]
    InProcess,
}

struct Connection {
    child: Child,
    /// `None` once closed, to end the spawner.
    input: Option<ChildStdin>,
    output: BufReader<ChildStdout>,
}

impl Spawner {
    /// Starts `bench spawner`. Call it before the benchmark grows.
    pub fn start() -> anyhow::Result<Spawner> {
        let exe = std::env::current_exe().context("cannot tell where the bench binary is")?;
        let mut child = Command::new(exe)
            .arg("spawner")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start the spawner")?;
        let (Some(input), Some(output)) = (child.stdin.take(), child.stdout.take()) else {
            bail!("the spawner has no pipes");
        };
        Ok(Spawner {
            mode: Mode::Process(Mutex::new(Connection {
                child,
                input: Some(input),
                output: BufReader::new(output),
            })),
            floor_kib: Mutex::new(0),
        })
    }

    /// A spawner that is this process (for tests).
    #[cfg(test)]
    pub fn in_process() -> Spawner {
        Spawner {
            mode: Mode::InProcess,
            floor_kib: Mutex::new(0),
        }
    }

    /// Runs `launch` to completion and returns what it cost and wrote.
    pub fn run(&self, launch: &Launch) -> anyhow::Result<Measured> {
        let reaped = match &self.mode {
            Mode::InProcess => run_here(launch)?,
            Mode::Process(connection) => {
                let mut connection = connection
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                connection.ask(launch)?
            }
        };
        let mut floor = self
            .floor_kib
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *floor = (*floor).max(reaped.spawner_peak_kib);
        use std::os::unix::process::ExitStatusExt;
        Ok(Measured {
            seconds: reaped.seconds,
            peak_rss_kib: reaped.peak_rss_kib,
            status: ExitStatus::from_raw(reaped.raw_status),
            stdout: std::fs::read_to_string(&launch.stdout).unwrap_or_default(),
            stderr: std::fs::read_to_string(&launch.stderr).unwrap_or_default(),
        })
    }

    /// The spawner's own peak RSS so far: no child's figure can be below it.
    pub fn floor_kib(&self) -> u64 {
        *self
            .floor_kib
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Connection {
    fn ask(&mut self, launch: &Launch) -> anyhow::Result<Reaped> {
        let mut line = serde_json::to_string(launch)?;
        line.push('\n');
        let input = self.input.as_mut().context("the spawner was closed")?;
        input
            .write_all(line.as_bytes())
            .and_then(|()| input.flush())
            .context("the spawner is gone")?;
        let mut answer = String::new();
        if self
            .output
            .read_line(&mut answer)
            .context("the spawner is gone")?
            == 0
        {
            bail!("the spawner ended without an answer");
        }
        let answer: Result<Reaped, String> = serde_json::from_str(&answer)
            .with_context(|| format!("the spawner answered {answer:?}"))?;
        answer.map_err(anyhow::Error::msg)
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        if let Mode::Process(connection) = &mut self.mode {
            let connection = connection
                .get_mut()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // The spawner ends at the end of its stdin; reap it, so that no zombie is left.
            drop(connection.input.take());
            let _ = connection.child.wait();
        }
    }
}

/// `bench spawner`: reads one [`Launch`] per line on stdin, runs it, and answers one line on
/// stdout, until stdin ends.
pub fn serve() -> anyhow::Result<()> {
    let stdin = std::io::stdin().lock();
    let stdout = std::io::stdout().lock();
    serve_on(stdin, stdout)
}

fn serve_on(input: impl BufRead, mut output: impl Write) -> anyhow::Result<()> {
    for line in input.lines() {
        let line = line.context("cannot read a request")?;
        let answer: Result<Reaped, String> = match serde_json::from_str::<Launch>(&line) {
            Ok(launch) => run_here(&launch).map_err(|error| format!("{error:#}")),
            Err(error) => Err(format!("not a launch request ({error}): {line:?}")),
        };
        let mut text = serde_json::to_string(&answer)?;
        text.push('\n');
        output.write_all(text.as_bytes())?;
        output.flush()?;
    }
    Ok(())
}

/// Starts `launch` from this process, reaps it, and measures it.
fn run_here(launch: &Launch) -> anyhow::Result<Reaped> {
    let stdout = std::fs::File::create(&launch.stdout)
        .with_context(|| format!("cannot create {}", launch.stdout.display()))?;
    let stderr = std::fs::File::create(&launch.stderr)
        .with_context(|| format!("cannot create {}", launch.stderr.display()))?;
    let mut command = Command::new(&launch.program);
    command
        .args(&launch.args)
        .current_dir(&launch.current_dir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    for key in &launch.env_remove {
        command.env_remove(key);
    }
    for (key, value) in &launch.env {
        command.env(key, value);
    }
    let started = Instant::now();
    let child = command
        .spawn()
        .with_context(|| format!("cannot start {}", launch.program.display()))?;
    let (raw_status, peak_rss_kib) = reap(&child)?;
    Ok(Reaped {
        raw_status,
        seconds: started.elapsed().as_secs_f64(),
        peak_rss_kib,
        spawner_peak_kib: own_peak_kib(),
    })
}

/// Waits for `child` with `wait4(2)`: its raw exit status and its peak RSS in KiB (Linux
/// reports `ru_maxrss` in KiB). The child must not have been waited for already.
fn reap(child: &Child) -> anyhow::Result<(i32, u64)> {
    let pid = i32::try_from(child.id()).context("a pid that does not fit in i32")?;
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is plain old data, valid when zeroed.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers are to live, writable locals of the right types.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            break;
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            bail!("wait4({pid}) failed: {error}");
        }
    }
    Ok((status, u64::try_from(usage.ru_maxrss).unwrap_or(0)))
}

/// This process's peak RSS (`VmHWM`), KiB; 0 where `/proc` does not say.
fn own_peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sh(folder: &Path, script: &str) -> Launch {
        Launch::in_folder(Path::new("sh"), folder, "sh")
            .arg("-c")
            .arg(script)
            .env("BENCH_TEST", "set")
            .env_remove("HOME")
    }

    #[test]
    fn a_child_is_measured_and_its_output_kept() {
        let folder = tempfile::tempdir().unwrap();
        let spawner = Spawner::in_process();
        let launch = sh(
            folder.path(),
            "echo $BENCH_TEST ${HOME:-unset}; pwd; echo err >&2; exit 3",
        );
        let measured = spawner.run(&launch).unwrap();
        assert_eq!(measured.status.code(), Some(3));
        let cwd = std::fs::canonicalize(folder.path()).unwrap();
        assert_eq!(measured.stdout, format!("set unset\n{}\n", cwd.display()));
        assert_eq!(measured.stderr, "err\n");
        assert!(measured.peak_rss_kib > 0);
        assert!(spawner.floor_kib() > 0);
        let error = measured.expect_success("sh").unwrap_err().to_string();
        assert!(error.contains("err"), "{error}");
    }

    #[test]
    fn the_spawner_answers_each_request_on_a_line() {
        let folder = tempfile::tempdir().unwrap();
        let good = serde_json::to_string(&sh(folder.path(), "exit 0")).unwrap();
        let missing = serde_json::to_string(&Launch::in_folder(
            Path::new("/nonexistent/program"),
            folder.path(),
            "x",
        ))
        .unwrap();
        let input = format!("{good}\n{missing}\nnot json\n");
        let mut output = Vec::new();
        serve_on(input.as_bytes(), &mut output).unwrap();
        let answers: Vec<Result<Reaped, String>> = String::from_utf8(output)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(answers.len(), 3);
        assert_eq!(answers[0].as_ref().unwrap().raw_status, 0);
        assert!(answers[1].as_ref().unwrap_err().contains("cannot start"));
        assert!(answers[2].as_ref().unwrap_err().contains("not a launch"));
    }

    #[test]
    fn own_peak_is_read_from_proc() {
        assert!(own_peak_kib() > 0);
    }
}
