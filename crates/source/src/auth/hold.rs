//! The refusal hold: the one lockout policy of a source.
//!
//! Credentials that were refused (a bad AK/SK signature, a wrong password, a revoked
//! token) are not presented again while they are unchanged: five bad AK/SK signatures in a
//! row lock the access key for five minutes, and repeated bad passwords lock the IAM user.
//! A hold ends when its time has passed, or as soon as the secret files hold something else
//! (a rotation). Requests of the run fail at once with the held refusal; a new run (a poll
//! of `runner run`) is told how long it still has to wait.

use crate::error::SourceError;
use crate::secret::Secret;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;
use tracing::warn;

/// How long refused credentials are not presented again (the API gateway's AK/SK lockout
/// lasts five minutes).
pub(crate) const HOLD_REFUSAL: Duration = Duration::from_secs(300);

/// One held refusal.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub error: SourceError,
    /// The secrets that were refused.
    pub refused: Vec<Secret>,
    pub since: Instant,
    pub until: Instant,
}

/// The refusal held for one source, if any.
#[derive(Debug, Default)]
pub(crate) struct RefusalHold {
    held: Mutex<Option<Held>>,
}

impl RefusalHold {
    /// Holds `error`, the refusal of `refused`, for [`HOLD_REFUSAL`].
    pub fn hold(&self, source: &str, error: &SourceError, refused: Vec<Secret>) {
        warn!(
            source = %source,
            hold_secs = HOLD_REFUSAL.as_secs(),
            error = %error,
            "Credentials refused; not presenting them again until they change or the hold ends."
        );
        let now = Instant::now();
        *self.lock() = Some(Held {
            error: error.clone(),
            refused,
            since: now,
            until: now + HOLD_REFUSAL,
        });
    }

    /// The refusal held now (one whose time has passed is forgotten).
    pub fn active(&self) -> Option<Held> {
        let mut held = self.lock();
        if held.as_ref().is_some_and(|h| Instant::now() >= h.until) {
            *held = None;
        }
        held.clone()
    }

    /// Ends the hold (the credentials changed).
    pub fn release(&self) {
        *self.lock() = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Held>> {
        // A poisoned lock only means a thread panicked while setting it; the value inside
        // is a whole `Option<Held>` either way.
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Held {
    /// How the hold reads to a new run: the refusal, how long ago, how long still.
    pub fn held_back(&self, auth: crate::settings::AuthKind) -> SourceError {
        let now = Instant::now();
        SourceError::HeldBack {
            auth,
            ago: now.saturating_duration_since(self.since),
            wait: self.until.saturating_duration_since(now),
            refusal: Box::new(self.error.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::AuthKind;

    fn refusal() -> SourceError {
        SourceError::Auth {
            request: "GET /x".into(),
            auth: AuthKind::Aksk,
            status: 401,
            code: Some("APIG.0301".into()),
            message: "bad signature".into(),
            hint: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_hold_lasts_five_minutes_and_tells_how_long_is_left() {
        let hold = RefusalHold::default();
        assert!(hold.active().is_none());
        hold.hold("s", &refusal(), vec![Secret::new("sk")]);
        tokio::time::advance(Duration::from_secs(60)).await;
        let held = hold.active().map(|h| h.held_back(AuthKind::Aksk));
        match held {
            Some(SourceError::HeldBack { ago, wait, .. }) => {
                assert_eq!((ago.as_secs(), wait.as_secs()), (60, 240));
            }
            other => panic!("{other:?}"),
        }
        tokio::time::advance(Duration::from_secs(240)).await;
        assert!(hold.active().is_none(), "the hold ends after five minutes");
    }

    #[test]
    fn a_hold_gives_the_reason_of_its_kind_and_names_the_refusal_once() {
        let hold = RefusalHold::default();
        hold.hold("s", &refusal(), Vec::new());
        let held = hold.active().expect("a hold was just set");
        for (kind, reason) in [
            (AuthKind::Aksk, "lock the access key for five minutes"),
            (AuthKind::Password, "lock the IAM user"),
            (
                AuthKind::Token,
                "a refused token does not become valid again",
            ),
        ] {
            let text = held.held_back(kind).to_string();
            assert!(text.contains(reason), "{text}");
            assert!(text.contains("HTTP 401 APIG.0301: bad signature"), "{text}");
            assert_eq!(text.matches("authentication (").count(), 1, "{text}");
        }
        let token = held.held_back(AuthKind::Token).to_string();
        assert!(!token.contains("AK/SK"), "{token}");
    }

    #[test]
    fn a_released_hold_is_gone() {
        let hold = RefusalHold::default();
        hold.hold("s", &refusal(), Vec::new());
        hold.release();
        assert!(hold.active().is_none());
    }
}
