//! Shards: splitting the services of every source among N runners.
//!
//! Shard `K/N` (K from 0 to N−1, for example a StatefulSet pod's ordinal) follows
//! exactly the services whose key falls on it: the first 8 bytes of
//! SHA-256(`project_id + "/" + service_id`), read big-endian as a `u64`, modulo N.
//! The function depends on nothing but the project and the service, so every shard
//! computes the same split, on any machine, with any config order, and a service
//! never moves unless N changes. `0/1` (the default) follows every service.

use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// One shard of N: this runner follows the services whose key modulo `count` is
/// `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    index: u32,
    count: u32,
}

impl Shard {
    /// The whole: one shard, every service (`0/1`).
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Shard `index` of `count`; `None` unless `index < count`.
    pub fn new(index: u32, count: u32) -> Option<Shard> {
        (index < count).then_some(Shard { index, count })
    }

    /// K, from 0 to N−1.
    pub fn index(self) -> u32 {
        self.index
    }

    /// N, at least 1.
    pub fn count(self) -> u32 {
        self.count
    }

    /// Whether this is the whole (`0/1`), that is no sharding at all.
    pub fn is_whole(self) -> bool {
        self.count == 1
    }

    /// The shard of `count` that follows `service_id` of `project_id`.
    pub fn of(project_id: &str, service_id: &str, count: u32) -> u32 {
        let digest = Sha256::new()
            .chain_update(project_id.as_bytes())
            .chain_update(b"/")
            .chain_update(service_id.as_bytes())
            .finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        let key = u64::from_be_bytes(first);
        // The remainder is below `count`, a u32.
        u32::try_from(key % u64::from(count.max(1))).unwrap_or(0)
    }

    /// Whether this shard follows `service_id` of `project_id`.
    pub fn follows(self, project_id: &str, service_id: &str) -> bool {
        self.is_whole() || Shard::of(project_id, service_id, self.count) == self.index
    }
}

impl Default for Shard {
    fn default() -> Self {
        Shard::WHOLE
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Why a text is not a shard; the message says what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("must be \"K/N\" (shard K of N, K from 0 to N-1, such as \"0/3\"), got {0:?}")]
    Form(String),
    #[error("{0:?}: N must be at least 1 (\"0/1\" is a single runner following every service)")]
    NoShards(String),
    #[error("{text:?}: K must be below N (the shards of {count} are 0/{count} to {last}/{count})")]
    OutOfRange { text: String, count: u32, last: u32 },
}

impl FromStr for Shard {
    type Err = ShardError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let form = || ShardError::Form(text.to_owned());
        let (index, count) = text.split_once('/').ok_or_else(form)?;
        let number = |part: &str| {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(form());
            }
            part.parse::<u32>().map_err(|_| form())
        };
        let (index, count) = (number(index)?, number(count)?);
        if count == 0 {
            return Err(ShardError::NoShards(text.to_owned()));
        }
        Shard::new(index, count).ok_or_else(|| ShardError::OutOfRange {
            text: text.to_owned(),
            count,
            last: count - 1,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Computed independently with Python:
    /// `int.from_bytes(hashlib.sha256((p + "/" + s).encode()).digest()[:8], "big") % n`.
    #[test]
    fn the_shard_function_matches_fixed_vectors() {
        let vectors = [
            // (project_id, service_id, N, first 8 bytes as u64, shard)
            (
                "0123456789abcdef0123456789abcdef",
                "35de3ca9-1bca-4ae7-9cb0-914f30fa7d3e",
                3,
                0x0744_5839_cfb5_f10a_u64,
                1,
            ),
            ("p", "s", 7, 0xa400_5af5_7fa1_3a9c, 0),
            ("proj", "svc-00", 3, 0xb0d0_42db_f4fc_1c43, 0),
            ("", "", 2, 0x8a5e_dab2_8263_2443, 1),
        ];
        for (project, service, count, key, shard) in vectors {
            assert_eq!(
                key % u64::from(count),
                u64::from(shard),
                "the vector itself"
            );
            assert_eq!(
                Shard::of(project, service, count),
                shard,
                "{project}/{service} mod {count}"
            );
            assert!(Shard::new(shard, count).unwrap().follows(project, service));
        }
    }

    #[test]
    fn every_service_has_exactly_one_shard() {
        for count in 1..=5 {
            for n in 0..50 {
                let service = format!("svc-{n}");
                let owners = (0..count)
                    .filter(|k| Shard::new(*k, count).unwrap().follows("proj", &service))
                    .count();
                assert_eq!(owners, 1, "{service} of {count}");
            }
        }
        assert!(Shard::WHOLE.follows("any", "thing"));
    }

    #[test]
    fn parses_k_of_n_and_refuses_the_rest() {
        assert_eq!("0/1".parse::<Shard>().unwrap(), Shard::WHOLE);
        assert_eq!("2/3".parse::<Shard>().unwrap(), Shard::new(2, 3).unwrap());
        assert_eq!("2/3".parse::<Shard>().unwrap().to_string(), "2/3");
        for bad in [
            "1", "a/b", "", "/", "1/", "/3", " 1/3", "1/3 ", "-1/3", "+1/3", "1/3/4",
        ] {
            let error = bad.parse::<Shard>().unwrap_err();
            assert!(matches!(error, ShardError::Form(_)), "{bad:?}: {error}");
            assert!(error.to_string().contains("K/N"), "{error}");
        }
        let error = "0/0".parse::<Shard>().unwrap_err();
        assert!(error.to_string().contains("at least 1"), "{error}");
        let error = "3/3".parse::<Shard>().unwrap_err();
        assert!(error.to_string().contains("0/3 to 2/3"), "{error}");
        assert!("99999999999/3".parse::<Shard>().is_err());
    }
}
