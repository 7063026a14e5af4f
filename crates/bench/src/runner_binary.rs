//! Which `runner` binary the benchmark measures. Cargo cannot build another package's binary
//! for a dependent (`runner` has no library, and artifact dependencies are unstable), so the
//! benchmark builds it itself, with its own profile, before measuring: a stale binary from
//! an earlier build would measure old code. `--runner PATH` measures any other build (an
//! older commit, for a before/after table) and builds nothing.

use anyhow::{Context, bail};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace this benchmark was built from.
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// The runner to measure: `explicit` if given; otherwise this workspace's `runner`, built
/// now with the profile of the running `bench` and taken from next to it.
pub fn resolve(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        let path = std::fs::canonicalize(path)
            .with_context(|| format!("--runner {}: no such file", path.display()))?;
        if !path.is_file() {
            bail!("--runner {}: not a file", path.display());
        }
        return Ok(path);
    }
    let exe = std::env::current_exe().context("cannot tell where the bench binary is")?;
    let folder = exe
        .parent()
        .context("the bench binary is in no folder")?
        .to_owned();
    let manifest = Path::new(WORKSPACE).join("Cargo.toml");
    if manifest.is_file() {
        let profile = profile_args(&folder);
        // Cargo sets CARGO for the programs it runs; fall back to the one on PATH.
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
        let mut shown = vec!["cargo", "build"];
        shown.extend(profile.iter().map(String::as_str));
        eprintln!(
            "bench: building the runner to measure: {} -p runner",
            shown.join(" ")
        );
        let status = Command::new(&cargo)
            .arg("build")
            .arg("--manifest-path")
            .arg(&manifest)
            .args(&profile)
            .args(["-p", "runner"])
            .status()
            .with_context(|| format!("cannot run {cargo:?} to build the runner"))?;
        if !status.success() {
            bail!(
                "building the runner failed ({status}); fix the build, or measure another binary with --runner PATH"
            );
        }
    }
    let runner = folder.join("runner");
    if !runner.is_file() {
        bail!(
            "no runner binary at {}: build it (`cargo build --release -p runner`) or pass --runner PATH",
            runner.display()
        );
    }
    Ok(runner)
}

/// The cargo flags that build into `folder` (`target/debug`, `target/release`,
/// `target/<custom profile>`).
fn profile_args(folder: &Path) -> Vec<String> {
    match folder.file_name().and_then(|name| name.to_str()) {
        Some("debug") | None => Vec::new(),
        Some("release") => vec!["--release".to_owned()],
        Some(other) => vec!["--profile".to_owned(), other.to_owned()],
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_follows_the_folder() {
        assert!(profile_args(Path::new("/w/target/debug")).is_empty());
        assert_eq!(profile_args(Path::new("/w/target/release")), ["--release"]);
        assert_eq!(
            profile_args(Path::new("/w/target/profiling")),
            ["--profile", "profiling"]
        );
    }

    #[test]
    fn an_explicit_runner_must_exist() {
        let error = resolve(Some(Path::new("/nonexistent/runner"))).unwrap_err();
        assert!(error.to_string().contains("--runner"), "{error}");
        let folder = tempfile::tempdir().unwrap();
        assert!(
            resolve(Some(folder.path())).is_err(),
            "a folder is not a runner"
        );
        let file = folder.path().join("runner");
        std::fs::write(&file, "").unwrap();
        assert_eq!(
            resolve(Some(&file)).unwrap(),
            std::fs::canonicalize(&file).unwrap()
        );
    }
}
