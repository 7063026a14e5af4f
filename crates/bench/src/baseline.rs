//! The Python leg: `baseline.py` (in this crate's folder, standard library only) doing the
//! runner's backfill job straightforwardly, so that "N times faster than a script" is a
//! claim anyone can check. The script is built into the benchmark and written into each
//! run's folder, so the benchmark needs nothing but a Python 3 interpreter.

use crate::child::{Launch, Measured, Spawner};
use crate::config::FILE_SINK_PATH;
use crate::source_params::{SOURCE_NAME, SourceParams};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The script, as it is in the repository.
pub const SCRIPT: &str = include_str!("../baseline.py");

/// A Python 3 interpreter, resolved to the real executable (not a pyenv or asdf shim, whose
/// start-up would be measured too).
#[derive(Debug, Clone)]
pub struct Python {
    pub executable: PathBuf,
    pub version: String,
}

/// The interpreter to use: `explicit` (an error if it does not run), `python3` on PATH
/// (`None`, with a note, if there is none), or none at all with `--no-python`.
pub fn find(explicit: Option<&Path>, skip: bool) -> anyhow::Result<Option<Python>> {
    if skip {
        eprintln!("bench: --no-python: the Python leg is skipped");
        return Ok(None);
    }
    let program = explicit.unwrap_or(Path::new("python3"));
    let probe = Command::new(program)
        .args([
            "-c",
            "import sys; print(sys.executable); print(sys.version.split()[0]); sys.exit(sys.version_info < (3, 8))",
        ])
        .output();
    let output = match probe {
        Ok(output) => output,
        Err(error) if explicit.is_none() && error.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("bench: python3 is not on PATH: the Python leg is skipped");
            return Ok(None);
        }
        Err(error) => {
            return Err(error).with_context(|| format!("cannot run {}", program.display()));
        }
    };
    if !output.status.success() {
        bail!(
            "{} is not a working Python 3.8 or later: {}",
            program.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines();
    let executable = lines
        .next()
        .filter(|line| !line.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| program.to_owned());
    let version = lines.next().unwrap_or("?").to_owned();
    Ok(Some(Python {
        executable,
        version,
    }))
}

/// What the script says it did (its last stdout line).
#[derive(Debug, Clone, Copy, serde::Deserialize)]
pub struct BaselineOutcome {
    pub events: u64,
    pub requests: u64,
}

/// Runs the script in `folder` on every service of `source`: state in
/// `state/baseline.db`, records in the file sink's path.
pub fn run_leg(
    spawner: &Spawner,
    python: &Python,
    folder: &Path,
    source: &SourceParams,
) -> anyhow::Result<(Measured, BaselineOutcome)> {
    let script = folder.join("baseline.py");
    std::fs::write(&script, SCRIPT)
        .with_context(|| format!("cannot write {}", script.display()))?;
    // -I: no user site packages or PYTHON* variables; the standard library only.
    let mut launch = Launch::in_folder(&python.executable, folder, "baseline")
        .arg("-I")
        .path_arg(&script)
        .arg("--endpoint")
        .arg(&source.endpoint)
        .arg("--project-id")
        .arg(&source.project_id)
        .arg("--state")
        .arg("state/baseline.db")
        .arg("--out")
        .arg(FILE_SINK_PATH)
        .arg("--source")
        .arg(SOURCE_NAME)
        .arg("--page-size")
        .arg(source.page_size.to_string())
        .arg("--lookback")
        .arg((source.lookback_ms / 1000).to_string())
        .env("MODELARTS_TOKEN", &source.token);
    for service in &source.services {
        launch = launch.arg("--service").arg(service);
    }
    let measured = spawner.run(&launch)?;
    measured.expect_success("the Python baseline")?;
    let last = measured.stdout.lines().last().unwrap_or_default();
    let outcome = serde_json::from_str(last)
        .with_context(|| format!("the Python baseline printed no outcome: {last:?}"))?;
    Ok((measured, outcome))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use simulator::{SimConfig, SimEvent, SimHandle, Simulator, Spread};
    use std::collections::HashMap;

    #[test]
    fn skipping_needs_no_interpreter() {
        assert!(find(None, true).unwrap().is_none());
    }

    #[test]
    fn an_explicit_interpreter_that_does_not_exist_is_an_error() {
        assert!(find(Some(Path::new("/nonexistent/python3")), false).is_err());
    }

    #[test]
    fn an_explicit_interpreter_that_is_not_python_is_an_error() {
        assert!(find(Some(Path::new("false")), false).is_err());
    }

    /// The ids a correct shipper writes for `service`: twins numbered in their millisecond.
    fn expected_ids(sim: &SimHandle, project_id: &str, service: &str) -> Vec<String> {
        let mut twins: HashMap<(i64, String, String), u32> = HashMap::new();
        sim.events(service)
            .into_iter()
            .map(|(occur_time, event_type, event_info)| {
                let twin = twins
                    .entry((occur_time, event_type.clone(), event_info.clone()))
                    .or_default();
                *twin += 1;
                record::event_id(record::IdParts {
                    project_id,
                    service_id: service,
                    occur_time,
                    event_type: &event_type,
                    event_info: &event_info,
                    twin: *twin,
                })
            })
            .collect()
    }

    fn ids_in(path: &Path) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|line| {
                let record: serde_json::Value = serde_json::from_str(line).unwrap();
                record["id"].as_str().unwrap().to_owned()
            })
            .collect();
        ids.sort();
        ids
    }

    /// The baseline against a real simulator, small pages: realistic services, and one
    /// millisecond holding more than two pages of events, twins among them. It writes the
    /// records the runner would (the pinned ids), each once; a second run writes nothing,
    /// and an uncommitted tail is cut off. Needs `python3`; without it there is nothing to
    /// test, and the benchmark skips the Python leg the same way.
    #[test]
    fn the_baseline_writes_every_record_once() {
        let Some(python) = find(None, false).unwrap() else {
            eprintln!("python3 is not on PATH: nothing to test");
            return;
        };
        let sim = Simulator::start(
            "127.0.0.1:0".parse().unwrap(),
            SimConfig {
                services: 2,
                events_per_service: 1_500,
                seed: 3,
                spread: Spread::Realistic,
                ..SimConfig::default()
            },
        )
        .unwrap();
        let crowded = "5f1e2d3c-0000-4000-8000-00000000c0de";
        sim.add_service(crowded, "crowded");
        let events: Vec<SimEvent> = (0..250)
            .map(|n| SimEvent::new(1_700_000_000_000, "normal", &format!("step {}", n % 7)))
            .collect();
        sim.add_events(crowded, events);
        let mut source = SourceParams::for_sim(&sim);
        source.page_size = 100;
        let mut expected: Vec<String> = source
            .services
            .iter()
            .flat_map(|service| expected_ids(&sim, &source.project_id, service))
            .collect();
        expected.sort();
        assert_eq!(expected.len(), 3_250);

        let folder = tempfile::tempdir().unwrap();
        let out = folder.path().join(FILE_SINK_PATH);
        let spawner = Spawner::in_process();
        let (_, first) = run_leg(&spawner, &python, folder.path(), &source).unwrap();
        assert_eq!(first.events, 3_250);
        assert_eq!(ids_in(&out), expected);

        let (_, again) = run_leg(&spawner, &python, folder.path(), &source).unwrap();
        assert_eq!(again.events, 0, "a second run writes nothing");

        let mut file = std::fs::OpenOptions::new().append(true).open(&out).unwrap();
        std::io::Write::write_all(&mut file, b"{\"id\":\"torn").unwrap();
        let (measured, after_crash) = run_leg(&spawner, &python, folder.path(), &source).unwrap();
        assert_eq!(after_crash.events, 0);
        assert!(measured.stderr.contains("cutting"), "{}", measured.stderr);
        assert_eq!(ids_in(&out), expected);
    }

    #[test]
    fn the_script_is_the_standard_library_only() {
        let imports: Vec<&str> = SCRIPT
            .lines()
            .filter(|line| line.starts_with("import ") || line.starts_with("from "))
            .collect();
        let allowed = [
            "argparse",
            "datetime",
            "hashlib",
            "json",
            "os",
            "sqlite3",
            "sys",
            "time",
            "urllib.error",
            "urllib.parse",
            "urllib.request",
        ];
        for line in imports {
            let module = line.split_whitespace().nth(1).unwrap();
            assert!(allowed.contains(&module), "{line}");
        }
    }
}
