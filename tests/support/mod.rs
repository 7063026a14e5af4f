//! The end-to-end harness: a temporary folder per test ([`Dir`]), a writer of real TOML
//! configurations pointing at an in-process simulator ([`ConfigText`]), a runner of the real
//! `runner` binary that captures stdout, stderr and the exit code ([`TestCommand`]), readers
//! of what the sinks wrote, and the peak memory of a child process ([`max_rss_kib`]).
//!
//! Shaped after ripgrep's `tests/util.rs`: each test gets its own folder and builds commands
//! against it, so tests run in parallel without sharing anything but the binary.

// Reading the peak RSS of a child needs `wait4(2)`, and sending SIGTERM/SIGINT needs
// `kill(2)`, and a terminal for stderr needs `openpty(3)`; all are plain libc calls with no
// safe wrapper in std. The unsafe blocks are confined to `max_rss_kib`, `send_signal` and
// `stderr_on_a_terminal` below.
#![allow(unsafe_code)]
// A harness: a test binary that includes it need not use every helper.
#![allow(dead_code)]

use serde_json::Value;
use simulator::{SimConfig, SimHandle, Simulator};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The binary under test.
pub const RUNNER: &str = env!("CARGO_BIN_EXE_runner");

/// How long any wait for a condition may last before the test fails: generous, because two
/// cores are shared by several builds; a passing test never waits this long.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Starts a simulator on 127.0.0.1 with a free port.
pub fn start_sim(config: SimConfig) -> SimHandle {
    Simulator::start("127.0.0.1:0".parse().expect("a socket address"), config)
        .expect("the simulator starts")
}

/// A simulator of `services` services with `events_per_service` events each, spread
/// realistically, from `seed`.
pub fn sim_with(services: usize, events_per_service: usize, seed: u64) -> SimHandle {
    start_sim(SimConfig {
        services,
        events_per_service,
        seed,
        ..SimConfig::default()
    })
}

/// A temporary folder for one test; removed when dropped (kept, and its path printed, if
/// `E2E_KEEP` is set).
pub struct Dir {
    root: PathBuf,
    _temp: Option<tempfile::TempDir>,
    outputs: AtomicUsize,
}

impl Dir {
    pub fn new(name: &str) -> Dir {
        let temp = tempfile::Builder::new()
            .prefix(&format!("runner-e2e-{name}-"))
            .tempdir()
            .expect("a temporary folder");
        let (root, temp) = if std::env::var_os("E2E_KEEP").is_some() {
            let kept = temp.keep();
            eprintln!("keeping {}", kept.display());
            (kept, None)
        } else {
            (temp.path().to_owned(), Some(temp))
        };
        Dir {
            root,
            _temp: temp,
            outputs: AtomicUsize::new(0),
        }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn join(&self, relative: &str) -> PathBuf {
        self.path().join(relative)
    }

    /// Writes `text` to `relative`, creating folders.
    pub fn write(&self, relative: &str, text: &str) -> PathBuf {
        let path = self.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create folders");
        }
        std::fs::write(&path, text).expect("write a file");
        path
    }

    /// Writes the configuration as `runner.toml` and returns its path.
    pub fn write_config(&self, config: &ConfigText) -> PathBuf {
        self.write("runner.toml", &config.render())
    }

    pub fn exists(&self, relative: &str) -> bool {
        self.join(relative).exists()
    }

    /// The bytes of a file; empty if it does not exist.
    pub fn read_bytes(&self, relative: &str) -> Vec<u8> {
        std::fs::read(self.join(relative)).unwrap_or_default()
    }

    /// A `runner` command with the working directory set to this folder.
    pub fn command(&self, args: &[&str]) -> TestCommand<'_> {
        self.command_of(Path::new(RUNNER), args)
    }

    /// The same as [`Dir::command`] with another `runner` binary (the benchmark runs an
    /// older build this way).
    pub fn command_of(&self, program: &Path, args: &[&str]) -> TestCommand<'_> {
        let mut command = Command::new(program);
        command.current_dir(self.path()).args(args);
        // Plain, uncoloured log lines on stderr, whatever the developer's environment says.
        // OUT_DIR is set by cargo and nextest for the tests of a package with a build script
        // (crates/runner/build.rs): a config's `${OUT_DIR}` must not find it.
        command
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .env_remove("RUNNER_CONFIG")
            .env_remove("OUT_DIR");
        TestCommand { command, dir: self }
    }

    /// `runner ARGS` as the unprivileged user `nobody` (uid and gid 65534), for tests of
    /// what an unwritable folder does: root may write anywhere. Needs the tests to run as
    /// root, and the test's folder open to `nobody`. The binary runs from a copy in this
    /// folder: the build's own may sit under a checkout `nobody` cannot enter (a clone in
    /// a `mktemp -d` folder, mode 0700).
    pub fn unprivileged_command(&self, args: &[&str]) -> TestCommand<'_> {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        let bin = self.join("bin");
        std::fs::create_dir_all(&bin).expect("a folder for the runner's copy");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))
            .expect("the copy's folder open to everyone");
        let runner = bin.join("runner");
        std::fs::copy(RUNNER, &runner).expect("a copy of the runner binary");
        std::fs::set_permissions(&runner, std::fs::Permissions::from_mode(0o755))
            .expect("the copy executable by everyone");
        let mut command = self.command_of(&runner, args);
        command.command.uid(65534).gid(65534);
        command
    }

    /// A fresh pair of file paths to send a spawned child's stdout and stderr to. Files
    /// rather than pipes: a child that writes a lot never blocks on a pipe nobody reads.
    fn output_files(&self) -> (PathBuf, PathBuf) {
        let n = self.outputs.fetch_add(1, Ordering::SeqCst);
        (
            self.join(&format!("child-{n}.stdout")),
            self.join(&format!("child-{n}.stderr")),
        )
    }
}

/// One `runner` invocation being built.
pub struct TestCommand<'a> {
    command: Command,
    dir: &'a Dir,
}

impl TestCommand<'_> {
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.command.env(key, value);
        self
    }

    pub fn env_remove(mut self, key: &str) -> Self {
        self.command.env_remove(key);
        self
    }

    /// Runs in `folder` instead of the test's folder (as cron does).
    pub fn current_dir(mut self, folder: &Path) -> Self {
        self.command.current_dir(folder);
        self
    }

    /// Runs to completion and captures everything.
    pub fn run(mut self) -> RunOutput {
        let output = self
            .command
            .stdin(Stdio::null())
            .output()
            .expect("the runner binary starts");
        RunOutput::new(
            output.status,
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Runs to completion and fails the test unless the exit code is `code`.
    pub fn expect_code(self, code: i32) -> RunOutput {
        let output = self.run();
        output.assert_code(code);
        output
    }

    /// Runs to completion with stdout a pipe whose reading end is already closed (a consumer
    /// such as `head` that went away): every write to stdout fails with EPIPE.
    pub fn run_with_stdout_closed(mut self) -> RunOutput {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let (_, stderr_path) = self.dir.output_files();
        let stderr = std::fs::File::create(&stderr_path).expect("a stderr file");
        let status = self
            .command
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(stderr)
            .status()
            .expect("the runner binary starts");
        RunOutput::new(
            status,
            String::new(),
            std::fs::read_to_string(&stderr_path).unwrap_or_default(),
        )
    }

    /// Starts the command in the background, its stdout and stderr going to files.
    pub fn spawn(mut self) -> Running {
        let (stdout_path, stderr_path) = self.dir.output_files();
        let stdout = std::fs::File::create(&stdout_path).expect("a stdout file");
        let stderr = std::fs::File::create(&stderr_path).expect("a stderr file");
        let child = self
            .command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("the runner binary starts");
        Running {
            child,
            stdout_path,
            stderr_path,
        }
    }
}

/// What a finished `runner` left: exit code (or signal), stdout, stderr.
#[derive(Debug)]
pub struct RunOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl RunOutput {
    fn new(status: ExitStatus, stdout: String, stderr: String) -> Self {
        RunOutput {
            status,
            stdout,
            stderr,
        }
    }

    /// The exit code; `None` if a signal ended the process.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn assert_code(&self, code: i32) {
        assert_eq!(
            self.code(),
            Some(code),
            "expected exit code {code}, got {:?}\n--- stderr ---\n{}\n--- stdout (first 2000 bytes) ---\n{}",
            self.status,
            self.stderr,
            self.stdout.chars().take(2000).collect::<String>()
        );
    }

    /// The stdout lines parsed as JSON; fails on any line that is not an object.
    pub fn stdout_json(&self) -> Vec<Value> {
        parse_json_lines(&self.stdout, "stdout")
    }

    /// The per-service summary lines printed on stderr.
    pub fn summaries(&self) -> Vec<Summary> {
        summaries(&self.stderr)
    }

    /// Fails if anything on stderr looks like a panic.
    pub fn assert_no_panic(&self) {
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("RUST_BACKTRACE"),
            "the runner panicked:\n{}",
            self.stderr
        );
    }
}

/// A `runner` started in the background.
pub struct Running {
    pub child: Child,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

impl Running {
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("a pid fits in i32")
    }

    /// Whether it has exited (reaping it if so).
    pub fn has_exited(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_some()
    }

    /// SIGKILL, then reap.
    pub fn kill(mut self) -> RunOutput {
        // An error means it already exited; either way, reap it below.
        let _ = self.child.kill();
        self.wait()
    }

    /// Sends `signal` (libc::SIGTERM, libc::SIGINT…) without waiting.
    pub fn signal(&self, signal: i32) {
        send_signal(self.pid(), signal);
    }

    /// Waits for the exit (failing the test after [`PATIENCE`]) and collects its output.
    pub fn wait(self) -> RunOutput {
        self.wait_within(PATIENCE)
            .unwrap_or_else(|(running, waited)| {
                let pid = running.pid();
                send_signal(pid, libc::SIGKILL);
                panic!(
                    "runner (pid {pid}) still running after {waited:?}\n--- stderr ---\n{}",
                    std::fs::read_to_string(&running.stderr_path).unwrap_or_default()
                )
            })
    }

    /// Waits at most `limit`; gives itself back if the child is still running then.
    pub fn wait_within(mut self, limit: Duration) -> Result<RunOutput, (Running, Duration)> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Ok(self.output(status));
            }
            if started.elapsed() > limit {
                return Err((self, started.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits for the exit with `wait4(2)` and returns the output with the peak resident set
    /// size of the child in KiB (Linux reports `ru_maxrss` in KiB).
    pub fn wait_with_max_rss_kib(self) -> (RunOutput, i64) {
        let (status, rss) = max_rss_kib(&self.child);
        (self.output(status), rss)
    }

    /// What the child has written to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    fn output(&self, status: ExitStatus) -> RunOutput {
        RunOutput::new(
            status,
            std::fs::read_to_string(&self.stdout_path).unwrap_or_default(),
            std::fs::read_to_string(&self.stderr_path).unwrap_or_default(),
        )
    }
}

/// Reaps `child` with `wait4(2)`: its exit status and its peak RSS in KiB. The child must not
/// have been waited for already; afterwards it must not be waited for again.
pub fn max_rss_kib(child: &Child) -> (ExitStatus, i64) {
    use std::os::unix::process::ExitStatusExt;
    let pid = i32::try_from(child.id()).expect("a pid fits in i32");
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
        assert_eq!(
            error.kind(),
            std::io::ErrorKind::Interrupted,
            "wait4({pid}) failed: {error}"
        );
    }
    // `c_long` is 64 bits here but 32 on other targets.
    #[allow(clippy::useless_conversion)]
    let max_rss = i64::from(usage.ru_maxrss);
    (ExitStatus::from_raw(status), max_rss)
}

/// `kill(2)`.
pub fn send_signal(pid: i32, signal: i32) {
    // SAFETY: kill has no memory-safety preconditions; the pid is our own child's.
    let result = unsafe { libc::kill(pid, signal) };
    assert!(
        result == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH),
        "kill({pid}, {signal}) failed: {}",
        std::io::Error::last_os_error()
    );
}

/// Polls `condition` every 2 ms until it holds; fails the test after [`PATIENCE`] with `what`.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < PATIENCE,
            "gave up after {PATIENCE:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A configuration file's text, built from parts. Values are TOML fragments as written in
/// the file (`"\"5ms\""`, `"50"`, `"[\"a\"]"`).
#[derive(Clone)]
pub struct ConfigText {
    state_path: String,
    runner: Vec<(String, String)>,
    sources: Vec<SourceText>,
    sinks: Vec<SinkText>,
}

#[derive(Clone)]
struct SourceText {
    name: String,
    keys: Vec<(String, String)>,
    auth: Vec<(String, String)>,
}

#[derive(Clone)]
struct SinkText {
    name: String,
    keys: Vec<(String, String)>,
}

/// A TOML basic string.
/// `runner state --config CONFIG --json`, which must exit 0.
pub fn state_json(dir: &Dir, config_arg: &str) -> Value {
    let output = dir
        .command(&["state", "--config", config_arg, "--json"])
        .expect_code(0);
    serde_json::from_str(output.stdout.trim()).unwrap()
}

pub fn toml_str(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

/// A TOML array of basic strings.
pub fn toml_list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|item| toml_str(item)).collect();
    format!("[{}]", items.join(", "))
}

impl ConfigText {
    /// A config with state at `state/events.db`, one source named `sim` following every
    /// service of `sim`, fast retries and no rate limit to speak of, and no sinks.
    pub fn for_sim(sim: &SimHandle) -> ConfigText {
        ConfigText {
            state_path: "state/events.db".to_owned(),
            runner: Vec::new(),
            sources: Vec::new(),
            sinks: Vec::new(),
        }
        .with_source("sim", sim, &sim.service_ids())
    }

    /// Adds a source named `name` for `services` of `sim`.
    pub fn with_source(mut self, name: &str, sim: &SimHandle, services: &[String]) -> Self {
        let keys = vec![
            ("type".to_owned(), toml_str("modelarts")),
            ("endpoint".to_owned(), toml_str(&sim.base_url())),
            ("project_id".to_owned(), toml_str(&sim.project_id())),
            ("services".to_owned(), toml_list(services)),
            ("request_timeout".to_owned(), toml_str("10s")),
            ("max_requests_per_second".to_owned(), "1000".to_owned()),
            ("max_retries".to_owned(), "8".to_owned()),
            ("retry_initial_backoff".to_owned(), toml_str("5ms")),
            ("retry_max_backoff".to_owned(), toml_str("50ms")),
        ];
        let auth = vec![
            ("type".to_owned(), toml_str("token")),
            ("token".to_owned(), toml_str(&sim.token())),
        ];
        self.sources.push(SourceText {
            name: name.to_owned(),
            keys,
            auth,
        });
        self
    }

    /// Sets (or replaces) a key of every source.
    pub fn source_key(mut self, key: &str, value: &str) -> Self {
        for source in &mut self.sources {
            set_key(&mut source.keys, key, value);
        }
        self
    }

    /// Sets (or replaces) a key of every source's `auth` table.
    pub fn auth_key(mut self, key: &str, value: &str) -> Self {
        for source in &mut self.sources {
            set_key(&mut source.auth, key, value);
        }
        self
    }

    /// Sets `[state] path` (relative to the config's folder).
    pub fn state_path(mut self, path: &str) -> Self {
        self.state_path = path.to_owned();
        self
    }

    /// Sets a key of `[runner]`.
    pub fn runner_key(mut self, key: &str, value: &str) -> Self {
        set_key(&mut self.runner, key, value);
        self
    }

    /// Adds a `file` sink writing `path` (relative to the config's folder).
    pub fn file_sink(mut self, name: &str, path: &str) -> Self {
        self.sinks.push(SinkText {
            name: name.to_owned(),
            keys: vec![
                ("type".to_owned(), toml_str("file")),
                ("path".to_owned(), toml_str(path)),
            ],
        });
        self
    }

    /// Adds a sink of `kind` with `keys` (TOML fragments as written in the file).
    pub fn sink(mut self, name: &str, kind: &str, keys: &[(&str, String)]) -> Self {
        let mut all = vec![("type".to_owned(), toml_str(kind))];
        all.extend(keys.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        self.sinks.push(SinkText {
            name: name.to_owned(),
            keys: all,
        });
        self
    }

    /// Adds a `stdout` sink (JSON lines).
    pub fn stdout_sink(mut self, name: &str) -> Self {
        self.sinks.push(SinkText {
            name: name.to_owned(),
            keys: vec![("type".to_owned(), toml_str("stdout"))],
        });
        self
    }

    /// Sets a key of sink `name`.
    pub fn sink_key(mut self, name: &str, key: &str, value: &str) -> Self {
        let sink = self
            .sinks
            .iter_mut()
            .find(|sink| sink.name == name)
            .expect("the sink exists");
        set_key(&mut sink.keys, key, value);
        self
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        writeln!(text, "[state]\npath = {}\n", toml_str(&self.state_path)).unwrap();
        if !self.runner.is_empty() {
            writeln!(text, "[runner]").unwrap();
            for (key, value) in &self.runner {
                writeln!(text, "{key} = {value}").unwrap();
            }
            writeln!(text).unwrap();
        }
        for source in &self.sources {
            writeln!(text, "[sources.{}]", source.name).unwrap();
            for (key, value) in &source.keys {
                writeln!(text, "{key} = {value}").unwrap();
            }
            writeln!(text, "\n[sources.{}.auth]", source.name).unwrap();
            for (key, value) in &source.auth {
                writeln!(text, "{key} = {value}").unwrap();
            }
            writeln!(text).unwrap();
        }
        for sink in &self.sinks {
            writeln!(text, "[sinks.{}]", sink.name).unwrap();
            for (key, value) in &sink.keys {
                writeln!(text, "{key} = {value}").unwrap();
            }
            writeln!(text).unwrap();
        }
        text
    }
}

fn set_key(keys: &mut Vec<(String, String)>, key: &str, value: &str) {
    match keys.iter_mut().find(|(existing, _)| existing == key) {
        Some(entry) => entry.1 = value.to_owned(),
        None => keys.push((key.to_owned(), value.to_owned())),
    }
}

/// Parses JSON lines; a line that is not a JSON object (a torn write) fails the test.
pub fn parse_json_lines(text: &str, what: &str) -> Vec<Value> {
    try_parse_json_lines(text).unwrap_or_else(|problem| panic!("{what}: {problem}"))
}

/// Parses JSON lines, saying what is wrong with the first bad one.
pub fn try_parse_json_lines(text: &str) -> Result<Vec<Value>, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        let tail: String = text
            .chars()
            .rev()
            .take(200)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(format!(
            "the last line is not terminated (torn write): {tail:?}"
        ));
    }
    text.lines()
        .enumerate()
        .map(|(number, line)| {
            let shown = || line.chars().take(300).collect::<String>();
            match serde_json::from_str::<Value>(line) {
                Ok(value) if value.is_object() => Ok(value),
                Ok(_) => Err(format!(
                    "line {} is not an object: {:?}",
                    number + 1,
                    shown()
                )),
                Err(error) => Err(format!(
                    "line {} is not JSON ({error}): {:?}",
                    number + 1,
                    shown()
                )),
            }
        })
        .collect()
}

/// The records of a JSON-lines file; empty if the file does not exist.
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).expect("the file sink writes UTF-8"),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => panic!("cannot read {}: {error}", path.display()),
    };
    parse_json_lines(&text, &path.display().to_string())
}

/// One event as the comparison sees it: (service_id, occur_time, event_type, event_info).
pub type EventKey = (String, i64, String, String);

/// The ground truth of `services` as a sorted multiset.
pub fn truth(sim: &SimHandle, services: &[String]) -> Vec<EventKey> {
    let mut all: Vec<EventKey> = services
        .iter()
        .flat_map(|service| {
            sim.events(service)
                .into_iter()
                .map(|(time, kind, info)| (service.clone(), time, kind, info))
        })
        .collect();
    all.sort();
    all
}

/// The records as a sorted multiset of [`EventKey`].
pub fn keys_of(records: &[Value]) -> Vec<EventKey> {
    let mut all: Vec<EventKey> = records
        .iter()
        .map(|record| {
            (
                record["service_id"]
                    .as_str()
                    .expect("service_id")
                    .to_owned(),
                record["occur_time"].as_i64().expect("occur_time"),
                record["event_type"]
                    .as_str()
                    .expect("event_type")
                    .to_owned(),
                record["event_info"]
                    .as_str()
                    .expect("event_info")
                    .to_owned(),
            )
        })
        .collect();
    all.sort();
    all
}

/// Asserts `records` hold exactly the events of `expected`, each once: the same multiset of
/// fields and as many distinct ids as records.
pub fn assert_exactly_once(records: &[Value], expected: &[EventKey], what: &str) {
    let got = keys_of(records);
    if got != expected {
        let mut counts: BTreeMap<&EventKey, i64> = BTreeMap::new();
        for key in expected {
            *counts.entry(key).or_default() += 1;
        }
        for key in &got {
            *counts.entry(key).or_default() -= 1;
        }
        let missing: Vec<_> = counts.iter().filter(|(_, n)| **n > 0).take(5).collect();
        let extra: Vec<_> = counts.iter().filter(|(_, n)| **n < 0).take(5).collect();
        panic!(
            "{what}: {} records, expected {}; missing (first 5): {missing:?}; duplicated or unexpected (first 5): {extra:?}",
            got.len(),
            expected.len()
        );
    }
    let ids: std::collections::HashSet<&str> = records
        .iter()
        .map(|record| record["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), records.len(), "{what}: ids are not distinct");
}

/// One line of the end-of-run summary:
/// `SOURCE/SERVICE (NAME): fetched F, new N, delivered a=1 b=2, malformed M, failed K …`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub source: String,
    pub service_id: String,
    pub fetched: u64,
    pub new: u64,
    pub delivered: HashMap<String, u64>,
    pub malformed: u64,
    pub failed: u64,
}

/// The summary lines in `stderr`, in order.
pub fn summaries(stderr: &str) -> Vec<Summary> {
    stderr.lines().filter_map(parse_summary).collect()
}

fn parse_summary(line: &str) -> Option<Summary> {
    let (head, rest) = line.split_once(": fetched ")?;
    let (source, service) = head.split_once('/')?;
    let service_id = service.split(' ').next()?.to_owned();
    let mut summary = Summary {
        source: source.to_owned(),
        service_id,
        ..Summary::default()
    };
    let rest = format!("fetched {rest}");
    for part in rest.split(", ") {
        let (name, value) = part.split_once(' ')?;
        match name {
            "fetched" => summary.fetched = value.parse().ok()?,
            "new" => summary.new = value.parse().ok()?,
            "malformed" => summary.malformed = value.parse().ok()?,
            "failed" => summary.failed = value.split(' ').next()?.parse().ok()?,
            "delivered" if value == "-" => {}
            "delivered" => {
                for pair in value.split(' ') {
                    let (sink, count) = pair.split_once('=')?;
                    summary
                        .delivered
                        .insert(sink.to_owned(), count.parse().ok()?);
                }
            }
            _ => {}
        }
    }
    Some(summary)
}

/// How many runs (`sync`) or polls (`run`) have ended in `stderr`: each ends with one
/// total line (`total: fetched …`, `total (dry run…`). A poll of `run` that brought nothing
/// prints no per-service lines, so count polls with this, not with [`summaries`].
pub fn cycles(stderr: &str) -> usize {
    stderr
        .lines()
        .filter(|line| line.starts_with("total: ") || line.starts_with("total (dry run"))
        .count()
}

/// The sum of what the summaries say was delivered to `sink`.
pub fn delivered_to(summaries: &[Summary], sink: &str) -> u64 {
    summaries
        .iter()
        .map(|summary| summary.delivered.get(sink).copied().unwrap_or(0))
        .sum()
}

// Helpers for configurations with several sources that differ in their keys and auth (the
// real-cloud access tests): the setters above change every source at once.
impl ConfigText {
    /// Removes a key of every source (for example `services` or `project_id`).
    pub fn remove_source_key(mut self, key: &str) -> Self {
        for source in &mut self.sources {
            source.keys.retain(|(existing, _)| existing != key);
        }
        self
    }

    /// Replaces the whole `auth` table of source `name` with `keys` (TOML fragments).
    pub fn auth_of(mut self, name: &str, keys: &[(&str, String)]) -> Self {
        self.source_mut(name).auth = keys
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.clone()))
            .collect();
        self
    }

    fn source_mut(&mut self, name: &str) -> &mut SourceText {
        self.sources
            .iter_mut()
            .find(|source| source.name == name)
            .expect("the source exists")
    }
}

/// How many times `needle` occurs in `haystack`.
pub fn occurrences(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// Runs `runner ARGS` in `dir` with stderr a pseudo-terminal (stdin and stdout to
/// /dev/null) and returns what it wrote there. `RUST_LOG` and `NO_COLOR` are removed first;
/// then each of `env` is set (`Some`) or removed (`None`).
pub fn stderr_on_a_terminal(dir: &Dir, args: &[&str], env: &[(&str, Option<&str>)]) -> String {
    use std::io::Read;
    use std::os::fd::{FromRawFd, OwnedFd};
    let (mut leader, mut follower): (libc::c_int, libc::c_int) = (-1, -1);
    // SAFETY: the two out-pointers are to live locals; name, termios and winsize may be null.
    let opened = unsafe {
        libc::openpty(
            &mut leader,
            &mut follower,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty succeeded, so both are open descriptors that nothing else owns.
    let (leader, follower) =
        unsafe { (OwnedFd::from_raw_fd(leader), OwnedFd::from_raw_fd(follower)) };
    let mut command = Command::new(RUNNER);
    command
        .current_dir(dir.path())
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(follower));
    for (key, value) in env {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    // Read while it runs: a terminal's buffer is small.
    let reader = std::thread::spawn(move || {
        let mut leader = std::fs::File::from(leader);
        let mut bytes = Vec::new();
        let mut chunk = [0_u8; 4096];
        // Once the child has exited and no one holds the follower, the read fails (EIO).
        while let Ok(n) = leader.read(&mut chunk) {
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&chunk[..n]);
        }
        bytes
    });
    let status = command.status().expect("the runner binary starts");
    // `command` holds the follower until it is dropped.
    drop(command);
    assert_eq!(status.code(), Some(0), "runner {}", args.join(" "));
    String::from_utf8_lossy(&reader.join().unwrap()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lines_parse() {
        let line = "prod/35de3ca9-1bca-4ae7-9cb0-914f30fa7d3e (zcj): fetched 12, new 3, delivered archive=3 console=2, malformed 1, failed 1 [console: broken pipe]";
        let summary = parse_summary(line).unwrap();
        assert_eq!(summary.source, "prod");
        assert_eq!(summary.service_id, "35de3ca9-1bca-4ae7-9cb0-914f30fa7d3e");
        assert_eq!(
            (
                summary.fetched,
                summary.new,
                summary.malformed,
                summary.failed
            ),
            (12, 3, 1, 1)
        );
        assert_eq!(summary.delivered.get("console"), Some(&2));
        let idle =
            parse_summary("s/x: fetched 0, new 0, delivered -, malformed 0, failed 0").unwrap();
        assert!(idle.delivered.is_empty());
        assert!(parse_summary("INFO something else").is_none());
    }

    #[test]
    fn torn_and_non_object_lines_fail() {
        assert_eq!(try_parse_json_lines("{\"a\":1}\n").unwrap().len(), 1);
        assert!(try_parse_json_lines("").unwrap().is_empty());
        let torn = try_parse_json_lines("{\"a\":1}\n{\"b\"").unwrap_err();
        assert!(torn.contains("torn"), "{torn}");
        let cut = try_parse_json_lines("{\"a\":1}\n{\"b\n").unwrap_err();
        assert!(cut.contains("line 2"), "{cut}");
        assert!(try_parse_json_lines("[1]\n").is_err());
    }

    #[test]
    fn config_text_is_toml() {
        let sim = start_sim(SimConfig::default());
        let text = ConfigText::for_sim(&sim)
            .file_sink("archive", "out/events.jsonl")
            .stdout_sink("console")
            .sink_key(
                "console",
                "event_types",
                &toml_list(&["abnormal".to_owned()]),
            )
            .runner_key("interval", &toml_str("200ms"))
            .render();
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(
            parsed["sinks"]["archive"]["path"].as_str(),
            Some("out/events.jsonl")
        );
        assert_eq!(
            parsed["sources"]["sim"]["auth"]["token"].as_str(),
            Some(sim.token().as_str())
        );
    }
}
