//! Benchmark: one `runner sync` of a backlog of 10,000 and of 100,000 events
//! (one service, realistic spread) into the file sink, against the simulator
//! on 127.0.0.1. Prints wall time, throughput, requests and the runner's peak
//! RSS, so that claims about speed and memory (invariant 8) come with numbers.
//!
//! `cargo bench -p runner` (release build). Timings are printed, never
//! asserted: a shared machine makes timing assertions flaky.

// The end-to-end harness; its own unit tests are not built into a bench.
#[allow(unused_imports, clippy::unwrap_used)]
#[path = "../../../tests/support/mod.rs"]
mod support;

use simulator::{SimConfig, Spread};
use std::time::Instant;
use support::{ConfigText, Dir, start_sim};

fn main() {
    println!(
        "{:>9} {:>9} {:>12} {:>9} {:>13}",
        "events", "seconds", "events/s", "requests", "peak RSS KiB"
    );
    for events in [10_000usize, 100_000] {
        let sim = start_sim(SimConfig {
            services: 1,
            events_per_service: events,
            seed: 42,
            spread: Spread::Realistic,
            ..SimConfig::default()
        });
        let dir = Dir::new(&format!("bench-{events}"));
        let config =
            dir.write_config(&ConfigText::for_sim(&sim).file_sink("archive", "out/events.jsonl"));
        let config = config.display().to_string();
        let started = Instant::now();
        let (output, rss_kib) = dir
            .command(&["sync", "--config", &config])
            .spawn()
            .wait_with_max_rss_kib();
        let seconds = started.elapsed().as_secs_f64();
        output.assert_code(0);
        let lines = std::fs::read_to_string(dir.join("out/events.jsonl"))
            .map(|t| t.lines().count())
            .unwrap_or(0);
        assert_eq!(lines, events, "every event once in the file");
        println!(
            "{:>9} {:>9.2} {:>12.0} {:>9} {:>13}",
            events,
            seconds,
            events as f64 / seconds,
            sim.request_count(),
            rss_kib
        );
    }
}
