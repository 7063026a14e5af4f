//! Who may call the API, checked the way the API gateway in front of ModelArts checks it: the
//! static `X-Auth-Token`, an IAM token this simulator issued (until it expires), or an
//! `SDK-HMAC-SHA256` AK/SK signature that covers `Host`, `X-Sdk-Date` (within 15 minutes of
//! now) and `X-Project-Id` (and `X-Security-Token` for a temporary key). Five consecutive
//! failures of one access key lock it for a while, even for correctly signed requests.
//!
//! Signing: <https://support.huaweicloud.com/intl/en-us/devg-apisign/api-sign-algorithm-002.html>;
//! gateway errors: <https://docs.otc.t-systems.com/api-gateway/umn/faqs/api_authentication/common_errors_related_to_iam_authentication_information.html>

use crate::config::{AccessKey, IamUser, SimConfig};
use crate::store::{IssuedTokens, TokenStatus};
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};
use tracing::debug;

/// The largest difference between `X-Sdk-Date` and the server's clock the gateway accepts.
pub(crate) const MAX_SKEW: Duration = Duration::from_secs(15 * 60);
/// Consecutive failures after which an access key is locked.
pub(crate) const FAILURES_BEFORE_LOCK: u32 = 5;

const SIGNATURE_FAILED: &str =
    "Incorrect IAM authentication information: verify aksk signature fail";
const KEY_LOCKED: &str =
    "Incorrect IAM authentication information: AK access failed to reach the limit,forbidden";

/// The kind of credentials a request presented (whether or not they were good).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthKind {
    /// The configured static token.
    StaticToken,
    /// Any other `X-Auth-Token`: one IAM issued, or a stale or made-up one.
    IamToken,
    /// An `SDK-HMAC-SHA256` `Authorization` header.
    Aksk,
    None,
}

impl AuthKind {
    /// The names the request log uses.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AuthKind::StaticToken => "token",
            AuthKind::IamToken => "iam-token",
            AuthKind::Aksk => "aksk",
            AuthKind::None => "none",
        }
    }

    /// A signature wins over a token when a request carries both: the vendor SDK never sends
    /// both, and the signature is the credential that proves more.
    pub(crate) fn presented(call: &ApiCall<'_>, static_token: &str) -> Self {
        let signed = call
            .header("authorization")
            .is_some_and(|value| value.trim_start().starts_with(aksk::ALGORITHM));
        if signed {
            return AuthKind::Aksk;
        }
        match call.header("x-auth-token") {
            Some(token) if token == static_token => AuthKind::StaticToken,
            Some(_) => AuthKind::IamToken,
            None => AuthKind::None,
        }
    }
}

/// Why a request was refused: always 401, an `APIG.*` code and the gateway's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl Refusal {
    fn new(code: &'static str, message: &str) -> Self {
        Self {
            code,
            message: message.to_owned(),
        }
    }
}

/// The parts of an API request that authentication looks at, as received.
pub(crate) struct ApiCall<'a> {
    pub(crate) method: &'a str,
    /// The path as sent (still percent-encoded).
    pub(crate) path: &'a str,
    /// The raw query string, empty if none.
    pub(crate) raw_query: &'a str,
    /// Header names lower-case (as hyper gives them), values as text.
    pub(crate) headers: &'a [(String, String)],
    pub(crate) body: &'a [u8],
}

impl ApiCall<'_> {
    /// The first value of a header; `name` is lower-case.
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// The failure streak and lock of one access key.
#[derive(Debug, Default)]
struct KeyFailures {
    consecutive: u32,
    locked_until: Option<Instant>,
}

/// Credentials the API accepts and the counters tests read. No Debug: it holds secrets.
pub(crate) struct AuthState {
    pub(crate) token: String,
    pub(crate) project_name: String,
    pub(crate) iam_users: Vec<IamUser>,
    pub(crate) token_lifetime: Duration,
    pub(crate) access_keys: Vec<AccessKey>,
    pub(crate) aksk_lockout: Duration,
    /// Requests to `POST /v3/auth/tokens`, successful or not.
    pub(crate) iam_logins: u64,
    /// API requests refused by authentication.
    pub(crate) auth_failures: u64,
    failures: HashMap<String, KeyFailures>,
}

impl AuthState {
    pub(crate) fn from_config(config: &SimConfig) -> Self {
        Self {
            token: config.token.clone(),
            project_name: config.project_name.clone(),
            iam_users: config.iam_users.clone(),
            token_lifetime: config.token_lifetime,
            access_keys: config.access_keys.clone(),
            aksk_lockout: config.aksk_lockout,
            iam_logins: 0,
            auth_failures: 0,
            failures: HashMap::new(),
        }
    }

    /// Checks a request's credentials; `Ok` names the kind that was accepted.
    pub(crate) fn check(
        &mut self,
        call: &ApiCall<'_>,
        tokens: &IssuedTokens,
        project_id: &str,
        now: Instant,
        wall: SystemTime,
    ) -> Result<AuthKind, Refusal> {
        let kind = AuthKind::presented(call, &self.token);
        let outcome = match kind {
            AuthKind::Aksk => self.check_signature(call, project_id, now, wall),
            AuthKind::StaticToken => Ok(()),
            AuthKind::IamToken => match call.header("x-auth-token") {
                Some(token) if tokens.status(token, now) == TokenStatus::Valid => Ok(()),
                // Expired, revoked and never-issued tokens get the same answer from the gateway.
                _ => Err(Refusal::new("APIG.0307", "The token must be updated.")),
            },
            AuthKind::None => Err(Refusal::new(
                "APIG.0301",
                "Incorrect IAM authentication information: x-auth-token not found",
            )),
        };
        if outcome.is_err() {
            self.auth_failures += 1;
        }
        outcome.map(|()| kind)
    }

    fn check_signature(
        &mut self,
        call: &ApiCall<'_>,
        project_id: &str,
        now: Instant,
        wall: SystemTime,
    ) -> Result<(), Refusal> {
        let Some(auth) = call
            .header("authorization")
            .and_then(aksk::parse_authorization)
        else {
            return Err(Refusal::new("APIG.0301", SIGNATURE_FAILED));
        };
        let Some(key) = self
            .access_keys
            .iter()
            .find(|key| key.access_key == auth.access_key)
            .cloned()
        else {
            return Err(Refusal {
                code: "APIG.0301",
                message: format!(
                    "Incorrect IAM authentication information: Get secretKey failed,ak:{},err:ak not exist",
                    auth.access_key
                ),
            });
        };
        let failures = self.failures.entry(key.access_key.clone()).or_default();
        match failures.locked_until {
            Some(until) if now < until => return Err(Refusal::new("APIG.0301", KEY_LOCKED)),
            Some(_) => failures.locked_until = None,
            None => {}
        }
        match signature_problem(call, &auth, &key, project_id, wall) {
            None => {
                failures.consecutive = 0;
                Ok(())
            }
            Some(reason) => {
                failures.consecutive += 1;
                if failures.consecutive >= FAILURES_BEFORE_LOCK {
                    failures.consecutive = 0;
                    failures.locked_until = Some(now + self.aksk_lockout);
                }
                // The real gateway logs its canonical request; the reason is the useful part.
                debug!(access_key = %key.access_key, reason, "AK/SK request refused.");
                Err(Refusal::new("APIG.0301", SIGNATURE_FAILED))
            }
        }
    }
}

/// What is wrong with a signed request, or `None` if it is good.
fn signature_problem(
    call: &ApiCall<'_>,
    auth: &aksk::Authorization,
    key: &AccessKey,
    project_id: &str,
    wall: SystemTime,
) -> Option<&'static str> {
    let signs = |name: &str| auth.signed_headers.iter().any(|signed| signed == name);
    if !signs("host") || !signs("x-sdk-date") {
        return Some("host and x-sdk-date must be signed");
    }
    let Some(date) = call
        .header("x-sdk-date")
        .and_then(|date| aksk::parse_sdk_date(date.trim()))
    else {
        return Some("x-sdk-date is missing or malformed");
    };
    let skew = wall
        .duration_since(date)
        .or_else(|_| date.duration_since(wall))
        .unwrap_or(Duration::MAX);
    if skew > MAX_SKEW {
        return Some("x-sdk-date is more than 15 minutes away from the server's clock");
    }
    if !signs("x-project-id") || call.header("x-project-id").map(str::trim) != Some(project_id) {
        return Some("x-project-id must be signed and name the project");
    }
    if let Some(expected) = &key.security_token
        && (!signs("x-security-token")
            || call.header("x-security-token").map(str::trim) != Some(expected.as_str()))
    {
        return Some("a temporary key needs its x-security-token, signed");
    }
    let params = aksk::decode_query(call.raw_query);
    let good = aksk::verify(
        call.method,
        call.path,
        &params,
        call.headers,
        call.body,
        auth,
        &key.secret_key,
    );
    (!good).then_some("signature mismatch")
}
