//! The daemon's HTTP endpoints (`--listen ADDR`): `POST /hooks/git` (authenticated webhooks that make the
//! daemon fetch at once), `GET /status` (JSON), `GET /metrics` (Prometheus text), `GET /healthz`,
//! `GET /readyz`.

use super::webhook::{self, Verdict};
use super::Shared;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;
use tokio::sync::Notify;

/// Webhook bodies above this are refused (413) before anything looks at them.
pub const WEBHOOK_BODY_LIMIT: usize = 1024 * 1024;

#[derive(Clone)]
pub(crate) struct Http {
    pub(crate) shared: Shared,
    pub(crate) secret: Arc<Vec<u8>>,
    /// Wakes the polling loop.
    pub(crate) wake: Arc<Notify>,
}

pub(crate) fn router(h: Http) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/hooks/git", post(hook))
        .layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT))
        .with_state(h)
}

async fn readyz(State(h): State<Http>) -> Response {
    let s = h.shared.snapshot();
    if s.desired.is_some() || s.refused.is_some() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        let why = s.source_error.map_or_else(
            || "the first commit is not handled yet".to_string(),
            |e| format!("source: {e}"),
        );
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response()
    }
}

async fn status(State(h): State<Http>) -> Response {
    match serde_json::to_string_pretty(&h.shared.snapshot()) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body + "\n").into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn metrics(State(h): State<Http>) -> Response {
    let text = h.shared.metrics_text();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn hook(State(h): State<Http>, headers: HeaderMap, body: Bytes) -> Response {
    let verdict = webhook::verify(&h.secret, |name| headers.get(name).and_then(|v| v.to_str().ok()), &body);
    match verdict {
        Verdict::Accepted(provider) => {
            h.shared.metric(|m| m.webhook(true));
            tracing::info!(provider, "webhook: fetching now");
            h.wake.notify_one();
            (StatusCode::ACCEPTED, "fetching\n").into_response()
        }
        Verdict::Rejected(reason) => {
            h.shared.metric(|m| m.webhook(false));
            tracing::warn!("webhook refused: {reason}");
            (StatusCode::UNAUTHORIZED, format!("{reason}\n")).into_response()
        }
    }
}
