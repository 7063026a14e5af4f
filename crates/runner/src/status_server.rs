//! The HTTP server of `[runner] listen` while `run` runs: `/metrics` (Prometheus,
//! OpenMetrics text format), `/live` (liveness: the process runs its loop) and `/health`
//! (readiness and alerting: 503 with the sources and sinks that have been failing for
//! longer than `[runner.health] unhealthy_after`). Plain HTTP/1.1 on hyper; the
//! exposition format is <https://prometheus.io/docs/instrumenting/exposition_formats/>.

use crate::app::AppError;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use telemetry::Observer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

/// The content type of an OpenMetrics scrape.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The running server; dropping it stops it.
pub struct StatusServer {
    /// The address it listens on (the port chosen, when `listen` asked for port 0).
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StatusServer {
    /// Binds `addr` (an error names `runner.listen`) and serves until dropped.
    pub async fn start(
        addr: SocketAddr,
        observer: Arc<Observer>,
        unhealthy_after: Duration,
    ) -> Result<StatusServer, AppError> {
        let listen_error = |source| AppError::Io {
            what: format!("runner.listen = \"{addr}\": cannot listen there"),
            source,
        };
        let listener = TcpListener::bind(addr).await.map_err(listen_error)?;
        let addr = listener.local_addr().map_err(listen_error)?;
        let task = tokio::spawn(async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors, say: wait a little rather than spin.
                        warn!(error = %e, "The metrics and health server could not accept a connection.");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let observer = observer.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let answer = answer(&observer, &request, unhealthy_after);
                        async move { Ok::<_, Infallible>(answer) }
                    });
                    if let Err(e) = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                    {
                        debug!(error = %e, "A metrics or health connection ended with an error.");
                    }
                });
            }
        });
        Ok(StatusServer { addr, task })
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

fn answer(
    observer: &Observer,
    request: &Request<Incoming>,
    unhealthy_after: Duration,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET\n".to_owned(),
        );
    }
    match request.uri().path() {
        "/metrics" => respond(StatusCode::OK, OPENMETRICS, observer.openmetrics()),
        "/live" => respond(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "ok\n".to_owned(),
        ),
        "/health" => {
            let (status, body) = health(observer, unhealthy_after, SystemTime::now());
            respond(status, "application/json", body.to_string() + "\n")
        }
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: try /metrics, /live or /health\n".to_owned(),
        ),
    }
}

/// 200 when nothing has been failing for `unhealthy_after` or longer, else 503. The body
/// lists every source and sink failing now, and says which of them made it unhealthy.
fn health(
    observer: &Observer,
    unhealthy_after: Duration,
    now: SystemTime,
) -> (StatusCode, serde_json::Value) {
    let mut unhealthy = false;
    let failing: Vec<serde_json::Value> = observer
        .failing()
        .into_iter()
        .map(|f| {
            let seconds = f.for_how_long(now);
            let too_long = seconds >= unhealthy_after;
            unhealthy |= too_long;
            json!({
                "kind": f.component.kind,
                "name": f.component.name,
                "since": humantime::format_rfc3339_millis(f.since).to_string(),
                "failing_for_seconds": seconds.as_secs_f64(),
                "unhealthy": too_long,
                "error": f.error,
            })
        })
        .collect();
    let status = if unhealthy {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = json!({
        "status": if unhealthy { "unhealthy" } else { "ok" },
        "unhealthy_after_seconds": unhealthy_after.as_secs_f64(),
        "failing": failing,
    });
    (status, body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn health_turns_503_only_once_a_failure_lasted_unhealthy_after() {
        let observer = Observer::new();
        let (status, body) = health(&observer, Duration::from_secs(60), SystemTime::now());
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["failing"].as_array().unwrap().len(), 0);
        observer.sink_request("loki", Duration::ZERO, Some("HTTP 503 from loki"));
        let (status, body) = health(&observer, Duration::from_secs(60), SystemTime::now());
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["failing"][0]["name"], "loki");
        let later = SystemTime::now() + Duration::from_secs(61);
        let (status, body) = health(&observer, Duration::from_secs(60), later);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["status"], "unhealthy");
        assert_eq!(body["failing"][0]["kind"], "sink");
        assert_eq!(body["failing"][0]["error"], "HTTP 503 from loki");
    }
}
