//! Puts the git commit into `runner --version` when the binary is built from a checkout:
//! `RUNNER_VERSION` is `0.1.0 (1a2b3c4)`, with `-dirty` when tracked files had changes,
//! or just `0.1.0` without git (a crate tarball, a container build without `.git`).
//! Nothing here may fail the build: every git error means "no commit".
//!
//! The script runs again when HEAD or its branch moves (a commit, a checkout), not on
//! every edit: watching the whole tree would rebuild every target of this package at each
//! save. So `-dirty` says whether the tree had changes when the commit was last looked at.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let root =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default()).join("../..");
    println!("cargo:rerun-if-changed=build.rs");
    let commit = if root.join(".git").exists() {
        commit(&root)
    } else {
        None
    };
    let full = match commit {
        Some(commit) => format!("{version} ({commit})"),
        None => version,
    };
    println!("cargo:rustc-env=RUNNER_VERSION={full}");
}

/// `1a2b3c4` or `1a2b3c4-dirty`, and the rerun triggers for a new commit or branch.
fn commit(root: &Path) -> Option<String> {
    let hash = git(root, &["rev-parse", "--short", "HEAD"])?;
    // A worktree's HEAD lives in its own git dir, its branches in the common one.
    let git_dir = git(root, &["rev-parse", "--git-dir"]).map(|dir| root.join(dir));
    let common_dir = git(root, &["rev-parse", "--git-common-dir"]).map(|dir| root.join(dir));
    let head_ref = git(root, &["symbolic-ref", "-q", "HEAD"]);
    let mut watched = Vec::new();
    if let Some(dir) = &git_dir {
        watched.push(dir.join("HEAD"));
    }
    if let (Some(dir), Some(head_ref)) = (&common_dir, &head_ref) {
        watched.push(dir.join(head_ref));
        watched.push(dir.join("packed-refs"));
    }
    // A watched path that does not exist would make cargo run this script on every build.
    for path in watched.iter().filter(|path| path.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    let dirty = git(root, &["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|changes| !changes.is_empty());
    Some(if dirty { format!("{hash}-dirty") } else { hash })
}

/// The trimmed stdout of a successful `git ARGS` in `root`, or `None` (no git, not a
/// checkout, an error).
fn git(root: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(root)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    Some(text.trim().to_owned())
}
