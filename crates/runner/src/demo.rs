//! `runner demo`: the whole product on a laptop with nothing set up. Starts
//! the simulator in-process (the API page's sample service plus generated
//! ones), writes a real config into a temporary folder, syncs into stdout
//! and a file, adds events, and syncs again to show that only the new ones
//! are delivered.

use crate::app::{self, AppError, exit};
use crate::config;
use crate::output;
use pipeline::Selection;
use simulator::{SimConfig, SimEvent, Simulator};
use std::path::{Path, PathBuf};

const SAMPLE_SERVICE: &str = "35de3ca9-1bca-4ae7-9cb0-914f30fa7d3e";

/// Runs the demo; keeps its folder at `keep` if given.
pub async fn run(keep: Option<PathBuf>) -> Result<u8, AppError> {
    let kept = keep.is_some();
    let temp;
    let dir: PathBuf = match keep {
        Some(dir) => {
            std::fs::create_dir_all(&dir).map_err(|source| AppError::Io {
                what: format!("cannot create {}", dir.display()),
                source,
            })?;
            dir
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("modelarts-demo-")
                .tempdir()
                .map_err(|source| AppError::Io {
                    what: "cannot create a temporary folder".to_owned(),
                    source,
                })?;
            temp.path().to_owned()
        }
    };
    let sim = Simulator::start(
        ([127, 0, 0, 1], 0).into(),
        SimConfig {
            services: 2,
            events_per_service: 12,
            seed: 2019,
            include_sample: true,
            ..SimConfig::default()
        },
    )
    .map_err(|source| AppError::Io {
        what: "cannot start the simulator".to_owned(),
        source,
    })?;
    say("== ModelArts event shipper demo ==");
    say(&format!(
        "Simulator (a local ModelArts API) at {}",
        sim.base_url()
    ));
    let config_path = write_config(
        &dir,
        &sim.base_url(),
        &sim.project_id(),
        &sim.token(),
        &sim.service_ids(),
    )?;
    say(&format!("Config: {}", config_path.display()));
    let config = config::load(&config_path)?;

    say("\n-- First sync: every event so far goes to stdout (below) and to events.jsonl --");
    let first = app::sync(&config, Selection::default(), None, None).await?;
    if first != exit::OK {
        return Ok(first);
    }

    let now = record::now_ms();
    sim.add_events(
        SAMPLE_SERVICE,
        vec![
            SimEvent::new(now - 2_000, "normal", "[zcjtestTF 3.0.0] model started"),
            SimEvent::new(now - 1_000, "normal", "service zcjtest-07085 is running"),
            SimEvent::new(
                now,
                "abnormal",
                "[zcjtestTF 3.0.0] health check failed, restarting",
            ),
        ],
    );
    say("\n-- Three new events arrive on the sample service; second sync delivers only those --");
    let second = app::sync(&config, Selection::default(), None, None).await?;
    let file = dir.join("out").join("events.jsonl");
    let lines = std::fs::read_to_string(&file)
        .map(|t| t.lines().count())
        .unwrap_or(0);
    say(&format!(
        "\n{} now holds {lines} events, each once. State: {}",
        file.display(),
        dir.join("state").join("events.db").display()
    ));
    if kept {
        say(&format!(
            "Try: runner state --config {}",
            config_path.display()
        ));
    } else {
        say("The folder is removed now; `runner demo --keep DIR` keeps it to look around.");
    }
    Ok(second)
}

fn write_config(
    dir: &Path,
    endpoint: &str,
    project_id: &str,
    token: &str,
    services: &[String],
) -> Result<PathBuf, AppError> {
    let services = services
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        r#"# Written by `runner demo`: a real config pointing at the local simulator.
[state]
path = "state/events.db"

[sources.demo]
type = "modelarts"
endpoint = "{endpoint}"
project_id = "{project_id}"
services = [{services}]
lookback = "10m"

[sources.demo.auth]
type = "token"
token = "{token}"

[sinks.console]
type = "stdout"
format = "text"

[sinks.archive]
type = "file"
path = "out/events.jsonl"
"#
    );
    let path = dir.join("demo.toml");
    std::fs::write(&path, text).map_err(|source| AppError::Io {
        what: format!("cannot write {}", path.display()),
        source,
    })?;
    Ok(path)
}

/// The demo's narration: always shown, whatever `RUST_LOG` says.
fn say(text: &str) {
    output::always(output::Level::Info, text);
}
