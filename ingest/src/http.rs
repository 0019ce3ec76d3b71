//! The HTTP API, the dashboard page and `/metrics`.
use crate::store::Store;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub metrics: PrometheusHandle,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(crate::dashboard::page))
        .route("/api/alerts", get(alerts))
        .route("/api/devices", get(devices))
        .route("/api/quarantine", get(quarantine))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

/// Store errors become a 500 with a short message; details go to the log.
pub struct ApiError(anyhow::Error);

impl<E: Into<anyhow::Error>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        tracing::error!(error = %self.0, "request failed");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(serde_json::json!({"error": "storage error, see the server log"})),
        )
            .into_response()
    }
}

#[derive(Deserialize)]
struct AlertQuery {
    /// `open` (default) or `all`.
    state: Option<String>,
}

async fn alerts(State(s): State<AppState>, Query(q): Query<AlertQuery>) -> Result<Response, ApiError> {
    let open_only = match q.state.as_deref() {
        None | Some("open") => true,
        Some("all") => false,
        Some(other) => {
            let msg = format!("state={other:?}: expected open or all");
            return Ok((StatusCode::BAD_REQUEST, Json(serde_json::json!({"error": msg}))).into_response());
        }
    };
    Ok(Json(s.store.alerts(open_only).await?).into_response())
}

async fn devices(State(s): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(s.store.devices().await?).into_response())
}

async fn quarantine(State(s): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(s.store.quarantine(500).await?).into_response())
}

async fn metrics(State(s): State<AppState>) -> String {
    s.metrics.render()
}

pub(crate) async fn page_data(
    s: &AppState,
) -> Result<(Vec<crate::model::DeviceRow>, Vec<crate::model::AlertRow>), ApiError> {
    Ok((s.store.devices().await?, s.store.alerts(true).await?))
}

pub(crate) fn html(body: String) -> Html<String> {
    Html(body)
}
