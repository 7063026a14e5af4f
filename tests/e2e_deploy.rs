//! End-to-end tests of installing and deploying the runner: `--version` with the git
//! commit, `completions` and `man`, and the files of `config/deploy/` (systemd units
//! parsed as INI, Kubernetes manifests parsed as YAML, the Dockerfile read instruction by
//! instruction; nothing is built or started). Every command line these files give the
//! runner is handed to the real binary, and every configuration they carry is validated
//! by it, so a file cannot name a flag, a subcommand or a config key that does not exist.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::{Dir, RUNNER};
use yaml_serde::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn deploy(relative: &str) -> PathBuf {
    repo().join("config/deploy").join(relative)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Where every deployment expects the configuration, and the file shipped for it.
const CONFIG_PATH: &str = "/etc/runner/runner.toml";
const SHIPPED_CONFIG: &str = "config/deploy/runner.toml";

// ---- --version, completions, man ----

#[test]
fn version_names_the_package_and_the_commit() {
    let dir = Dir::new("version");
    let output = dir.command(&["--version"]).expect_code(0);
    let line = output.stdout.trim();
    assert!(line.starts_with("runner 0.1.0"), "{line}");
    let head = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(repo())
        .output();
    match head {
        Ok(head) if head.status.success() && repo().join(".git").exists() => {
            let commit = String::from_utf8_lossy(&head.stdout).trim().to_owned();
            assert!(!commit.is_empty());
            assert!(
                line.contains(&format!("({commit}")),
                "{line} lacks {commit}"
            );
        }
        _ => eprintln!("note: not a git checkout (or no git): the commit part is not checked"),
    }
    // Every subcommand answers --version the same way.
    let sync = dir.command(&["sync", "--version"]).expect_code(0);
    assert!(
        sync.stdout.contains(line.trim_start_matches("runner ")),
        "{}",
        sync.stdout
    );
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let dir = Dir::new("completions");
    let bash = dir.command(&["completions", "bash"]).expect_code(0).stdout;
    let script = dir.write("runner.bash", &bash);
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        syntax.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    // Sourced, it registers a completion for `runner`.
    let registered = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source '{}' && complete -p runner",
            script.display()
        ))
        .output()
        .unwrap();
    let registered_text = String::from_utf8_lossy(&registered.stdout);
    assert!(
        registered.status.success() && registered_text.contains("runner"),
        "{registered_text}{}",
        String::from_utf8_lossy(&registered.stderr)
    );
    for command in commands() {
        let last = command.split(' ').next_back().unwrap();
        assert!(bash.contains(last), "bash completion lacks {command}");
    }
    let zsh = dir.command(&["completions", "zsh"]).expect_code(0).stdout;
    assert!(zsh.starts_with("#compdef runner"), "{zsh}");
    let fish = dir.command(&["completions", "fish"]).expect_code(0).stdout;
    assert!(fish.contains("complete -c runner"), "{fish}");
    assert!(fish.contains("dead-letter") && zsh.contains("dead-letter"));

    let unknown = dir.command(&["completions", "tcsh"]).expect_code(2);
    assert!(unknown.stderr.contains("tcsh"), "{}", unknown.stderr);
}

#[test]
fn the_man_page_documents_every_command() {
    let dir = Dir::new("man");
    let page = dir.command(&["man"]).expect_code(0).stdout;
    assert!(
        page.starts_with(".TH runner 1"),
        "{}",
        &page[..200.min(page.len())]
    );
    let commands = commands();
    assert!(commands.len() >= 10, "{commands:?}");
    for command in &commands {
        let heading = format!(".SH \"RUNNER {}\"", command.to_uppercase());
        assert!(
            page.contains(&heading),
            "{heading} missing from the man page"
        );
    }
    assert!(page.contains(".SH \"EXIT STATUS\""));
    assert!(page.contains("143"), "the exit codes are in the page");
}

#[test]
fn completions_and_man_stop_quietly_on_a_closed_stdout() {
    let dir = Dir::new("closed");
    for args in [
        &["man"][..],
        &["completions", "bash"],
        &["completions", "fish"],
    ] {
        let output = dir.command(args).run_with_stdout_closed();
        output.assert_no_panic();
        output.assert_code(0);
        assert!(output.stderr.is_empty(), "{args:?}: {}", output.stderr);
    }
}

/// Every command `--help` lists, recursively (`sync`, …, `state reset`, `dead-letter show`),
/// without `help`.
fn commands() -> Vec<String> {
    fn walk(path: &[String], into: &mut Vec<String>) {
        let output = Command::new(RUNNER)
            .args(path)
            .arg("--help")
            .env_remove("RUNNER_CONFIG")
            .output()
            .unwrap();
        assert!(output.status.success(), "{path:?} --help");
        let help = String::from_utf8_lossy(&output.stdout).into_owned();
        let Some((_, listed)) = help.split_once("Commands:\n") else {
            return;
        };
        for line in listed.lines().take_while(|line| !line.trim().is_empty()) {
            let Some(name) = line.split_whitespace().next() else {
                continue;
            };
            if name == "help" {
                continue;
            }
            let mut sub = path.to_vec();
            sub.push(name.to_owned());
            into.push(sub.join(" "));
            walk(&sub, into);
        }
    }
    let mut commands = Vec::new();
    walk(&[], &mut commands);
    commands
}

// ---- checks shared by the deployment files ----

/// Fails unless the real binary parses `args` (a subcommand and its flags; a path or
/// value needs not exist). `runner ARGS --help` reads every argument before the help, so a
/// misspelt flag or a bad value exits 2 while a good command line prints its help.
fn assert_cli_accepts(args: &[String], what: &str) {
    let output = Command::new(RUNNER)
        .args(args)
        .arg("--help")
        .env_remove("RUNNER_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what}: runner {args:?} is not a valid command line:\n{stderr}"
    );
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("Usage: runner"), "{what}: {help}");
}

/// The value after `flag` in `args`.
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let at = args.iter().position(|arg| arg == flag)?;
    args.get(at + 1).map(String::as_str)
}

/// Fails unless `runner validate` accepts `text` with `env` set.
fn assert_config_valid(text: &str, env: &[(&str, &str)], what: &str) {
    let dir = Dir::new("deploy-config");
    let path = dir.write("runner.toml", text);
    let mut command = dir
        .command(&["validate", "--config", path.to_str().unwrap()])
        .env_remove("STATE_DIRECTORY")
        .env_remove("CREDENTIALS_DIRECTORY");
    for (key, value) in env {
        command = command.env(key, value);
    }
    let output = command.run();
    assert_eq!(
        output.code(),
        Some(0),
        "{what} does not validate:\n{}\n---\n{text}",
        output.stderr
    );
}

/// The shipped config, as the deployments fill its placeholders.
fn assert_shipped_config_valid() {
    let text = read(&repo().join(SHIPPED_CONFIG));
    let dir = Dir::new("shipped");
    let state = dir.join("state");
    assert_config_valid(
        &text,
        &[
            ("OTC_ACCESS_KEY", "AKEXAMPLE"),
            ("STATE_DIRECTORY", state.to_str().unwrap()),
        ],
        SHIPPED_CONFIG,
    );
}

#[test]
fn the_shipped_config_validates_and_needs_its_access_key() {
    assert_shipped_config_valid();
    // The placeholder is real: without the variable the config is refused, naming it.
    let dir = Dir::new("shipped-unset");
    let output = dir
        .command(&[
            "validate",
            "--config",
            repo().join(SHIPPED_CONFIG).to_str().unwrap(),
        ])
        .env_remove("OTC_ACCESS_KEY")
        .expect_code(2);
    assert!(
        output.stderr.contains("OTC_ACCESS_KEY"),
        "{}",
        output.stderr
    );
}

// ---- systemd ----

/// A unit file: its sections, each with its `Key=value` lines in order (keys repeat).
type Unit = BTreeMap<String, Vec<(String, String)>>;

/// systemd's unit syntax, as far as these files need it: `[Section]`, `Key=value`,
/// comments (`#`, `;`), a trailing `\` continuing the line.
fn parse_unit(path: &Path) -> Unit {
    let text = read(path);
    let mut unit = Unit::new();
    let mut section: Option<String> = None;
    let mut pending = String::new();
    for (number, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with(';'))
        {
            continue;
        }
        if let Some(continued) = line.strip_suffix('\\') {
            pending.push_str(continued);
            pending.push(' ');
            continue;
        }
        let line = format!("{pending}{line}");
        pending.clear();
        if let Some(name) = line
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
        {
            section = Some(name.to_owned());
            unit.entry(name.to_owned()).or_default();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{}:{}: not Key=value: {raw}", path.display(), number + 1));
        let section = section
            .as_ref()
            .unwrap_or_else(|| panic!("{}:{}: outside a section", path.display(), number + 1));
        unit.get_mut(section)
            .unwrap()
            .push((key.trim().to_owned(), value.trim().to_owned()));
    }
    assert!(
        pending.is_empty(),
        "{}: ends with a continuation",
        path.display()
    );
    unit
}

/// The single value of `key` in `section`.
fn unit_value<'a>(unit: &'a Unit, section: &str, key: &str) -> Option<&'a str> {
    let values: Vec<&str> = unit
        .get(section)?
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(
        values.len() <= 1,
        "[{section}] {key} set {} times",
        values.len()
    );
    values.first().copied()
}

/// ExecStart's program and arguments (these units quote nothing).
fn exec_start(unit: &Unit, name: &str) -> (String, Vec<String>) {
    let line =
        unit_value(unit, "Service", "ExecStart").unwrap_or_else(|| panic!("{name}: no ExecStart"));
    assert!(
        !line.contains('"') && !line.contains('\''),
        "{name}: quoting is not parsed here: {line}"
    );
    let mut words = line.split_whitespace().map(str::to_owned);
    let program = words.next().unwrap();
    (program, words.collect())
}

/// What every service unit of the runner keeps: hardening, the state directory, 143 as a
/// clean stop, and an ExecStart the binary accepts, pointing at the shipped config.
fn check_service(name: &str, subcommand: &str) -> Unit {
    let unit = parse_unit(&deploy(&format!("systemd/{name}")));
    let expect = |key: &str, value: &str| {
        assert_eq!(
            unit_value(&unit, "Service", key),
            Some(value),
            "{name}: [Service] {key}"
        );
    };
    expect("DynamicUser", "yes");
    expect("ProtectSystem", "strict");
    expect("NoNewPrivileges", "yes");
    let state = unit_value(&unit, "Service", "StateDirectory").unwrap_or_default();
    assert!(
        !state.is_empty() && !state.contains('/'),
        "{name}: StateDirectory={state}"
    );
    let success = unit_value(&unit, "Service", "SuccessExitStatus").unwrap_or_default();
    assert!(
        success.split_whitespace().any(|code| code == "143"),
        "{name}: SuccessExitStatus={success}"
    );

    let (program, args) = exec_start(&unit, name);
    assert!(
        program.starts_with('/') && program.ends_with("/runner"),
        "{name}: {program}"
    );
    assert_eq!(
        args.first().map(String::as_str),
        Some(subcommand),
        "{name}: {args:?}"
    );
    assert_eq!(
        flag_value(&args, "--config"),
        Some(CONFIG_PATH),
        "{name}: {args:?}"
    );
    assert_cli_accepts(&args, name);

    // The config's secret comes from LoadCredential= under the name the config reads.
    let credential = unit_value(&unit, "Service", "LoadCredential").unwrap_or_default();
    let (credential, source) = credential
        .split_once(':')
        .unwrap_or_else(|| panic!("{name}: LoadCredential={credential}"));
    assert!(source.starts_with('/'), "{name}: {source}");
    let config = read(&repo().join(SHIPPED_CONFIG));
    assert!(
        config.contains(&format!(
            "${{CREDENTIALS_DIRECTORY:-/run/secrets}}/{credential}\""
        )),
        "{SHIPPED_CONFIG} does not read the credential {credential}"
    );
    assert!(
        config.contains("${STATE_DIRECTORY:-/var/lib/runner}/"),
        "{SHIPPED_CONFIG} does not keep its state in $STATE_DIRECTORY"
    );
    unit
}

#[test]
fn systemd_daemon_unit() {
    let unit = check_service("runner.service", "run");
    let kind = unit_value(&unit, "Service", "Type").unwrap_or("simple");
    assert!(
        ["simple", "exec"].contains(&kind),
        "runner.service: Type={kind}"
    );
    assert_eq!(
        unit_value(&unit, "Install", "WantedBy"),
        Some("multi-user.target")
    );
    assert_shipped_config_valid();
}

#[test]
fn systemd_one_shot_unit_and_its_timer() {
    let unit = check_service("runner-sync.service", "sync");
    assert_eq!(unit_value(&unit, "Service", "Type"), Some("oneshot"));
    assert!(
        !unit.contains_key("Install"),
        "the timer starts it, nothing else"
    );

    let timer = parse_unit(&deploy("systemd/runner-sync.timer"));
    let calendar = unit_value(&timer, "Timer", "OnCalendar");
    let active = unit_value(&timer, "Timer", "OnUnitActiveSec");
    assert!(
        calendar.is_some() || active.is_some(),
        "the timer has no schedule: {timer:?}"
    );
    if let Some(calendar) = calendar {
        assert!(!calendar.is_empty());
    }
    let started = unit_value(&timer, "Timer", "Unit").unwrap_or_default();
    assert_eq!(started, "runner-sync.service");
    assert!(deploy(&format!("systemd/{started}")).exists(), "{started}");
    assert_eq!(
        unit_value(&timer, "Install", "WantedBy"),
        Some("timers.target")
    );
}

/// systemd's own reading of the units, where `systemd-analyze` is installed: no unknown
/// key, no value it cannot parse, a schedule it understands. The units are copied with
/// ExecStart pointing at the binary under test (verify checks that the program exists).
#[test]
fn systemd_analyze_verify_accepts_the_units() {
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("note: no systemd-analyze here; the units are only parsed by this test");
        return;
    };
    assert!(version.status.success());
    let dir = Dir::new("systemd-verify");
    let mut units = Vec::new();
    for name in ["runner.service", "runner-sync.service", "runner-sync.timer"] {
        let text =
            read(&deploy(&format!("systemd/{name}"))).replace("/usr/local/bin/runner", RUNNER);
        units.push(dir.write(name, &text));
    }
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&units)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // What a container says about itself is not about the units.
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.contains("Permission denied") && !line.contains("PR_SET_MM"))
        .collect();
    assert!(
        output.status.success() && complaints.is_empty(),
        "systemd-analyze verify:\n{stderr}"
    );
}

// ---- the Dockerfile ----

/// One instruction of a Dockerfile: its keyword (upper case) and the rest of the line.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    rest: String,
}

fn parse_dockerfile(text: &str) -> Vec<Instruction> {
    let mut instructions = Vec::new();
    let mut pending = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if line.starts_with('#') || (pending.is_empty() && line.is_empty()) {
            continue;
        }
        if let Some(continued) = line.strip_suffix('\\') {
            pending.push_str(continued);
            pending.push(' ');
            continue;
        }
        let line = format!("{pending}{line}");
        pending.clear();
        let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        instructions.push(Instruction {
            keyword: keyword.to_uppercase(),
            rest: rest.trim().to_owned(),
        });
    }
    instructions
}

/// An exec-form (JSON array) ENTRYPOINT or CMD.
fn exec_form(rest: &str, what: &str) -> Vec<String> {
    serde_json::from_str(rest).unwrap_or_else(|e| panic!("{what} is not exec form ({e}): {rest}"))
}

/// `COPY [--from=X] [--chown=Y] SRC... DST`: the options, the sources, the destination.
fn copy_parts(rest: &str) -> (BTreeMap<String, String>, Vec<String>, String) {
    let mut options = BTreeMap::new();
    let mut words: Vec<String> = Vec::new();
    for word in rest.split_whitespace() {
        match word
            .strip_prefix("--")
            .and_then(|option| option.split_once('='))
        {
            Some((key, value)) if words.is_empty() => {
                options.insert(key.to_owned(), value.to_owned());
            }
            _ => words.push(word.to_owned()),
        }
    }
    let destination = words.pop().unwrap();
    (options, words, destination)
}

#[test]
fn dockerfile_builds_in_one_stage_and_runs_as_non_root_in_another() {
    let instructions = parse_dockerfile(&read(&deploy("Dockerfile")));
    let stages: Vec<&[Instruction]> = {
        let starts: Vec<usize> = instructions
            .iter()
            .enumerate()
            .filter(|(_, i)| i.keyword == "FROM")
            .map(|(at, _)| at)
            .collect();
        assert!(starts.len() >= 2, "not multi-stage: {instructions:?}");
        assert_eq!(starts[0], 0, "instructions before the first FROM");
        starts
            .iter()
            .enumerate()
            .map(|(n, &at)| {
                &instructions[at..starts.get(n + 1).copied().unwrap_or(instructions.len())]
            })
            .collect()
    };
    let (build, last) = (stages[0], stages[stages.len() - 1]);

    // The build stage: a Rust image at least as new as rust-version, named, building the
    // runner as the README says.
    let from: Vec<&str> = build[0].rest.split_whitespace().collect();
    assert!(
        from.len() == 3 && from[1].eq_ignore_ascii_case("AS"),
        "FROM {}",
        build[0].rest
    );
    let (image, stage_name) = (from[0], from[2]);
    let tag = image
        .strip_prefix("rust:")
        .unwrap_or_else(|| panic!("build image {image}"));
    let image_version: Vec<u32> = tag
        .split('-')
        .next()
        .unwrap()
        .split('.')
        .map(|n| n.parse().unwrap())
        .collect();
    let manifest = read(&repo().join("Cargo.toml"));
    let minimum = manifest
        .lines()
        .find_map(|line| line.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"');
    let minimum: Vec<u32> = minimum.split('.').map(|n| n.parse().unwrap()).collect();
    assert!(
        image_version[..2] >= minimum[..2],
        "rust:{tag} is older than rust-version {minimum:?}"
    );
    let runs: Vec<&str> = build
        .iter()
        .filter(|i| i.keyword == "RUN")
        .map(|i| i.rest.as_str())
        .collect();
    assert!(
        runs.iter()
            .any(|run| run.contains("cargo build --locked --release -p runner")),
        "{runs:?}"
    );
    assert!(
        !build
            .iter()
            .any(|i| i.rest.contains("CARGO_TARGET_DIR") || i.rest.contains("--target-dir")),
        "the binary's path below assumes the default target folder"
    );
    let workdir = build
        .iter()
        .rev()
        .find(|i| i.keyword == "WORKDIR")
        .map(|i| i.rest.clone())
        .unwrap();
    let built = format!("{}/target/release/runner", workdir.trim_end_matches('/'));

    // The final stage: another image, the binary copied from where cargo put it.
    let final_from = &last[0].rest;
    assert!(
        !final_from.starts_with("rust:") && !final_from.contains(stage_name),
        "FROM {final_from}"
    );
    let copies: Vec<_> = last
        .iter()
        .filter(|i| i.keyword == "COPY")
        .map(|i| copy_parts(&i.rest))
        .collect();
    let binary = copies
        .iter()
        .find(|(options, _, _)| options.get("from").map(String::as_str) == Some(stage_name))
        .unwrap_or_else(|| panic!("nothing copied from {stage_name}"));
    assert_eq!(
        binary.1,
        std::slice::from_ref(&built),
        "the build stage's binary is {built}"
    );
    let binary_path = &binary.2;

    // Runs as a numeric non-root user (Kubernetes' runAsNonRoot can only check a number).
    let user = last
        .iter()
        .rev()
        .find(|i| i.keyword == "USER")
        .map(|i| i.rest.clone())
        .unwrap_or_else(|| panic!("the final stage sets no USER"));
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("USER {user} is not numeric"));
    assert_ne!(uid, 0, "USER {user} is root");
    assert_eq!(uid, IMAGE_UID, "the manifests run as {IMAGE_UID}");

    // Files from the build context exist; the config lands where CMD reads it.
    for (options, sources, destination) in &copies {
        if options.contains_key("from") {
            continue;
        }
        for source in sources {
            assert!(
                repo().join(source).exists(),
                "COPY {source}: no such file in the repository"
            );
        }
        if sources == &[SHIPPED_CONFIG.to_owned()] {
            assert_eq!(destination, CONFIG_PATH);
        }
    }
    // The state volume belongs to the user the image runs as.
    let volume = last
        .iter()
        .find(|i| i.keyword == "VOLUME")
        .map(|i| i.rest.clone())
        .unwrap();
    assert!(
        copies
            .iter()
            .any(|(options, _, destination)| destination == &volume
                && options
                    .get("chown")
                    .is_some_and(|owner| owner.split(':').next() == Some(&uid.to_string()))),
        "VOLUME {volume} is not created owned by {uid}"
    );

    let entrypoint = last
        .iter()
        .rev()
        .find(|i| i.keyword == "ENTRYPOINT")
        .unwrap();
    assert_eq!(
        exec_form(&entrypoint.rest, "ENTRYPOINT"),
        std::slice::from_ref(binary_path)
    );
    let cmd = last.iter().rev().find(|i| i.keyword == "CMD").unwrap();
    let args = exec_form(&cmd.rest, "CMD");
    assert_eq!(flag_value(&args, "--config"), Some(CONFIG_PATH), "{args:?}");
    assert_cli_accepts(&args, "the Dockerfile's CMD");
    assert!(
        copies
            .iter()
            .any(|(_, sources, destination)| destination == CONFIG_PATH
                && sources == &[SHIPPED_CONFIG.to_owned()]),
        "the image has no {CONFIG_PATH}"
    );
    assert_shipped_config_valid();
}

/// The user of the image (distroless' "nonroot"), which the manifests run as.
const IMAGE_UID: u32 = 65532;

// ---- Kubernetes ----

fn manifests(name: &str) -> Vec<Value> {
    let text = read(&deploy(&format!("kubernetes/{name}")));
    let documents: Vec<Value> = yaml_serde::Deserializer::from_str(&text)
        .map(|document| {
            serde::Deserialize::deserialize(document).unwrap_or_else(|e| panic!("{name}: {e}"))
        })
        .collect();
    assert!(!documents.is_empty(), "{name} is empty");
    for document in &documents {
        assert!(
            document["apiVersion"].as_str().is_some(),
            "{name}: {document:?}"
        );
        assert!(
            document["metadata"]["name"].as_str().is_some(),
            "{name}: {document:?}"
        );
    }
    documents
}

fn of_kind<'a>(documents: &'a [Value], kind: &str) -> Vec<&'a Value> {
    documents
        .iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .collect()
}

fn named<'a>(documents: &'a [Value], kind: &str, name: &str) -> &'a Value {
    of_kind(documents, kind)
        .into_iter()
        .find(|d| d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|items| {
            items
                .iter()
                .map(|item| item.as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// `items` with `key` equal to `value` (a container's mount, a pod's volume).
fn find<'a>(items: &'a Value, key: &str, value: &str) -> Option<&'a Value> {
    items
        .as_sequence()?
        .iter()
        .find(|item| item[key].as_str() == Some(value))
}

fn parent(path: &str) -> String {
    Path::new(path)
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}

/// What both workloads keep: a non-root pod, the config from a ConfigMap in the same file
/// mounted where `--config` reads it and valid for the binary, the state and the secret key
/// on volumes where the config expects them. Returns the container and the config's TOML.
fn check_pod<'a>(
    documents: &'a [Value],
    pod: &'a Value,
    name: &str,
    subcommand: &str,
    substitute: &dyn Fn(&str) -> String,
) -> (&'a Value, toml::Table) {
    let security = &pod["securityContext"];
    assert_eq!(
        security["runAsNonRoot"].as_bool(),
        Some(true),
        "{name}: {security:?}"
    );
    assert_eq!(
        security["runAsUser"].as_u64(),
        Some(u64::from(IMAGE_UID)),
        "{name}"
    );
    let containers = pod["containers"].as_sequence().unwrap();
    assert_eq!(containers.len(), 1, "{name}");
    let container = &containers[0];
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"].as_bool(),
        Some(false),
        "{name}"
    );

    let args: Vec<String> = strings(&container["args"])
        .iter()
        .map(|arg| substitute(arg))
        .collect();
    assert!(
        container["command"].is_null(),
        "{name}: the image's ENTRYPOINT is the runner"
    );
    assert_eq!(
        args.first().map(String::as_str),
        Some(subcommand),
        "{name}: {args:?}"
    );
    assert_cli_accepts(&args, name);
    let config_path =
        flag_value(&args, "--config").unwrap_or_else(|| panic!("{name}: no --config"));

    // The ConfigMap mounted at the config's folder holds the file.
    let mounts = &container["volumeMounts"];
    let volumes = &pod["volumes"];
    let mount = find(mounts, "mountPath", &parent(config_path))
        .unwrap_or_else(|| panic!("{name}: nothing mounted at {config_path}"));
    let volume = find(volumes, "name", mount["name"].as_str().unwrap()).unwrap();
    let map = named(
        documents,
        "ConfigMap",
        volume["configMap"]["name"].as_str().unwrap(),
    );
    let file = Path::new(config_path)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    let text = map["data"][file]
        .as_str()
        .unwrap_or_else(|| panic!("{name}: the ConfigMap has no {file}"));
    assert_config_valid(
        &text.replace(
            "/var/lib/runner",
            &Dir::new("k8s-state").join("state").display().to_string(),
        ),
        &[("OTC_ACCESS_KEY", "AKEXAMPLE")],
        &format!("{name}'s ConfigMap"),
    );
    let config: toml::Table = text.parse().unwrap();

    // Every variable the config reads is set in the container.
    for variable in text
        .split("${")
        .skip(1)
        .filter_map(|rest| rest.split(['}', ':', '-', '?']).next())
    {
        assert!(
            find(&container["env"], "name", variable).is_some(),
            "{name}: ${{{variable}}} is not set"
        );
    }

    // The secret key file is on a Secret volume.
    let key_file = config["sources"]["otc"]["auth"]["secret_key_file"]
        .as_str()
        .unwrap();
    let mount = find(mounts, "mountPath", &parent(key_file))
        .unwrap_or_else(|| panic!("{name}: nothing at {key_file}"));
    let volume = find(volumes, "name", mount["name"].as_str().unwrap()).unwrap();
    let key_name = Path::new(key_file).file_name().unwrap().to_str().unwrap();
    assert!(
        find(&volume["secret"]["items"], "path", key_name).is_some(),
        "{name}: {volume:?}"
    );

    // The state's folder is mounted; the caller says from what.
    let state = config["state"]["path"].as_str().unwrap();
    assert!(
        find(mounts, "mountPath", &parent(state)).is_some(),
        "{name}: the state {state} is on no volume"
    );
    (container, config)
}

fn state_volume<'a>(container: &'a Value, config: &toml::Table) -> &'a str {
    let state = config["state"]["path"].as_str().unwrap();
    find(&container["volumeMounts"], "mountPath", &parent(state)).unwrap()["name"]
        .as_str()
        .unwrap()
}

#[test]
fn kubernetes_cronjob_syncs_without_overlap() {
    let documents = manifests("cronjob.yaml");
    let jobs = of_kind(&documents, "CronJob");
    assert_eq!(jobs.len(), 1);
    let job = jobs[0];
    assert_eq!(job["apiVersion"].as_str(), Some("batch/v1"));
    assert_eq!(
        job["spec"]["concurrencyPolicy"].as_str(),
        Some("Forbid"),
        "two syncs would overlap"
    );
    let schedule = job["spec"]["schedule"].as_str().unwrap();
    assert_eq!(
        schedule.split_whitespace().count(),
        5,
        "schedule {schedule}"
    );
    let pod = &job["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let (container, config) = check_pod(&documents, pod, "the CronJob", "sync", &|arg| {
        arg.to_owned()
    });
    // The state outlives each job's pod: a claim defined in the same file.
    let volume = find(&pod["volumes"], "name", state_volume(container, &config)).unwrap();
    let claim = volume["persistentVolumeClaim"]["claimName"]
        .as_str()
        .unwrap_or_else(|| panic!("the state is not on a claim: {volume:?}"));
    named(&documents, "PersistentVolumeClaim", claim);
}

#[test]
fn kubernetes_statefulset_runs_one_shard_per_pod_with_probes() {
    let documents = manifests("statefulset.yaml");
    let sets = of_kind(&documents, "StatefulSet");
    assert_eq!(sets.len(), 1);
    let set = sets[0];
    assert_eq!(set["apiVersion"].as_str(), Some("apps/v1"));
    let replicas = set["spec"]["replicas"].as_u64().unwrap();
    let pod = &set["spec"]["template"]["spec"];
    let container = &pod["containers"][0];

    // --shard K/N: K is the pod's ordinal, N the replicas.
    let args = strings(&container["args"]);
    let shard = flag_value(&args, "--shard").unwrap_or_else(|| panic!("no --shard: {args:?}"));
    let (index, count) = shard.split_once('/').unwrap();
    assert_eq!(
        count.parse::<u64>().unwrap(),
        replicas,
        "--shard {shard} with {replicas} replicas"
    );
    let variable = index
        .strip_prefix("$(")
        .and_then(|v| v.strip_suffix(')'))
        .unwrap_or_else(|| panic!("K is not a variable: {shard}"));
    let source = find(&container["env"], "name", variable)
        .unwrap_or_else(|| panic!("{variable} is not set"));
    assert_eq!(
        source["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("metadata.labels['apps.kubernetes.io/pod-index']")
    );
    // The first and the last pod's command lines.
    let mut checked = None;
    for ordinal in [replicas - 1, 0] {
        let substitute = |arg: &str| arg.replace(&format!("$({variable})"), &ordinal.to_string());
        checked = Some(check_pod(
            &documents,
            pod,
            "the StatefulSet",
            "run",
            &substitute,
        ));
    }
    let (container, config) = checked.unwrap();

    // Each pod's state on its own claim.
    let volume = state_volume(container, &config);
    let templates = set["spec"]["volumeClaimTemplates"].as_sequence().unwrap();
    assert!(
        templates
            .iter()
            .any(|t| t["metadata"]["name"].as_str() == Some(volume)),
        "the state volume {volume} is not a volumeClaimTemplate"
    );
    assert!(
        find(&pod["volumes"], "name", volume).is_none(),
        "{volume} shadows its claim template"
    );

    // Metrics and probes on the port the config listens on.
    let listen = config["runner"]["listen"]
        .as_str()
        .unwrap_or_else(|| panic!("no [runner] listen"));
    let port: u64 = listen.rsplit_once(':').unwrap().1.parse().unwrap();
    assert_eq!(port, 9187);
    assert!(
        listen.starts_with("0.0.0.0:"),
        "the kubelet cannot reach {listen}"
    );
    assert!(
        container["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|p| p["containerPort"].as_u64() == Some(port)),
        "no containerPort {port}"
    );
    for (probe, path) in [("livenessProbe", "/live"), ("readinessProbe", "/health")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        assert_eq!(get["port"].as_u64(), Some(port), "{probe}");
    }
    // The governing service exists and is headless.
    let service = named(
        &documents,
        "Service",
        set["spec"]["serviceName"].as_str().unwrap(),
    );
    assert_eq!(service["spec"]["clusterIP"].as_str(), Some("None"));
    assert_eq!(service["spec"]["ports"][0]["port"].as_u64(), Some(port));
}
