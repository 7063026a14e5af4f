//! IAM password login, `POST /v3/auth/tokens` (Keystone body, project scope by id or name):
//! checks the user, issues a random token valid for the configured lifetime, and answers in
//! IAM's shapes (201 with `X-Subject-Token`, or a Keystone error with an `IAM.*` code).
//!
//! Upstream API: <https://docs.otc.t-systems.com/identity-access-management/api-ref/apis/token_management/obtaining_a_user_token_through_password_authentication.html>

use crate::auth::AuthState;
use crate::store::IssuedTokens;
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::{Instant, SystemTime};

/// The answer to a login request.
pub(crate) enum LoginOutcome {
    /// 201: the token for `X-Subject-Token` and the body.
    Issued { token: String, body: Value },
    /// An IAM error: status and Keystone-shaped body.
    Refused { status: u16, body: Value },
}

#[derive(Deserialize)]
struct LoginRequest {
    auth: AuthBody,
}

#[derive(Deserialize)]
struct AuthBody {
    identity: Identity,
    scope: Option<Scope>,
}

#[derive(Deserialize)]
struct Identity {
    methods: Vec<String>,
    password: Option<PasswordIdentity>,
}

#[derive(Deserialize)]
struct PasswordIdentity {
    user: UserCredentials,
}

#[derive(Deserialize)]
struct UserCredentials {
    name: String,
    password: String,
    domain: NameOrId,
}

#[derive(Deserialize)]
struct Scope {
    project: Option<NameOrId>,
}

#[derive(Deserialize)]
struct NameOrId {
    id: Option<String>,
    name: Option<String>,
}

/// The project the simulator serves, for matching scopes.
pub(crate) struct Project<'a> {
    pub(crate) id: &'a str,
    pub(crate) name: &'a str,
}

/// Handles one login request; counts it whatever the outcome.
pub(crate) fn login(
    auth: &mut AuthState,
    tokens: &mut IssuedTokens,
    project: &Project<'_>,
    body: &[u8],
    now: Instant,
    wall: SystemTime,
) -> LoginOutcome {
    auth.iam_logins += 1;
    let request: LoginRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        // Position only: serde's message can quote a value, and the value may be a password.
        Err(error) => {
            return bad_request(&format!(
                "The request body is not a valid token request (line {}, column {}).",
                error.line(),
                error.column()
            ));
        }
    };
    let identity = request.auth.identity;
    let Some(credentials) = identity
        .password
        .filter(|_| identity.methods.iter().any(|method| method == "password"))
    else {
        return bad_request(
            "Request parameter auth.identity is invalid: this IAM supports the password method only.",
        );
    };
    let user = credentials.user;
    let Some(known) = auth.iam_users.iter().find(|known| {
        known.user == user.name
            && known.password == user.password
            && (user.domain.name.as_deref() == Some(known.domain.as_str())
                || user.domain.id.as_deref() == Some(stable_id(&[&known.domain]).as_str()))
    }) else {
        // One answer for an unknown domain, user or password, so none of them can be probed.
        return keystone_error(
            401,
            "Unauthorized",
            "IAM.0062",
            "The username or password is wrong.",
        );
    };
    let Some(scope) = request.auth.scope.and_then(|scope| scope.project) else {
        return bad_request(
            "Request parameter auth.scope.project is missing: ModelArts needs a project-scoped token.",
        );
    };
    let in_scope = match (&scope.id, &scope.name) {
        (Some(id), _) => id == project.id,
        (None, Some(name)) => name == project.name,
        (None, None) => false,
    };
    if !in_scope {
        let asked = scope.id.or(scope.name).unwrap_or_default();
        return bad_request(&format!(
            "Request parameter auth.scope.project is invalid: the project {asked:?} does not exist in domain {:?} (it has {:?}, id {}).",
            known.domain, project.name, project.id
        ));
    }

    let token = new_token();
    tokens.insert(token.clone(), now + auth.token_lifetime);
    let domain = json!({"id": stable_id(&[&known.domain]), "name": known.domain});
    let body = json!({"token": {
        "expires_at": humantime::format_rfc3339_micros(wall + auth.token_lifetime).to_string(),
        "issued_at": humantime::format_rfc3339_micros(wall).to_string(),
        "methods": ["password"],
        "catalog": [],
        "roles": [{"id": stable_id(&["role", "te_admin"]), "name": "te_admin"}],
        "project": {"id": project.id, "name": project.name, "domain": domain},
        "user": {
            "id": stable_id(&[&known.domain, &known.user]),
            "name": known.user,
            "domain": domain,
            "password_expires_at": "",
        },
    }});
    LoginOutcome::Issued { token, body }
}

fn bad_request(message: &str) -> LoginOutcome {
    keystone_error(400, "Bad Request", "IAM.0011", message)
}

/// Keystone's `error` object plus the `error_code`/`error_msg` pair OTC's IAM adds.
fn keystone_error(status: u16, title: &str, code: &str, message: &str) -> LoginOutcome {
    LoginOutcome::Refused {
        status,
        body: json!({
            "error": {"code": status, "title": title, "message": message},
            "error_code": code,
            "error_msg": message,
        }),
    }
}

/// A fresh token; real ones are long opaque strings starting with `MII`.
fn new_token() -> String {
    let mut rng = fastrand::Rng::new();
    let tail: String = std::iter::repeat_with(|| rng.alphanumeric())
        .take(96)
        .collect();
    format!("MIIsim{tail}")
}

/// A 32-hex-digit id that is always the same for the same names (FNV-1a, twice), so that
/// domain and user ids stay put across restarts like real ones do.
fn stable_id(parts: &[&str]) -> String {
    let hash = |seed: u64| {
        parts.iter().fold(seed, |state, part| {
            part.bytes()
                .chain(std::iter::once(0))
                .fold(state, |state, byte| {
                    (state ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
                })
        })
    };
    format!(
        "{:016x}{:016x}",
        hash(0xcbf2_9ce4_8422_2325),
        hash(0x8422_2325_cbf2_9ce4)
    )
}
