//! One service's pull, run in its own task one batch ahead of the job that hands its
//! batches to the sinks, so that the next page is requested, received and parsed while
//! the current one is turned into records and offered.
//!
//! The pull itself ([`source::ServicePull`]) is unchanged: it asks the same requests in
//! the same order, whatever the job does with its batches, and its batches reach the
//! job in order. Only *reading* runs ahead; positions still move only when a sink's
//! driver commits what it acknowledged, so a batch read ahead and then dropped (a
//! shutdown, every sink gone) is simply read again next run.
//!
//! At most one batch waits beyond the one the job holds: the task reserves room in a
//! channel of one *before* it reads, so memory stays that of two pages whatever the
//! backlog.

use crate::run::SourceRuntime;
use source::{PullOptions, PulledBatch, ServicePull, SourceError};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

/// What the task read: the pull's next batch, and what the pull knew then.
struct Read {
    next: Result<Option<PulledBatch>, SourceError>,
    total_count: Option<u64>,
}

/// A [`ServicePull`] running one batch ahead in its own task; the task ends when this
/// is dropped, wherever it waits (a request in flight, a backoff, the rate limiter).
pub(crate) struct PrefetchedPull {
    reads: mpsc::Receiver<Read>,
    task: Option<JoinHandle<()>>,
    requests: Arc<AtomicU64>,
    total_count: Option<u64>,
    /// Whether the last read (the end, or an error) was handed out.
    ended: bool,
}

impl PrefetchedPull {
    /// Starts reading `service_id` of `source` from `floor`.
    pub fn spawn(
        source: Arc<SourceRuntime>,
        service_id: String,
        floor: i64,
        options: PullOptions,
    ) -> Self {
        let (sender, reads) = mpsc::channel(1);
        let requests = Arc::new(AtomicU64::new(0));
        let counter = requests.clone();
        let task = tokio::spawn(
            async move {
                let mut pull = ServicePull::new(
                    &source.client,
                    &source.model,
                    &service_id,
                    Some(floor),
                    options,
                )
                .counting_into(counter);
                loop {
                    // Room first, then the read: never more than one batch waits.
                    let Ok(room) = sender.reserve().await else {
                        return;
                    };
                    let next = pull.next_batch().await;
                    let last = !matches!(next, Ok(Some(_)));
                    room.send(Read {
                        next,
                        total_count: pull.total_count(),
                    });
                    if last {
                        return;
                    }
                }
            }
            .instrument(tracing::Span::current()),
        );
        PrefetchedPull {
            reads,
            task: Some(task),
            requests,
            total_count: None,
            ended: false,
        }
    }

    /// The next batch, or `None` when the service has been read to its end (and after
    /// an error, like [`ServicePull::next_batch`]).
    pub async fn next_batch(&mut self) -> Result<Option<PulledBatch>, SourceError> {
        if self.ended {
            return Ok(None);
        }
        match self.reads.recv().await {
            Some(read) => {
                if read.total_count.is_some() {
                    self.total_count = read.total_count;
                }
                self.ended = !matches!(read.next, Ok(Some(_)));
                read.next
            }
            // The task ended before its last read: it panicked. The job fails the way
            // it did when the pull ran in it.
            None => {
                let task = self
                    .task
                    .take()
                    .expect("the pull's task is taken only once it ended");
                match task.await {
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    _ => unreachable!(
                        "the pull's task ends early only by a panic or when this is dropped"
                    ),
                }
            }
        }
    }

    /// Requests made so far, including one in flight.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// What the first page's `total_count` announced, once a batch was read.
    pub fn total_count(&self) -> Option<u64> {
        self.total_count
    }
}

impl Drop for PrefetchedPull {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::sim_settings::sim_settings;
    use simulator::{SimConfig, Simulator, Spread};
    use source::{ModelArtsClient, OffsetUnit};
    use std::time::Duration;

    fn options(page_size: u32) -> PullOptions {
        PullOptions {
            page_size,
            event_type: None,
            offset_unit: OffsetUnit::Auto,
            max_clock_skew: Duration::from_secs(300),
        }
    }

    /// Reading ahead changes nothing the pull does: the same batches in the same order,
    /// from the same requests, and then the end (again after it).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_prefetched_pull_reads_what_the_pull_reads_with_the_same_requests() {
        let sim = Simulator::start(
            "127.0.0.1:0".parse().unwrap(),
            SimConfig {
                services: 1,
                events_per_service: 2_500,
                seed: 11,
                spread: Spread::Realistic,
                ..SimConfig::default()
            },
        )
        .unwrap();
        let settings = sim_settings(&sim, 100);
        let service = sim.service_ids().remove(0);
        let client = ModelArtsClient::new(&settings).unwrap();
        let source = Arc::new(SourceRuntime::new(settings, client));

        let mut pull = ServicePull::new(
            &source.client,
            &source.model,
            &service,
            Some(0),
            options(100),
        );
        let mut expected = Vec::new();
        while let Some(batch) = pull.next_batch().await.unwrap() {
            expected.push((batch.events, batch.through));
        }
        let plain_requests = sim.request_count();
        assert_eq!(plain_requests, pull.requests());
        assert!(expected.len() > 20, "{} batches", expected.len());

        let mut ahead = PrefetchedPull::spawn(source.clone(), service, 0, options(100));
        let mut read = Vec::new();
        while let Some(batch) = ahead.next_batch().await.unwrap() {
            read.push((batch.events, batch.through));
        }
        assert!(ahead.next_batch().await.unwrap().is_none());
        assert_eq!(read, expected);
        assert_eq!(ahead.requests(), pull.requests());
        assert_eq!(sim.request_count(), 2 * plain_requests);
        assert_eq!(ahead.total_count(), pull.total_count());
    }
}
