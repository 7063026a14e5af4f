//! What a simulator serves and how it behaves: the data set ([`SimConfig`], [`Spread`]) and the
//! behaviours the ModelArts documentation leaves open or that a real gateway shows under load
//! ([`Behaviour`], [`OffsetMode`], [`FaultRule`]).
//!
//! Also who may call it: the static token, IAM users who log in for tokens ([`IamUser`]) and
//! AK/SK pairs that sign requests ([`AccessKey`]).
//!
//! The text forms parsed here (`uniform:100`, `record-floored`, `429@every:3`,
//! `DOMAIN/USER/PASSWORD`, `AK:SK[:SECURITY_TOKEN]`) are the ones the `modelarts-sim` command
//! line accepts.
//!
//! Upstream API: <https://docs.otc.t-systems.com/modelarts/api-ref/service_management/obtaining_service_event_logs.html>

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The project id a simulator answers to unless configured otherwise.
pub const DEFAULT_PROJECT_ID: &str = "0123456789abcdef0123456789abcdef";
/// The `X-Auth-Token` a simulator accepts unless configured otherwise.
pub const DEFAULT_TOKEN: &str = "sim-token";
/// The name of the project, as IAM scopes accept it, unless configured otherwise.
pub const DEFAULT_PROJECT_NAME: &str = "eu-de";
/// The domain (account) of the IAM user a simulator knows unless configured otherwise.
pub const DEFAULT_IAM_DOMAIN: &str = "demo-domain";
/// The name of that default IAM user.
pub const DEFAULT_IAM_USER: &str = "demo-user";
/// The password of that default IAM user.
pub const DEFAULT_IAM_PASSWORD: &str = "demo-password";
/// How long an IAM token lives, as on the real cloud.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
/// How long five consecutive AK/SK failures lock the access key, as the API gateway does.
pub const DEFAULT_AKSK_LOCKOUT: Duration = Duration::from_secs(5 * 60);

/// An IAM user who can get a token with `POST /v3/auth/tokens` (password method).
#[derive(Clone, PartialEq, Eq)]
pub struct IamUser {
    /// The account (domain) name, e.g. `OTC00000000001000000xxx`.
    pub domain: String,
    pub user: String,
    pub password: String,
}

impl IamUser {
    pub fn new(domain: &str, user: &str, password: &str) -> Self {
        Self {
            domain: domain.to_owned(),
            user: user.to_owned(),
            password: password.to_owned(),
        }
    }
}

impl fmt::Debug for IamUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IamUser")
            .field("domain", &self.domain)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// An AK/SK pair that signs requests (`SDK-HMAC-SHA256`). With a security token it is a
/// temporary key, whose requests must also carry that token, signed, as `X-Security-Token`.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub access_key: String,
    pub secret_key: String,
    pub security_token: Option<String>,
}

impl AccessKey {
    /// A permanent key.
    pub fn new(access_key: &str, secret_key: &str) -> Self {
        Self {
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
            security_token: None,
        }
    }

    /// A temporary key, valid only with its security token.
    pub fn temporary(access_key: &str, secret_key: &str, security_token: &str) -> Self {
        Self {
            security_token: Some(security_token.to_owned()),
            ..Self::new(access_key, secret_key)
        }
    }
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKey")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Everything a simulator needs to start: identity, synthetic data and behaviour.
#[derive(Clone)]
pub struct SimConfig {
    /// The only project id the API accepts in its paths (others get 403).
    pub project_id: String,
    /// The name of that project, which an IAM login may scope to instead of the id.
    pub project_name: String,
    /// A static `X-Auth-Token` the API always accepts (it never expires).
    pub token: String,
    /// Who can log in with `POST /v3/auth/tokens`.
    pub iam_users: Vec<IamUser>,
    /// How long an issued IAM token is accepted.
    pub token_lifetime: Duration,
    /// AK/SK pairs whose signed requests the API accepts.
    pub access_keys: Vec<AccessKey>,
    /// How long an access key is refused after five consecutive failures.
    pub aksk_lockout: Duration,
    /// Number of synthetic services.
    pub services: usize,
    /// Synthetic events generated for each service.
    pub events_per_service: usize,
    /// Seed of all synthetic data: the same seed gives the same ids, times and texts.
    pub seed: u64,
    /// `occur_time` of the newest synthetic event; `None` means the time of start.
    pub end_at_ms: Option<i64>,
    /// How synthetic events are spread in time.
    pub spread: Spread,
    /// Also serve the API page's sample service `35de3ca9-1bca-4ae7-9cb0-914f30fa7d3e`.
    pub include_sample: bool,
    /// The switchable server behaviour (bounds, offset unit, page size, latency, faults).
    pub behaviour: Behaviour,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            project_id: DEFAULT_PROJECT_ID.to_owned(),
            project_name: DEFAULT_PROJECT_NAME.to_owned(),
            token: DEFAULT_TOKEN.to_owned(),
            iam_users: vec![IamUser::new(
                DEFAULT_IAM_DOMAIN,
                DEFAULT_IAM_USER,
                DEFAULT_IAM_PASSWORD,
            )],
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
            access_keys: Vec::new(),
            aksk_lockout: DEFAULT_AKSK_LOCKOUT,
            services: 1,
            events_per_service: 100,
            seed: 1,
            end_at_ms: None,
            spread: Spread::Realistic,
            include_sample: false,
            behaviour: Behaviour::default(),
        }
    }
}

// The token is a credential even here: the shipper's rule "secrets never in Debug" holds for
// its test server too, so a config printed in a failing test does not teach bad habits.
impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("project_id", &self.project_id)
            .field("project_name", &self.project_name)
            .field("token", &"<redacted>")
            .field("iam_users", &self.iam_users)
            .field("token_lifetime", &self.token_lifetime)
            .field("access_keys", &self.access_keys)
            .field("aksk_lockout", &self.aksk_lockout)
            .field("services", &self.services)
            .field("events_per_service", &self.events_per_service)
            .field("seed", &self.seed)
            .field("end_at_ms", &self.end_at_ms)
            .field("spread", &self.spread)
            .field("include_sample", &self.include_sample)
            .field("behaviour", &self.behaviour)
            .finish()
    }
}

/// How the synthetic events of one service are placed in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spread {
    /// Deployments as bursts within milliseconds to seconds, seconds to minutes between
    /// episodes, with occasional ties and identical twins.
    Realistic,
    /// Every event of a service in one millisecond: tests the overfull millisecond.
    SameMillisecond,
    /// One event every `step_ms` milliseconds.
    Uniform { step_ms: i64 },
}

/// How the server reads the `offset` query parameter; the documentation says "start page" but
/// real ModelArts list APIs have been seen doing each of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OffsetMode {
    /// `offset` counts pages: skip `offset * served_size` rows (as documented).
    Page,
    /// `offset` counts rows: skip `offset` rows.
    Record,
    /// `offset` counts rows but the server pages internally: skip
    /// `(offset / served_size) * served_size` rows.
    RecordFloored,
    /// A broken server: `offset` is ignored and every page is the first one.
    Ignored,
}

/// A misbehaviour the simulator can answer a request with instead of serving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// 429 with `Retry-After` and an `APIG.0308` throttling body.
    TooManyRequests,
    /// 500 with a `ModelArts.0010` body.
    InternalError,
    /// 503 with an API gateway body.
    Unavailable,
    /// 502 with an HTML page, as a gateway in front of the service sends it.
    BadGatewayHtml,
    /// 200 with the `Content-Length` of the full body, part of it sent, then the connection closes.
    TruncatedBody,
    /// The connection closes without any response.
    DroppedConnection,
}

/// When a [`FaultRule`] fires, over API requests (events and services list) numbered from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultWhen {
    /// Exactly request number N.
    At(u64),
    /// Every Nth request: N, 2N, 3N, …
    Every(u64),
    /// Each of the listed request numbers.
    AtEach(Vec<u64>),
}

impl FaultWhen {
    /// Whether the rule fires for API request number `request` (1-based).
    pub fn matches(&self, request: u64) -> bool {
        match self {
            FaultWhen::At(n) => *n == request,
            FaultWhen::Every(n) => *n > 0 && request.is_multiple_of(*n),
            FaultWhen::AtEach(list) => list.contains(&request),
        }
    }
}

/// One fault and the requests it is served on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    pub fault: Fault,
    pub when: FaultWhen,
}

impl FaultRule {
    pub fn at(fault: Fault, request: u64) -> Self {
        Self {
            fault,
            when: FaultWhen::At(request),
        }
    }

    pub fn every(fault: Fault, nth: u64) -> Self {
        Self {
            fault,
            when: FaultWhen::Every(nth),
        }
    }

    pub fn at_each(fault: Fault, requests: Vec<u64>) -> Self {
        Self {
            fault,
            when: FaultWhen::AtEach(requests),
        }
    }
}

/// The server behaviour that can be switched, also while running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behaviour {
    /// Whether a row at exactly `start_time` matches.
    pub start_inclusive: bool,
    /// Whether a row at exactly `end_time` matches.
    pub end_inclusive: bool,
    pub offset_mode: OffsetMode,
    /// A larger `limit` is silently served as this many rows.
    pub max_page_size: Option<u32>,
    /// Delay before every API response.
    pub latency: Duration,
    /// The `Retry-After` value of a simulated 429, in seconds.
    pub retry_after_secs: u64,
    /// The first rule (in this order) that matches a request number decides its fault.
    pub faults: Vec<FaultRule>,
    /// A lying server: every events and services page reports this `total_count` instead
    /// of the number of matching rows (it may exceed any 64-bit count).
    pub claimed_total_count: Option<u128>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            start_inclusive: true,
            end_inclusive: true,
            offset_mode: OffsetMode::Page,
            max_page_size: None,
            latency: Duration::ZERO,
            retry_after_secs: 1,
            faults: Vec::new(),
            claimed_total_count: None,
        }
    }
}

impl Behaviour {
    /// The fault to serve on API request number `request`, if any.
    pub fn fault_for(&self, request: u64) -> Option<Fault> {
        self.faults
            .iter()
            .find(|rule| rule.when.matches(request))
            .map(|rule| rule.fault)
    }

    /// The number of rows a request asking for `limit` is served.
    pub fn served_size(&self, limit: u32) -> u32 {
        match self.max_page_size {
            Some(max) => limit.min(max.max(1)),
            None => limit,
        }
    }

    /// How many matching rows to skip for `offset` with pages of `served_size` rows.
    pub fn rows_to_skip(&self, offset: u64, served_size: u32) -> u64 {
        let size = u64::from(served_size.max(1));
        match self.offset_mode {
            OffsetMode::Page => offset.saturating_mul(size),
            OffsetMode::Record => offset,
            OffsetMode::RecordFloored => (offset / size) * size,
            OffsetMode::Ignored => 0,
        }
    }

    /// The `total_count` a page reports when `matching` rows match.
    pub fn total_count(&self, matching: usize) -> u128 {
        self.claimed_total_count.unwrap_or(matching as u128)
    }
}

/// A command-line form of a simulator option that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseOptionError {
    #[error("unknown spread {0:?}: expected realistic, same-ms or uniform:<step_ms>")]
    Spread(String),
    #[error("unknown offset unit {0:?}: expected page, record, record-floored or ignored")]
    OffsetMode(String),
    #[error("unknown fault kind {0:?}: expected 429, 500, 503, 502-html, truncate or drop")]
    FaultKind(String),
    #[error("bad fault schedule {0:?}: expected KIND@N, KIND@every:N or KIND@N,M,… (N ≥ 1)")]
    FaultSchedule(String),
    // The value is not quoted: it holds a password.
    #[error("bad IAM user: expected DOMAIN/USER/PASSWORD, none of them empty")]
    IamUser,
    // The value is not quoted: it holds a secret key.
    #[error("bad access key: expected AK:SK or AK:SK:SECURITY_TOKEN, none of them empty")]
    AccessKey,
}

impl FromStr for IamUser {
    type Err = ParseOptionError;

    /// `DOMAIN/USER/PASSWORD`; the password may itself contain `/`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut parts = text.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(domain), Some(user), Some(password))
                if !domain.is_empty() && !user.is_empty() && !password.is_empty() =>
            {
                Ok(IamUser::new(domain, user, password))
            }
            _ => Err(ParseOptionError::IamUser),
        }
    }
}

impl FromStr for AccessKey {
    type Err = ParseOptionError;

    /// `AK:SK` or `AK:SK:SECURITY_TOKEN`; the security token may itself contain `:`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut parts = text.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(ak), Some(sk), None) if !ak.is_empty() && !sk.is_empty() => {
                Ok(AccessKey::new(ak, sk))
            }
            (Some(ak), Some(sk), Some(token))
                if !ak.is_empty() && !sk.is_empty() && !token.is_empty() =>
            {
                Ok(AccessKey::temporary(ak, sk, token))
            }
            _ => Err(ParseOptionError::AccessKey),
        }
    }
}

impl FromStr for Spread {
    type Err = ParseOptionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "realistic" => Ok(Spread::Realistic),
            "same-ms" => Ok(Spread::SameMillisecond),
            _ => text
                .strip_prefix("uniform:")
                .and_then(|step| step.parse::<i64>().ok())
                .filter(|step| *step >= 0)
                .map(|step_ms| Spread::Uniform { step_ms })
                .ok_or_else(|| ParseOptionError::Spread(text.to_owned())),
        }
    }
}

impl FromStr for OffsetMode {
    type Err = ParseOptionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "page" => Ok(OffsetMode::Page),
            "record" => Ok(OffsetMode::Record),
            "record-floored" => Ok(OffsetMode::RecordFloored),
            "ignored" => Ok(OffsetMode::Ignored),
            _ => Err(ParseOptionError::OffsetMode(text.to_owned())),
        }
    }
}

impl FromStr for Fault {
    type Err = ParseOptionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "429" => Ok(Fault::TooManyRequests),
            "500" => Ok(Fault::InternalError),
            "503" => Ok(Fault::Unavailable),
            "502-html" => Ok(Fault::BadGatewayHtml),
            "truncate" => Ok(Fault::TruncatedBody),
            "drop" => Ok(Fault::DroppedConnection),
            _ => Err(ParseOptionError::FaultKind(text.to_owned())),
        }
    }
}

impl FromStr for FaultRule {
    type Err = ParseOptionError;

    /// `KIND@N`, `KIND@every:N` or `KIND@N,M,…`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || ParseOptionError::FaultSchedule(text.to_owned());
        let (kind, schedule) = text.split_once('@').ok_or_else(bad)?;
        let fault = kind.parse::<Fault>()?;
        let number = |n: &str| n.trim().parse::<u64>().ok().filter(|n| *n >= 1);
        let when = if let Some(nth) = schedule.strip_prefix("every:") {
            FaultWhen::Every(number(nth).ok_or_else(bad)?)
        } else if schedule.contains(',') {
            let list = schedule
                .split(',')
                .map(number)
                .collect::<Option<Vec<u64>>>();
            FaultWhen::AtEach(list.ok_or_else(bad)?)
        } else {
            FaultWhen::At(number(schedule).ok_or_else(bad)?)
        };
        Ok(FaultRule { fault, when })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn offset_modes_skip_pages_records_or_floored_records() {
        let mut behaviour = Behaviour::default();
        assert_eq!(behaviour.rows_to_skip(3, 10), 30);
        behaviour.offset_mode = OffsetMode::Record;
        assert_eq!(behaviour.rows_to_skip(13, 10), 13);
        behaviour.offset_mode = OffsetMode::RecordFloored;
        assert_eq!(behaviour.rows_to_skip(13, 10), 10);
        assert_eq!(behaviour.rows_to_skip(9, 10), 0);
        behaviour.offset_mode = OffsetMode::Ignored;
        assert_eq!(behaviour.rows_to_skip(13, 10), 0);
    }

    #[test]
    fn max_page_size_clamps_only_larger_limits() {
        let behaviour = Behaviour {
            max_page_size: Some(50),
            ..Behaviour::default()
        };
        assert_eq!(behaviour.served_size(1000), 50);
        assert_eq!(behaviour.served_size(20), 20);
        assert_eq!(Behaviour::default().served_size(1000), 1000);
    }

    #[test]
    fn fault_schedules_fire_on_their_requests_and_first_rule_wins() {
        let behaviour = Behaviour {
            faults: vec![
                FaultRule::at(Fault::InternalError, 2),
                FaultRule::every(Fault::TooManyRequests, 2),
                FaultRule::at_each(Fault::DroppedConnection, vec![3, 5]),
            ],
            ..Behaviour::default()
        };
        let seen: Vec<Option<Fault>> = (1..=6).map(|n| behaviour.fault_for(n)).collect();
        assert_eq!(
            seen,
            vec![
                None,
                Some(Fault::InternalError),
                Some(Fault::DroppedConnection),
                Some(Fault::TooManyRequests),
                Some(Fault::DroppedConnection),
                Some(Fault::TooManyRequests),
            ]
        );
        assert!(!FaultWhen::Every(0).matches(0));
    }

    #[test]
    fn command_line_forms_parse() {
        assert_eq!(
            "uniform:250".parse::<Spread>().unwrap(),
            Spread::Uniform { step_ms: 250 }
        );
        assert_eq!(
            "same-ms".parse::<Spread>().unwrap(),
            Spread::SameMillisecond
        );
        assert!("uniform:x".parse::<Spread>().is_err());
        assert_eq!(
            "record-floored".parse::<OffsetMode>().unwrap(),
            OffsetMode::RecordFloored
        );
        assert_eq!(
            "429@every:3".parse::<FaultRule>().unwrap(),
            FaultRule::every(Fault::TooManyRequests, 3)
        );
        assert_eq!(
            "drop@2".parse::<FaultRule>().unwrap(),
            FaultRule::at(Fault::DroppedConnection, 2)
        );
        assert_eq!(
            "502-html@1,4".parse::<FaultRule>().unwrap(),
            FaultRule::at_each(Fault::BadGatewayHtml, vec![1, 4])
        );
        assert!(matches!(
            "teapot@1".parse::<FaultRule>(),
            Err(ParseOptionError::FaultKind(_))
        ));
        assert!(matches!(
            "500@0".parse::<FaultRule>(),
            Err(ParseOptionError::FaultSchedule(_))
        ));
        assert!(matches!(
            "500".parse::<FaultRule>(),
            Err(ParseOptionError::FaultSchedule(_))
        ));
    }

    #[test]
    fn credential_forms_parse_and_errors_do_not_echo_secrets() {
        assert_eq!(
            "dom/alice/pa/ss".parse::<IamUser>().unwrap(),
            IamUser::new("dom", "alice", "pa/ss")
        );
        for bad in ["dom/alice", "dom//pw", "/alice/pw", "dom/alice/"] {
            let error = bad.parse::<IamUser>().unwrap_err();
            assert_eq!(error, ParseOptionError::IamUser, "{bad}");
        }
        assert_eq!(
            "AK1:SK1".parse::<AccessKey>().unwrap(),
            AccessKey::new("AK1", "SK1")
        );
        assert_eq!(
            "AK1:SK1:st:with:colons".parse::<AccessKey>().unwrap(),
            AccessKey::temporary("AK1", "SK1", "st:with:colons")
        );
        for bad in ["AK1", "AK1:", ":SK1", "AK1:SK1:"] {
            let error = bad.parse::<AccessKey>().unwrap_err();
            assert!(!error.to_string().contains("SK1"), "{bad}");
        }
    }

    #[test]
    fn debug_output_hides_every_secret() {
        let config = SimConfig {
            token: "static-secret".to_owned(),
            iam_users: vec![IamUser::new("dom", "alice", "password-secret")],
            access_keys: vec![AccessKey::temporary("AK1", "sk-secret", "st-secret")],
            ..SimConfig::default()
        };
        let text = format!("{config:?}");
        assert!(text.contains("alice") && text.contains("AK1"));
        for secret in ["static-secret", "password-secret", "sk-secret", "st-secret"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
}
