//! A string that must never be printed: tokens, passwords, secret keys. The type lives in
//! the shared `secret` crate (the network sinks use it too); this module keeps the
//! `source::secret::Secret` path working.

pub use ::secret::Secret;
