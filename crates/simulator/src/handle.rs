//! Starting and controlling a simulator: it binds, generates its data, then serves on its own
//! thread with its own tokio runtime, so that synchronous tests (which run the shipper as a
//! child process) and async tests can both use it. The handle's methods are synchronous.

use crate::auth::AuthState;
use crate::config::{AccessKey, Behaviour, FaultRule, SimConfig};
use crate::server::{self, RequestLog, Shared, SimState};
use crate::store::{SimEvent, Store};
use crate::synthetic;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::oneshot;
use tracing::{debug, warn};

/// Starts simulators; see [`Simulator::start`].
#[derive(Debug)]
pub struct Simulator;

/// A running simulator. Dropping it stops the server.
pub struct SimHandle {
    address: SocketAddr,
    shared: Shared,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Simulator {
    /// Binds `listen` (port 0 picks a free port), generates the configured data, and serves on
    /// a dedicated thread until the handle is dropped or shut down.
    pub fn start(listen: SocketAddr, config: SimConfig) -> std::io::Result<SimHandle> {
        let listener = std::net::TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;

        let end_at_ms = config.end_at_ms.unwrap_or_else(server::now_ms);
        let mut store = Store::default();
        synthetic::populate(&mut store, &config, end_at_ms);
        let auth = AuthState::from_config(&config);
        let shared: Shared = Arc::new(Mutex::new(SimState::new(
            store,
            config.behaviour,
            config.project_id,
            auth,
        )));

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("modelarts-sim")
            .enable_all()
            .build()?;
        let (stop, stopped) = oneshot::channel();
        let serving = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("modelarts-sim".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => accept_until_stopped(listener, serving, stopped).await,
                        Err(error) => {
                            warn!(error = %error, "Could not register the listener; not serving.")
                        }
                    }
                });
                // Dropping the runtime cancels the connection tasks still running.
            })?;
        Ok(SimHandle {
            address,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

async fn accept_until_stopped(
    listener: tokio::net::TcpListener,
    shared: Shared,
    mut stopped: oneshot::Receiver<()>,
) {
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Typically out of file descriptors; the next accept may succeed.
                warn!(error = %error, "Accept failed.");
                continue;
            }
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                server::handle(Arc::clone(&shared), request)
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                // Simulated drops and truncations end here by design.
                debug!(error = %error, "Connection ended with an error.");
            }
        });
    }
}

impl SimHandle {
    /// `http://127.0.0.1:PORT`: the endpoint to configure in the shipper.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    pub fn project_id(&self) -> String {
        server::lock(&self.shared).project_id.clone()
    }

    /// The name IAM scopes may use for the project.
    pub fn project_name(&self) -> String {
        server::lock(&self.shared).auth.project_name.clone()
    }

    /// The static `X-Auth-Token`, which never expires.
    pub fn token(&self) -> String {
        server::lock(&self.shared).auth.token.clone()
    }

    /// Requests to `POST /v3/auth/tokens` so far, successful or not.
    pub fn iam_logins(&self) -> u64 {
        server::lock(&self.shared).auth.iam_logins
    }

    /// API requests refused by authentication so far (bad, expired or missing token, bad
    /// signature, locked access key).
    pub fn auth_failures(&self) -> u64 {
        server::lock(&self.shared).auth.auth_failures
    }

    /// Replaces the accepted AK/SK pairs from the next request on (credential rotation). The
    /// failure streaks and locks of access keys stay: a lock belongs to the key, not the secret.
    pub fn set_access_keys(&self, access_keys: Vec<AccessKey>) {
        server::lock(&self.shared).auth.access_keys = access_keys;
    }

    /// Every IAM token issued so far expires now; the static token is not affected.
    pub fn expire_tokens(&self) {
        server::lock(&self.shared)
            .store
            .tokens
            .expire_all(Instant::now());
    }

    /// Service ids in creation order (the sample service first if included).
    pub fn service_ids(&self) -> Vec<String> {
        server::lock(&self.shared).store.service_ids()
    }

    /// Adds a running service with no events (or renames an existing one).
    pub fn add_service(&self, service_id: &str, service_name: &str) {
        let publish_at = server::now_ms();
        server::lock(&self.shared).store.upsert_service(
            service_id,
            service_name,
            "running",
            publish_at,
        );
    }

    /// Removes a service: it leaves the services list and its events endpoint answers 404
    /// `ModelArts.3502`. Returns false if there was no such service.
    pub fn remove_service(&self, service_id: &str) -> bool {
        server::lock(&self.shared).store.remove_service(service_id)
    }

    /// Sets a service's status as the services list shows it (`running`, `stopped`, `failed`,
    /// …). Returns false if there is no such service.
    pub fn set_service_status(&self, service_id: &str, status: &str) -> bool {
        server::lock(&self.shared)
            .store
            .set_service_status(service_id, status)
    }

    /// Adds events to a service, visible from the next request. Unknown services are ignored
    /// (with a warning): the handle is a test tool and a typo there should show in the test.
    pub fn add_events(&self, service_id: &str, events: Vec<SimEvent>) {
        if !server::lock(&self.shared)
            .store
            .add_events(service_id, events)
        {
            warn!(service_id = %service_id, "add_events: no such service; events ignored.");
        }
    }

    /// Ground truth: the well-formed rows of a service as (occur_time, event_type, event_info),
    /// ascending, in the stable order within each millisecond.
    pub fn events(&self, service_id: &str) -> Vec<(i64, String, String)> {
        server::lock(&self.shared).store.ground_truth(service_id)
    }

    /// Replaces the behaviour; takes effect from the next request (request numbering goes on).
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        server::lock(&self.shared).behaviour = behaviour;
    }

    /// The current behaviour.
    pub fn behaviour(&self) -> Behaviour {
        server::lock(&self.shared).behaviour.clone()
    }

    /// Replaces only the fault schedule.
    pub fn set_faults(&self, faults: Vec<FaultRule>) {
        server::lock(&self.shared).behaviour.faults = faults;
    }

    /// Adds `events` to `service_id` right after the `n`th events request (1-based, counting
    /// every request to the events endpoint, whatever its answer) has been answered. If that
    /// request was already answered, they are added now.
    pub fn add_events_after_request(&self, n: u64, service_id: &str, events: Vec<SimEvent>) {
        server::lock(&self.shared).add_pending(n, service_id, events);
    }

    /// Every API request so far, in arrival order.
    pub fn requests(&self) -> Vec<RequestLog> {
        server::lock(&self.shared).log.clone()
    }

    /// Number of API requests (events and services list) so far.
    pub fn request_count(&self) -> u64 {
        server::lock(&self.shared).api_requests()
    }

    /// Stops the server and waits for its thread.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            // An error means the server already stopped by itself.
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            warn!("The simulator thread panicked.");
        }
    }
}

// By hand: the shared state holds the token, which Debug output must not show.
impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
