//! `modelarts-sim`: serves the simulated ModelArts API (and IAM's token endpoint) until SIGINT
//! or SIGTERM. The first line of stdout is the base URL (so scripts can read the port chosen
//! for `:0`); the project, static token, IAM user names, access key ids and service ids go to
//! stderr as a hint.

use clap::Parser;
use simulator::{
    AccessKey, Behaviour, DEFAULT_PROJECT_ID, DEFAULT_PROJECT_NAME, DEFAULT_TOKEN, FaultRule,
    IamUser, OffsetMode, SimConfig, Simulator, Spread,
};
use std::ffi::OsStr;
use std::io::Write;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;
use tracing::error;

/// How many service ids the start-up hint lists before eliding the rest.
const HINT_SERVICES: usize = 10;

/// A local ModelArts service-events API with realistic synthetic data, switchable server
/// behaviour and deterministic faults.
///
/// Serves GET /v1/{project_id}/services/{service_id}/events and GET /v1/{project_id}/services
/// (header X-Auth-Token, or an SDK-HMAC-SHA256 AK/SK signature with X-Project-Id), IAM's
/// POST /v3/auth/tokens (password method), plus POST /admin/services and POST /admin/services/{id}/events to
/// add data and POST /admin/faults (a JSON array like ["429@every:3"]) to change faults while
/// running. Prints the base URL as the first line of stdout.
#[derive(Debug, Parser)]
#[command(name = "modelarts-sim", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port (see the first line of stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,

    /// Number of synthetic services.
    #[arg(long, default_value_t = 3)]
    services: usize,

    /// Synthetic events per service.
    #[arg(long, default_value_t = 1000)]
    events_per_service: usize,

    /// Seed of the synthetic data: the same seed gives the same ids, times and texts.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// occur_time (ms since the epoch) of the newest event [default: now].
    #[arg(long)]
    end_at_ms: Option<i64>,

    /// How events are spread in time: realistic, same-ms (all of a service in one
    /// millisecond) or uniform:STEP_MS.
    #[arg(long, default_value = "realistic")]
    spread: Spread,

    /// Also serve the API page's sample service 35de3ca9-1bca-4ae7-9cb0-914f30fa7d3e.
    #[arg(long)]
    sample: bool,

    /// The X-Auth-Token to accept.
    #[arg(long, default_value = DEFAULT_TOKEN)]
    token: String,

    /// The project id to accept in paths.
    #[arg(long, default_value = DEFAULT_PROJECT_ID)]
    project_id: String,

    /// The project's name, which IAM logins may scope to.
    #[arg(long, default_value = DEFAULT_PROJECT_NAME)]
    project_name: String,

    /// An IAM user who can log in, DOMAIN/USER/PASSWORD. Repeatable; replaces the default
    /// demo-domain/demo-user/demo-password.
    #[arg(long = "iam-user", value_name = "DOMAIN/USER/PASSWORD", value_parser = SecretValueParser::<IamUser>::new())]
    iam_users: Vec<IamUser>,

    /// An access key for AK/SK signing, AK:SK, or AK:SK:SECURITY_TOKEN for a temporary key.
    /// Repeatable.
    #[arg(long = "access-key", value_name = "AK:SK[:SECURITY_TOKEN]", value_parser = SecretValueParser::<AccessKey>::new())]
    access_keys: Vec<AccessKey>,

    /// How long an IAM token is valid, e.g. 1h.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    token_lifetime: Duration,

    /// How long an access key is refused after five consecutive failures, e.g. 5m.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    aksk_lockout: Duration,

    /// Treat start_time as exclusive (a row at exactly start_time does not match).
    #[arg(long)]
    start_exclusive: bool,

    /// Treat end_time as exclusive (a row at exactly end_time does not match).
    #[arg(long)]
    end_exclusive: bool,

    /// What `offset` counts: page (as documented), record, record-floored (records,
    /// rounded down to a page boundary), or ignored (a broken server: every page is the first).
    #[arg(long, default_value = "page")]
    offset_unit: OffsetMode,

    /// Serve at most this many rows per page, whatever `limit` asks.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    max_page_size: Option<u32>,

    /// Delay before every API response, e.g. 50ms.
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    latency: Duration,

    /// Retry-After seconds sent with a simulated 429.
    #[arg(long, default_value_t = 1)]
    retry_after: u64,

    /// A fault on API requests numbered from 1: KIND@N, KIND@every:N or KIND@N,M,…
    /// with KIND one of 429, 500, 503, 502-html, truncate, drop. Repeatable.
    #[arg(long = "fault", value_name = "KIND@WHEN")]
    faults: Vec<FaultRule>,
}

/// Parses an option whose value holds a secret. Clap's own parsers quote a refused value in
/// the error; this one says only what was expected.
#[derive(Clone)]
struct SecretValueParser<T>(PhantomData<fn() -> T>);

impl<T> SecretValueParser<T> {
    fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> clap::builder::TypedValueParser for SecretValueParser<T>
where
    T: std::str::FromStr<Err = simulator::ParseOptionError> + Clone + Send + Sync + 'static,
{
    type Value = T;

    fn parse_ref(
        &self,
        command: &clap::Command,
        argument: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let option = argument.map(ToString::to_string).unwrap_or_default();
        let refuse = |reason: String| {
            clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!("invalid value for {option}: {reason}\n"),
            )
            .with_cmd(command)
        };
        value
            .to_str()
            .ok_or_else(|| refuse("not UTF-8".to_owned()))?
            .parse::<T>()
            .map_err(|error| refuse(error.to_string()))
    }
}

impl Args {
    fn into_config(self) -> SimConfig {
        let defaults = SimConfig::default();
        SimConfig {
            project_id: self.project_id,
            project_name: self.project_name,
            token: self.token,
            iam_users: if self.iam_users.is_empty() {
                defaults.iam_users
            } else {
                self.iam_users
            },
            token_lifetime: self.token_lifetime,
            access_keys: self.access_keys,
            aksk_lockout: self.aksk_lockout,
            services: self.services,
            events_per_service: self.events_per_service,
            seed: self.seed,
            end_at_ms: self.end_at_ms,
            spread: self.spread,
            include_sample: self.sample,
            behaviour: Behaviour {
                start_inclusive: !self.start_exclusive,
                end_inclusive: !self.end_exclusive,
                offset_mode: self.offset_unit,
                max_page_size: self.max_page_size,
                latency: self.latency,
                retry_after_secs: self.retry_after,
                faults: self.faults,
                claimed_total_count: None,
            },
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let listen = args.listen;
    let config = args.into_config();
    // Names and key ids only: passwords and secret keys stay out of the output.
    let credentials: Vec<String> = config
        .iam_users
        .iter()
        .map(|user| format!("IAM user:   {}/{}", user.domain, user.user))
        .chain(config.access_keys.iter().map(|key| {
            let kind = if key.security_token.is_some() {
                " (temporary)"
            } else {
                ""
            };
            format!("access key: {}{kind}", key.access_key)
        }))
        .collect();
    let sim = match Simulator::start(listen, config) {
        Ok(sim) => sim,
        Err(e) => {
            error!(listen = %listen, error = %e, "Could not start the simulator.");
            return ExitCode::FAILURE;
        }
    };

    let mut stdout = std::io::stdout().lock();
    // If stdout is gone nobody can learn the port, but serving still helps whoever knows it.
    let _ = writeln!(stdout, "{}", sim.base_url()).and_then(|()| stdout.flush());
    drop(stdout);
    print_hint(&sim, &credentials);

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            error!(error = %e, "Could not start the signal runtime.");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(wait_for_signal());
    sim.shutdown();
    ExitCode::SUCCESS
}

fn print_hint(sim: &simulator::SimHandle, credentials: &[String]) {
    let ids = sim.service_ids();
    eprintln!("modelarts-sim serving {} service(s)", ids.len());
    eprintln!(
        "  project:    {} (id {})",
        sim.project_name(),
        sim.project_id()
    );
    eprintln!("  token:      {} (header X-Auth-Token)", sim.token());
    eprintln!("  IAM:        POST {}/v3/auth/tokens", sim.base_url());
    for line in credentials {
        eprintln!("  {line}");
    }
    for id in ids.iter().take(HINT_SERVICES) {
        eprintln!("  service:    {id}");
    }
    if ids.len() > HINT_SERVICES {
        eprintln!(
            "  … and {} more (GET /v1/{{project_id}}/services)",
            ids.len() - HINT_SERVICES
        );
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
                return;
            }
            Err(e) => error!(error = %e, "Cannot listen for SIGTERM; stop with SIGINT."),
        }
    }
    if let Err(e) = tokio::signal::ctrl_c().await {
        error!(error = %e, "Cannot listen for SIGINT; serving until killed.");
        std::future::pending::<()>().await;
    }
}
