//! The HTTP side: a hand-written router over hyper, the two ModelArts endpoints with their
//! auth, project and parameter checks, IAM's token endpoint, the admin endpoints, and the
//! simulated faults.
//!
//! Faults need control below the HTTP framework: a dropped connection is an `Err` from the
//! service (hyper then closes the connection without answering) and a truncated body is a body
//! that announces its full length, yields part of it, then fails.
//!
//! Upstream API: <https://docs.otc.t-systems.com/modelarts/api-ref/service_management/obtaining_service_event_logs.html>
//! and error codes: <https://docs.otc.t-systems.com/modelarts/api-ref/appendix/error_codes.html>

use crate::auth::{ApiCall, AuthKind, AuthState};
use crate::config::{Behaviour, Fault, FaultRule};
use crate::iam::{self, LoginOutcome};
use crate::query::{self, InvalidParameter, ServicesQuery, ServicesSort};
use crate::store::{SimEvent, Store};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tracing::{debug, warn};

/// Largest admin request body read (a test may post a few 1 MiB rows).
const ADMIN_BODY_LIMIT: usize = 256 * 1024 * 1024;
/// Largest API or IAM request body read; the real calls carry none or a small JSON object.
const API_BODY_LIMIT: usize = 1024 * 1024;

/// One API request as the simulator saw and answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLog {
    /// 1-based number over API requests (the numbering fault schedules use).
    pub number: u64,
    pub path: String,
    /// Decoded query parameters (the first of repeated keys).
    pub query: BTreeMap<String, String>,
    /// HTTP status sent; 0 for a dropped connection.
    pub status: u16,
    /// Rows (events or services) in the response; 0 for errors and faults.
    pub rows: usize,
    /// The simulated fault this request got, if any.
    pub fault: Option<Fault>,
    /// The credentials the request presented, good or not: `"token"` (the static one),
    /// `"iam-token"` (any other `X-Auth-Token`), `"aksk"` or `"none"`.
    pub auth: &'static str,
}

/// Events to add to a service once a given events request has been answered.
#[derive(Debug)]
struct PendingEvents {
    after_events_request: u64,
    service_id: String,
    events: Vec<SimEvent>,
}

/// Everything the server and the handle share, behind one lock held only briefly (never
/// across an await). No Debug: it holds the credentials.
pub(crate) struct SimState {
    pub(crate) store: Store,
    pub(crate) behaviour: Behaviour,
    pub(crate) project_id: String,
    pub(crate) auth: AuthState,
    api_requests: u64,
    events_requests: u64,
    pending: Vec<PendingEvents>,
    pub(crate) log: Vec<RequestLog>,
}

impl SimState {
    pub(crate) fn new(
        store: Store,
        behaviour: Behaviour,
        project_id: String,
        auth: AuthState,
    ) -> Self {
        Self {
            store,
            behaviour,
            project_id,
            auth,
            api_requests: 0,
            events_requests: 0,
            pending: Vec::new(),
            log: Vec::new(),
        }
    }

    pub(crate) fn api_requests(&self) -> u64 {
        self.api_requests
    }

    pub(crate) fn add_pending(
        &mut self,
        after_events_request: u64,
        service_id: &str,
        events: Vec<SimEvent>,
    ) {
        if after_events_request <= self.events_requests {
            // That request has already been answered: the events are due now.
            self.store.add_events(service_id, events);
            return;
        }
        self.pending.push(PendingEvents {
            after_events_request,
            service_id: service_id.to_owned(),
            events,
        });
    }

    fn release_pending(&mut self, answered: u64) {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.after_events_request <= answered);
        self.pending = later;
        for pending in due {
            if !self.store.add_events(&pending.service_id, pending.events) {
                warn!(service_id = %pending.service_id, "Events due after a request: no such service; ignored.");
            }
        }
    }
}

pub(crate) type Shared = Arc<Mutex<SimState>>;

/// Locks the state; a panic elsewhere while holding it leaves data that is still consistent
/// enough to serve, so poisoning is ignored.
pub(crate) fn lock(shared: &Shared) -> MutexGuard<'_, SimState> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The error the service returns to make hyper close the connection without a response.
#[derive(Debug, thiserror::Error)]
#[error("simulated fault: connection dropped without a response")]
pub(crate) struct DroppedConnection;

/// The error a truncated body ends with, which makes hyper close the connection.
#[derive(Debug, thiserror::Error)]
#[error("simulated fault: body truncated")]
pub(crate) struct TruncatedBodyError;

/// A response body: whole, or (as a fault) announcing its full length but ending early.
pub(crate) struct SimBody {
    data: Option<Bytes>,
    full_len: u64,
    ending: Ending,
}

enum Ending {
    Complete,
    /// Fail after the part was sent; `paused` makes hyper flush the part before the error.
    Truncated {
        paused: bool,
    },
}

impl SimBody {
    fn full(data: Bytes) -> Self {
        Self {
            full_len: data.len() as u64,
            data: Some(data),
            ending: Ending::Complete,
        }
    }

    fn truncated(data: &Bytes) -> Self {
        let part = data.slice(0..data.len() / 2);
        Self {
            full_len: data.len() as u64,
            data: Some(part),
            ending: Ending::Truncated { paused: false },
        }
    }
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = TruncatedBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        match &mut self.ending {
            Ending::Complete => Poll::Ready(None),
            Ending::Truncated { paused } if !*paused => {
                // Yielding once lets hyper flush the head and the part before it sees the error;
                // without it both could be dropped unsent and the fault would look like a drop.
                *paused = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Ending::Truncated { .. } => Poll::Ready(Some(Err(TruncatedBodyError))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && matches!(self.ending, Ending::Complete)
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.full_len)
    }
}

/// An answer before it becomes a response (so that a truncation fault can cut it).
struct Answer {
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
    rows: usize,
    /// `Retry-After` seconds, for a 429.
    retry_after: Option<u64>,
    /// Further headers (IAM's `X-Subject-Token`).
    extra_headers: Vec<(&'static str, String)>,
}

impl Answer {
    fn json(status: StatusCode, body: Vec<u8>, rows: usize) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: Bytes::from(body),
            rows,
            retry_after: None,
            extra_headers: Vec::new(),
        }
    }

    /// A ModelArts error body; `request_id` is set where the API gateway is the one answering.
    fn error(status: StatusCode, code: &str, message: &str, request_id: Option<&str>) -> Self {
        #[derive(Serialize)]
        struct ErrorBody<'a> {
            error_code: &'a str,
            error_msg: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            request_id: Option<&'a str>,
        }
        let body = ErrorBody {
            error_code: code,
            error_msg: message,
            request_id,
        };
        Self::json(status, serde_json::to_vec(&body).unwrap_or_default(), 0)
    }

    fn bad_parameter(error: &InvalidParameter) -> Self {
        Self::error(
            StatusCode::BAD_REQUEST,
            "ModelArts.0101",
            &error.to_string(),
            None,
        )
    }

    fn api_not_found(request_id: &str) -> Self {
        Self::error(
            StatusCode::NOT_FOUND,
            "APIG.0101",
            "The API does not exist or has not been published in the environment.",
            Some(request_id),
        )
    }

    fn into_response(self, request_id: Option<&str>) -> Response<SimBody> {
        self.respond(SimBody::full(self.body.clone()), request_id)
    }

    fn into_truncated_response(self, request_id: Option<&str>) -> Response<SimBody> {
        self.respond(SimBody::truncated(&self.body), request_id)
    }

    fn respond(&self, body: SimBody, request_id: Option<&str>) -> Response<SimBody> {
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(id).ok()) {
            headers.insert("x-request-id", id);
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        for (name, value) in &self.extra_headers {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(*name, value);
            }
        }
        response
    }
}

/// The routes the simulator knows.
enum Route {
    ServicesList {
        project_id: String,
    },
    Events {
        project_id: String,
        service_id: String,
    },
    AdminAddService,
    AdminAddEvents {
        service_id: String,
    },
    AdminSetFaults,
    IamTokens,
    NotFound,
}

fn route(method: &Method, path: &str) -> Route {
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(|segment| query::percent_decode(segment, false))
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (method, segments.as_slice()) {
        (&Method::GET, ["v1", project_id, "services"]) => Route::ServicesList {
            project_id: (*project_id).to_owned(),
        },
        (&Method::GET, ["v1", project_id, "services", service_id, "events"]) => Route::Events {
            project_id: (*project_id).to_owned(),
            service_id: (*service_id).to_owned(),
        },
        (&Method::POST, ["admin", "services"]) => Route::AdminAddService,
        (&Method::POST, ["admin", "services", service_id, "events"]) => Route::AdminAddEvents {
            service_id: (*service_id).to_owned(),
        },
        (&Method::POST, ["admin", "faults"]) => Route::AdminSetFaults,
        (&Method::POST, ["v3", "auth", "tokens"]) => Route::IamTokens,
        _ => Route::NotFound,
    }
}

/// Request ids look like the gateway's (32 hex digits) and are unique per API request.
fn request_id(number: u64) -> String {
    format!("{:016x}{number:016x}", 0x5349_4d55_4c41_544fu64)
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// Entry point for every request on every connection.
pub(crate) async fn handle(
    shared: Shared,
    request: Request<Incoming>,
) -> Result<Response<SimBody>, DroppedConnection> {
    match route(request.method(), request.uri().path()) {
        Route::ServicesList { project_id } => serve_api(&shared, request, project_id, None).await,
        Route::Events {
            project_id,
            service_id,
        } => serve_api(&shared, request, project_id, Some(service_id)).await,
        Route::AdminAddService => Ok(admin_add_service(&shared, request)
            .await
            .into_response(None)),
        Route::AdminAddEvents { service_id } => Ok(admin_add_events(&shared, request, &service_id)
            .await
            .into_response(None)),
        Route::AdminSetFaults => Ok(admin_set_faults(&shared, request).await.into_response(None)),
        Route::IamTokens => Ok(iam_login(&shared, request).await.into_response(None)),
        Route::NotFound => Ok(Answer::api_not_found(&request_id(0)).into_response(None)),
    }
}

/// Serves the events endpoint (`service_id` set) or the services list.
async fn serve_api(
    shared: &Shared,
    request: Request<Incoming>,
    project_id: String,
    service_id: Option<String>,
) -> Result<Response<SimBody>, DroppedConnection> {
    let path = request.uri().path().to_owned();
    let raw_query = request.uri().query().unwrap_or("").to_owned();
    let query = query::parse_query(request.uri().query());
    let method = request.method().as_str().to_owned();
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    // Read before answering: an AK/SK signature covers the body.
    let body = match read_body(request, API_BODY_LIMIT).await {
        Ok(body) => body,
        Err(answer) => return Ok(answer.into_response(None)),
    };
    let call = ApiCall {
        method: &method,
        path: &path,
        raw_query: &raw_query,
        headers: &headers,
        body: &body,
    };

    let (number, events_number, fault, latency) = {
        let mut state = lock(shared);
        state.api_requests += 1;
        let events_number = service_id.as_ref().map(|_| {
            state.events_requests += 1;
            state.events_requests
        });
        let number = state.api_requests;
        (
            number,
            events_number,
            state.behaviour.fault_for(number),
            state.behaviour.latency,
        )
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let id = request_id(number);

    let answer = {
        let mut state = lock(shared);
        let presented = AuthKind::presented(&call, &state.auth.token);
        let answer = match fault {
            None | Some(Fault::TruncatedBody) => Some(answer_api(
                &mut state,
                &project_id,
                service_id.as_deref(),
                &query,
                &call,
                &id,
            )),
            // The gateway answers these before the service sees the request.
            Some(fault) => fault_answer(fault, &id, state.behaviour.retry_after_secs),
        };
        let status = answer.as_ref().map_or(0, |answer| answer.status.as_u16());
        let rows = match (&answer, fault) {
            (Some(answer), None) => answer.rows,
            _ => 0,
        };
        debug!(number, path = %path, status, fault = ?fault, "Served API request.");
        state.log.push(RequestLog {
            number,
            path,
            query,
            status,
            rows,
            fault,
            auth: presented.as_str(),
        });
        if let Some(answered) = events_number {
            state.release_pending(answered);
        }
        answer
    };

    match (answer, fault) {
        (None, _) => Err(DroppedConnection),
        (Some(answer), Some(Fault::TruncatedBody)) => Ok(answer.into_truncated_response(Some(&id))),
        (Some(answer), _) => Ok(answer.into_response(Some(&id))),
    }
}

/// What the gateway sends for a simulated fault; `None` is a dropped connection.
fn fault_answer(fault: Fault, request_id: &str, retry_after_secs: u64) -> Option<Answer> {
    let answer = match fault {
        Fault::DroppedConnection => return None,
        Fault::TooManyRequests => Answer {
            retry_after: Some(retry_after_secs),
            ..Answer::error(
                StatusCode::TOO_MANY_REQUESTS,
                "APIG.0308",
                "The throttling threshold has been reached: policy user over ratelimit,limit:20,time:1 second",
                Some(request_id),
            )
        },
        Fault::InternalError => Answer::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ModelArts.0010",
            "Internal error. Please try again later.",
            None,
        ),
        Fault::Unavailable => Answer::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "APIG.0201",
            "Backend unavailable. Please try again later.",
            Some(request_id),
        ),
        Fault::BadGatewayHtml => Answer {
            status: StatusCode::BAD_GATEWAY,
            content_type: "text/html",
            body: Bytes::from_static(BAD_GATEWAY_PAGE.as_bytes()),
            rows: 0,
            retry_after: None,
            extra_headers: Vec::new(),
        },
        // The truncation cuts the real answer; it has no answer of its own.
        Fault::TruncatedBody => return None,
    };
    Some(answer)
}

/// What an nginx-based gateway sends when the service behind it fails.
const BAD_GATEWAY_PAGE: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
    <center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

/// Auth, project, parameters and data, in the order the real stack checks them.
fn answer_api(
    state: &mut SimState,
    project_id: &str,
    service_id: Option<&str>,
    query: &BTreeMap<String, String>,
    call: &ApiCall<'_>,
    request_id: &str,
) -> Answer {
    let checked = state.auth.check(
        call,
        &state.store.tokens,
        &state.project_id,
        Instant::now(),
        SystemTime::now(),
    );
    if let Err(refusal) = checked {
        return Answer::error(
            StatusCode::UNAUTHORIZED,
            refusal.code,
            &refusal.message,
            Some(request_id),
        );
    }
    if project_id != state.project_id {
        return Answer::error(
            StatusCode::FORBIDDEN,
            "ModelArts.0210",
            "The project id in the request URL does not match the token.",
            None,
        );
    }
    match service_id {
        Some(service_id) => answer_events(state, service_id, query),
        None => answer_services(state, query),
    }
}

fn service_not_found(service_id: &str) -> Answer {
    Answer::error(
        StatusCode::NOT_FOUND,
        "ModelArts.3502",
        &format!("Service {service_id} does not exist."),
        None,
    )
}

fn answer_events(state: &SimState, service_id: &str, query: &BTreeMap<String, String>) -> Answer {
    let Some(entry) = state.store.service(service_id) else {
        return service_not_found(service_id);
    };
    let events_query = match query::events_query(query) {
        Ok(events_query) => events_query,
        Err(error) => return Answer::bad_parameter(&error),
    };
    let page = state
        .store
        .events_page(entry, &events_query, &state.behaviour);
    let rows = page.count;
    Answer::json(
        StatusCode::OK,
        serde_json::to_vec(&page).unwrap_or_default(),
        rows,
    )
}

/// One entry of the services list, with the fields the documentation's example shows.
#[derive(Serialize)]
struct ServiceJson<'a> {
    service_id: &'a str,
    service_name: &'a str,
    description: &'a str,
    tenant: &'a str,
    project: &'a str,
    owner: &'a str,
    publish_at: i64,
    infer_type: &'a str,
    workspace_id: &'a str,
    status: &'a str,
    invocation_times: u64,
    failed_times: u64,
    is_shared: bool,
    shared_count: u64,
    is_free: bool,
}

#[derive(Serialize)]
struct ServicesPage<'a> {
    total_count: u128,
    count: usize,
    services: Vec<ServiceJson<'a>>,
}

fn answer_services(state: &SimState, query: &BTreeMap<String, String>) -> Answer {
    let services_query: ServicesQuery = match query::services_query(query) {
        Ok(services_query) => services_query,
        Err(error) => return Answer::bad_parameter(&error),
    };
    let mut matching: Vec<_> = state
        .store
        .services()
        .iter()
        .filter(|entry| {
            services_query
                .service_name
                .as_ref()
                .is_none_or(|name| entry.service_name.contains(name.as_str()))
        })
        .filter(|entry| {
            services_query
                .status
                .as_ref()
                .is_none_or(|status| &entry.status == status)
        })
        .collect();
    // Stable sorts: services that compare equal keep their creation order.
    match services_query.sort {
        ServicesSort::PublishAt => matching.sort_by_key(|entry| entry.publish_at),
        ServicesSort::ServiceName => matching.sort_by(|a, b| a.service_name.cmp(&b.service_name)),
    }
    if services_query.descending {
        matching.reverse();
    }
    let behaviour = &state.behaviour;
    let served_size = behaviour.served_size(services_query.limit);
    let skip = usize::try_from(behaviour.rows_to_skip(services_query.offset, served_size))
        .unwrap_or(usize::MAX);
    let project = state.project_id.as_str();
    let services: Vec<ServiceJson<'_>> = matching
        .iter()
        .skip(skip)
        .take(served_size as usize)
        .map(|entry| ServiceJson {
            service_id: &entry.service_id,
            service_name: &entry.service_name,
            description: "",
            tenant: project,
            project,
            owner: project,
            publish_at: entry.publish_at,
            infer_type: "real-time",
            workspace_id: "0",
            status: &entry.status,
            invocation_times: 0,
            failed_times: 0,
            is_shared: false,
            shared_count: 0,
            is_free: false,
        })
        .collect();
    let page = ServicesPage {
        total_count: behaviour.total_count(matching.len()),
        count: services.len(),
        services,
    };
    let rows = page.count;
    Answer::json(
        StatusCode::OK,
        serde_json::to_vec(&page).unwrap_or_default(),
        rows,
    )
}

async fn read_admin_body(request: Request<Incoming>) -> Result<Bytes, Answer> {
    read_body(request, ADMIN_BODY_LIMIT).await
}

async fn read_body(request: Request<Incoming>, limit: usize) -> Result<Bytes, Answer> {
    match http_body_util::Limited::new(request.into_body(), limit)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) => Err(Answer::error(
            StatusCode::BAD_REQUEST,
            "ModelArts.0101",
            &format!("Could not read the request body: {error}"),
            None,
        )),
    }
}

fn bad_admin_json(error: &serde_json::Error) -> Answer {
    Answer::error(
        StatusCode::BAD_REQUEST,
        "ModelArts.0101",
        &format!("Invalid request body: {error}"),
        None,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewService {
    service_id: String,
    service_name: String,
    #[serde(default = "running")]
    status: String,
}

fn running() -> String {
    "running".to_owned()
}

async fn admin_add_service(shared: &Shared, request: Request<Incoming>) -> Answer {
    let body = match read_admin_body(request).await {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    let service: NewService = match serde_json::from_slice(&body) {
        Ok(service) => service,
        Err(error) => return bad_admin_json(&error),
    };
    lock(shared).store.upsert_service(
        &service.service_id,
        &service.service_name,
        &service.status,
        now_ms(),
    );
    let reply = serde_json::json!({ "service_id": service.service_id });
    Answer::json(StatusCode::OK, reply.to_string().into_bytes(), 0)
}

async fn admin_add_events(shared: &Shared, request: Request<Incoming>, service_id: &str) -> Answer {
    let body = match read_admin_body(request).await {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    let events: Vec<SimEvent> = match serde_json::from_slice(&body) {
        Ok(events) => events,
        Err(error) => return bad_admin_json(&error),
    };
    let added = events.len();
    if !lock(shared).store.add_events(service_id, events) {
        return service_not_found(service_id);
    }
    let reply = serde_json::json!({ "added": added });
    Answer::json(StatusCode::OK, reply.to_string().into_bytes(), 0)
}

/// Replaces the fault schedule with a JSON array of command-line forms (`["429@every:3"]`), so
/// that users of the binary can change faults while it runs.
async fn admin_set_faults(shared: &Shared, request: Request<Incoming>) -> Answer {
    let body = match read_admin_body(request).await {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    let forms: Vec<String> = match serde_json::from_slice(&body) {
        Ok(forms) => forms,
        Err(error) => return bad_admin_json(&error),
    };
    let faults = match forms
        .iter()
        .map(|form| form.parse::<FaultRule>())
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(faults) => faults,
        Err(error) => {
            return Answer::error(
                StatusCode::BAD_REQUEST,
                "ModelArts.0101",
                &error.to_string(),
                None,
            );
        }
    };
    let count = faults.len();
    lock(shared).behaviour.faults = faults;
    let reply = serde_json::json!({ "faults": count });
    Answer::json(StatusCode::OK, reply.to_string().into_bytes(), 0)
}

/// `POST /v3/auth/tokens`: IAM's answer, in IAM's shapes (not counted as an API request).
async fn iam_login(shared: &Shared, request: Request<Incoming>) -> Answer {
    let body = match read_body(request, API_BODY_LIMIT).await {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    let outcome = {
        let mut state = lock(shared);
        let state = &mut *state;
        // Cloned: the login also changes the auth state that holds the name.
        let project_name = state.auth.project_name.clone();
        let project = iam::Project {
            id: &state.project_id,
            name: &project_name,
        };
        iam::login(
            &mut state.auth,
            &mut state.store.tokens,
            &project,
            &body,
            Instant::now(),
            SystemTime::now(),
        )
    };
    match outcome {
        LoginOutcome::Issued { token, body } => Answer {
            extra_headers: vec![("x-subject-token", token)],
            ..Answer::json(StatusCode::CREATED, body.to_string().into_bytes(), 0)
        },
        LoginOutcome::Refused { status, body } => Answer::json(
            StatusCode::from_u16(status).unwrap_or(StatusCode::UNAUTHORIZED),
            body.to_string().into_bytes(),
            0,
        ),
    }
}
