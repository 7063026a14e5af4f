//! SIGINT and SIGTERM for the commands that deliver (`sync`, `run`, `dead-letter replay`):
//! the first signal turns a shutdown watch true (every wait on the source side ends; the
//! batches in flight are finished and committed within `shutdown_timeout`) and is
//! remembered for the exit code; a second one exits the process at once, with the code of
//! that second signal. Committed work is safe either way: every commit is one SQLite
//! transaction, and the kernel releases the state file's lock.
//!
//! Shutdown is a value passed to the pipeline (mini-redis `shutdown.rs`), not a global.

use crate::app::exit;
use std::sync::{Arc, OnceLock};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::warn;

/// A signal that stops a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGINT (Ctrl-C): exit 130.
    Interrupt,
    /// SIGTERM (a service manager, `kill`): exit 143.
    Terminate,
}

impl Stop {
    /// The exit code a command stopped by this signal ends with (128 + the signal's number).
    pub fn code(self) -> u8 {
        match self {
            Stop::Interrupt => exit::INTERRUPTED,
            Stop::Terminate => exit::TERMINATED,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Stop::Interrupt => "SIGINT",
            Stop::Terminate => "SIGTERM",
        }
    }
}

/// Listens for SIGINT and SIGTERM from its creation until it is dropped.
pub struct Signals {
    shutdown: watch::Receiver<bool>,
    first: Arc<OnceLock<Stop>>,
    watcher: JoinHandle<()>,
}

impl Signals {
    /// Starts listening. Must be called inside the runtime; the handlers are installed
    /// before it returns, so no signal between this call and the first wait is lost.
    pub fn listen() -> Signals {
        let (stop, shutdown) = watch::channel(false);
        let first = Arc::new(OnceLock::new());
        let seen = first.clone();
        let mut listener = Listener::install();
        let watcher = tokio::spawn(async move {
            let signal = listener.next().await;
            let _ = seen.set(signal);
            warn!(
                signal = signal.name(),
                "Interrupted; finishing the batches in flight (at most runner.shutdown_timeout), \
                 then stopping. A second signal stops at once."
            );
            let _ = stop.send(true);
            let second = listener.next().await;
            warn!(
                signal = second.name(),
                "Second signal: stopping at once; what was committed is kept."
            );
            std::process::exit(i32::from(second.code()));
        });
        Signals {
            shutdown,
            first,
            watcher,
        }
    }

    /// A watch that turns true at the first signal.
    pub fn shutdown(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    /// The first signal, if one came.
    pub fn received(&self) -> Option<Stop> {
        self.first.get().copied()
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

/// The signal streams (SIGINT and SIGTERM on Unix; Ctrl-C elsewhere).
struct Listener {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Listener {
    fn install() -> Listener {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let streams = match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) {
                (Ok(int), Ok(term)) => Some((int, term)),
                (Err(e), _) | (_, Err(e)) => {
                    warn!(error = %e, "Cannot listen for SIGTERM; only Ctrl-C stops cleanly.");
                    None
                }
            };
            Listener { streams }
        }
        #[cfg(not(unix))]
        {
            Listener {}
        }
    }

    async fn next(&mut self) -> Stop {
        #[cfg(unix)]
        if let Some((int, term)) = &mut self.streams {
            return tokio::select! {
                _ = int.recv() => Stop::Interrupt,
                _ = term.recv() => Stop::Terminate,
            };
        }
        // Without the streams, Ctrl-C is all there is; should even it fail, never stop.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        Stop::Interrupt
    }
}

/// The exit code of a command that ran: the first that applies of 130/143 (stopped by a
/// signal), 1 (something failed), 0. Codes 3 (the state is locked) and 2 (a bad command
/// line or configuration) end a command before it runs, so they come first.
pub fn outcome_code(stopped: Option<Stop>, all_delivered: bool) -> u8 {
    match (stopped, all_delivered) {
        (Some(signal), _) => signal.code(),
        (None, false) => exit::FAILED,
        (None, true) => exit::OK,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_outranks_a_failure_which_outranks_success() {
        assert_eq!(outcome_code(Some(Stop::Interrupt), false), 130);
        assert_eq!(outcome_code(Some(Stop::Terminate), true), 143);
        assert_eq!(outcome_code(None, false), 1);
        assert_eq!(outcome_code(None, true), 0);
    }
}
