//! Checks that an output file holds every event once: as many lines as events, each a
//! JSON record with an `id`, and as many distinct ids as lines. The ids are kept (as the
//! first 128 bits of the hex SHA-256, which is plenty to tell a million apart) so that two
//! legs' outputs can be compared: the Python baseline must write the records the runner
//! writes, not merely as many.

use anyhow::{Context, bail};
use serde::Deserialize;
use std::collections::HashSet;
use std::io::BufRead;
use std::path::Path;

/// The ids of a file's records.
#[derive(Debug, Default)]
pub struct IdSet(HashSet<u128>);

impl IdSet {
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl PartialEq for IdSet {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

/// The one field the check reads; the others are skipped unparsed.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
}

/// Reads `path` and fails unless it holds exactly `events` records with distinct ids.
pub fn every_event_once(path: &Path, events: usize, who: &str) -> anyhow::Result<IdSet> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("{who}: cannot open its output {}", path.display()))?;
    let mut ids = HashSet::with_capacity(events);
    let mut lines = 0usize;
    for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{who}: cannot read {}", path.display()))?;
        let record: Line = serde_json::from_str(&line).with_context(|| {
            format!(
                "{who}: line {} of {} is not a record with an id: {:?}",
                number + 1,
                path.display(),
                line.chars().take(200).collect::<String>()
            )
        })?;
        ids.insert(id_bits(&record.id).with_context(|| {
            format!(
                "{who}: line {} has an id that is not hex SHA-256",
                number + 1
            )
        })?);
        lines += 1;
    }
    if lines != events || ids.len() != events {
        bail!(
            "{who}: {} holds {lines} records with {} distinct ids; expected every one of {events} events once",
            path.display(),
            ids.len()
        );
    }
    Ok(IdSet(ids))
}

/// The first 128 bits of a 64-digit lowercase hex id.
fn id_bits(id: &str) -> Option<u128> {
    if id.len() != 64 {
        return None;
    }
    u128::from_str_radix(id.get(..32)?, 16).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A 64-digit hex id whose first 128 bits are `n`.
    fn id(n: u8) -> String {
        format!("{n:032x}{:032x}", 0)
    }

    fn write(lines: &[String]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn every_event_once_passes_and_keeps_the_ids() {
        let lines: Vec<String> = (1..=3)
            .map(|n| format!("{{\"id\":\"{}\",\"occur_time\":{n}}}", id(n)))
            .collect();
        let file = write(&lines);
        let ids = every_event_once(file.path(), 3, "t").unwrap();
        assert_eq!(ids.len(), 3);
        let reordered = write(&[lines[2].clone(), lines[0].clone(), lines[1].clone()]);
        assert_eq!(every_event_once(reordered.path(), 3, "t").unwrap(), ids);
    }

    #[test]
    fn a_duplicate_or_a_missing_event_fails() {
        let a = format!("{{\"id\":\"{}\"}}", id(1));
        let b = format!("{{\"id\":\"{}\"}}", id(2));
        let twice = write(&[a.clone(), a.clone()]);
        let error = every_event_once(twice.path(), 2, "t")
            .unwrap_err()
            .to_string();
        assert!(error.contains("1 distinct"), "{error}");
        let short = write(&[a, b]);
        assert!(every_event_once(short.path(), 3, "t").is_err());
    }

    #[test]
    fn a_line_that_is_not_a_record_fails() {
        let file = write(&["{\"id\":\"abc\"}".to_owned()]);
        assert!(every_event_once(file.path(), 1, "t").is_err());
        let torn = write(&[format!("{{\"id\":\"{}\"", id(1))]);
        assert!(every_event_once(torn.path(), 1, "t").is_err());
    }
}
