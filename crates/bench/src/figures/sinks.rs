//! Figure 6: events/s of one backfill (`--sink-events`, one service) delivered by the
//! runner into the Loki and Elasticsearch doubles of `crates/doubles`, against the same
//! backfill into the file sink, from the same simulator. The doubles' rate limits and age
//! windows are off (no ingestion limit, no `reject_old_samples`, an out-of-order window
//! wider than the data), and the Loki sink's own age check (`too_old_after`) is set past
//! the oldest event, so every event is accepted and what is measured is the runner.
//! Target: each network sink >= 50% of the file sink's events/s.
//!
//! Each run starts a fresh double (a second delivery into the same one would only meet
//! duplicates) and checks that it stored every event.

use super::{Bench, requests_since, requests_so_far, rotated};
use crate::check;
use crate::cli::SinksArgs;
use crate::config::{FILE_SINK_PATH, RunnerConfig, SinkSpec};
use crate::report::{self, Target};
use crate::source_params::SourceParams;
use crate::stats::{Runs, ratio, ratio_json};
use anyhow::{Context, bail};
use doubles::elasticsearch::ElasticsearchDouble;
use doubles::loki::{LokiDouble, LokiLimits, LokiSettings};
use serde_json::{Map, Value, json};
use std::time::Duration;

const TO_FILE: Target = Target::AtLeast(0.5);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Loki,
    Elasticsearch,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Loki => "loki",
            Kind::Elasticsearch => "elasticsearch",
        }
    }
}

const KINDS: [Kind; 3] = [Kind::File, Kind::Loki, Kind::Elasticsearch];

pub fn run(bench: &Bench, args: &SinksArgs) -> anyhow::Result<Map<String, Value>> {
    let events = args.sink_events;
    report::progress(&format!("sinks: {events} events, starting the simulator"));
    let sim = bench.simulator(1, events)?;
    let source = SourceParams::for_sim(&sim);
    let oldest = source
        .services
        .iter()
        .filter_map(|service| sim.events(service).first().map(|(time, _, _)| *time))
        .min()
        .unwrap_or(0);
    let too_old_after = too_old_after(oldest, now_ms());

    let mut runs: Vec<Runs> = KINDS.iter().map(|_| Runs::default()).collect();
    for run in 0..bench.runs {
        for kind in rotated(&KINDS, run) {
            let folder = bench.folder(&format!("sink-{}", kind.name()))?;
            let before = requests_so_far(&sim);
            // Kept alive until the run is checked.
            let (sink, loki, es) = match kind {
                Kind::File => (SinkSpec::File, None, None),
                Kind::Loki => {
                    let loki = LokiDouble::with(LokiSettings {
                        auth_enabled: false,
                        limits: LokiLimits {
                            reject_old_samples: false,
                            out_of_order_window: Duration::from_secs(100 * 365 * 24 * 3600),
                            ingestion_burst_size: None,
                            ..LokiLimits::default()
                        },
                    })
                    .context("the Loki double does not start")?;
                    let sink = SinkSpec::Loki {
                        endpoint: loki.base_url(),
                        too_old_after: too_old_after.clone(),
                    };
                    (sink, Some(loki), None)
                }
                Kind::Elasticsearch => {
                    let es = ElasticsearchDouble::start()
                        .context("the Elasticsearch double does not start")?;
                    let sink = SinkSpec::Elasticsearch {
                        endpoint: es.base_url(),
                    };
                    (sink, None, Some(es))
                }
            };
            let config = RunnerConfig {
                source: source.clone(),
                concurrency: None,
                sink,
            };
            let measured = bench.sync(folder.path(), &config)?;
            let requests = requests_since(&sim, before).len() as u64;
            let stored = match kind {
                Kind::File => check::every_event_once(
                    &folder.path().join(FILE_SINK_PATH),
                    events,
                    "runner sync",
                )?
                .len(),
                Kind::Loki => loki.as_ref().map_or(0, |loki| loki.entries().len()),
                Kind::Elasticsearch => es.as_ref().map_or(0, ElasticsearchDouble::count),
            };
            if stored != events {
                bail!(
                    "{}: the double holds {stored} events, expected {events}",
                    kind.name()
                );
            }
            let index = KINDS.iter().position(|k| *k == kind).unwrap_or(0);
            runs[index].push(measured.seconds, measured.peak_rss_kib, requests);
            report::progress(&format!(
                "sinks, run {}: {} {:.3} s",
                run + 1,
                kind.name(),
                measured.seconds
            ));
        }
    }

    report::heading(&format!(
        "6. Backfill of {events} events (1 service) into each sink, doubles' limits off"
    ));
    let named: Vec<(&str, &Runs)> = KINDS.iter().map(|k| k.name()).zip(runs.iter()).collect();
    report::legs(events, &named);
    let file_rate = runs[0].events_per_second(events);
    let mut figure = json!({ "events": events });
    for (kind, runs) in KINDS.iter().zip(&runs) {
        figure[kind.name()] = runs.json(events);
        if *kind != Kind::File {
            let share = ratio(runs.events_per_second(events), file_rate);
            report::ratio_line(
                &format!("{} events/s / file events/s", kind.name()),
                share,
                TO_FILE,
            );
            figure[format!("{}_to_file", kind.name())] = ratio_json(share);
        }
    }
    let mut figures = Map::new();
    figures.insert("6_sinks".to_owned(), figure);
    Ok(figures)
}

/// A Loki `too_old_after` that keeps every event since `oldest_ms`: its age in whole days,
/// plus two.
fn too_old_after(oldest_ms: i64, now_ms: i64) -> String {
    let days = now_ms.saturating_sub(oldest_ms).max(0) / (24 * 3600 * 1000);
    format!("{}d", days + 2)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_old_after_covers_the_oldest_event() {
        let day = 24 * 3600 * 1000;
        assert_eq!(too_old_after(10 * day, 10 * day), "2d");
        assert_eq!(too_old_after(0, 400 * day + 5), "402d");
        assert_eq!(too_old_after(5 * day, day), "2d", "events from the future");
    }
}
