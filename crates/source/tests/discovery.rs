//! Service discovery over real HTTP: the services list is read completely
//! whatever the server's offset unit and served page size, and the
//! `discover` filter picks by name glob and status.

#![allow(clippy::unwrap_used)]

mod harness;

use harness::settings_for;
use simulator::{Behaviour, OffsetMode, SimConfig, Simulator};
use source::discovery::{list_services, matches};
use source::{Discover, ModelArtsClient};
use std::collections::HashSet;

fn sim_with_services(count: usize, behaviour: Behaviour) -> simulator::SimHandle {
    Simulator::start(
        "127.0.0.1:0".parse().unwrap(),
        SimConfig {
            services: count,
            events_per_service: 1,
            seed: 5,
            behaviour,
            ..SimConfig::default()
        },
    )
    .unwrap()
}

#[tokio::test]
async fn every_service_is_listed_once_under_every_paging_model() {
    for offset_mode in [
        OffsetMode::Page,
        OffsetMode::Record,
        OffsetMode::RecordFloored,
    ] {
        for max_page_size in [None, Some(4)] {
            let behaviour = Behaviour {
                offset_mode,
                max_page_size,
                ..Behaviour::default()
            };
            let sim = sim_with_services(23, behaviour);
            let client = ModelArtsClient::new(&settings_for(&sim)).unwrap();
            let listed = list_services(&client, 5).await.unwrap();
            let ids: HashSet<String> = listed.iter().map(|s| s.service_id.clone()).collect();
            let expected: HashSet<String> = sim.service_ids().into_iter().collect();
            assert_eq!(
                ids, expected,
                "{offset_mode:?} with max page size {max_page_size:?}"
            );
            assert_eq!(listed.len(), 23, "no service twice");
        }
    }
}

#[tokio::test]
async fn the_filter_follows_names_and_statuses() {
    let sim = sim_with_services(0, Behaviour::default());
    sim.add_service("11111111-0000-4000-8000-000000000001", "prod-ocr");
    sim.add_service("11111111-0000-4000-8000-000000000002", "prod-asr");
    sim.add_service("11111111-0000-4000-8000-000000000003", "dev-ocr");
    let client = ModelArtsClient::new(&settings_for(&sim)).unwrap();
    let listed = list_services(&client, 1000).await.unwrap();
    let discover = Discover {
        name: Some("prod-*".to_owned()),
        status: Vec::new(),
    };
    let mut picked: Vec<String> = listed
        .iter()
        .filter(|s| matches(&discover, s))
        .map(|s| s.service_name.clone())
        .collect();
    picked.sort();
    assert_eq!(picked, vec!["prod-asr", "prod-ocr"]);
}

#[tokio::test]
async fn a_services_list_that_ignores_offset_or_lies_in_its_total_ends() {
    for claimed_total_count in [None, Some(100_000_000_000_000_000_000)] {
        let behaviour = Behaviour {
            offset_mode: OffsetMode::Ignored,
            max_page_size: Some(4),
            claimed_total_count,
            ..Behaviour::default()
        };
        let sim = sim_with_services(10, behaviour);
        let client = ModelArtsClient::new(&settings_for(&sim)).unwrap();
        let listed = list_services(&client, 5).await.unwrap();
        // The first page, then one that brings nothing new: the listing ends there
        // (with a warning) rather than page for ever.
        assert_eq!(listed.len(), 4, "{claimed_total_count:?}");
        assert!(
            sim.request_count() <= 3,
            "{claimed_total_count:?}: {} requests",
            sim.request_count()
        );
    }
}
