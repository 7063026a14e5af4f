//! End-to-end tests of installing the runner: `--version` with the git commit,
//! `completions` and `man`.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::{Dir, RUNNER};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

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
