//! The HTTP side: router, shared state, caller identity and error mapping. The
//! endpoints live in [`crate::api`] by concern; the page in [`crate::dashboard`].
use crate::auth::Users;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use gridwatch_cases::{Placement, User};
use gridwatch_domain::Alerting;
use gridwatch_protocol::clock::Clock;
use gridwatch_storage::Store;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub metrics: PrometheusHandle,
    pub alerting: Alerting,
    pub clock: Arc<dyn Clock>,
    pub users: Arc<Users>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(crate::dashboard::page))
        .route("/api/devices", get(devices))
        .route("/api/quarantine", get(quarantine))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .merge(crate::api::routes())
        .with_state(state)
}

/// An error with its HTTP status and a message for the caller; 500s are logged.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            details: None,
        }
    }
}

impl From<gridwatch_storage::Error> for ApiError {
    fn from(e: gridwatch_storage::Error) -> Self {
        tracing::error!(error = %e, "request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage error, see the server log")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.message });
        if let Some(details) = self.details {
            body["details"] = details;
        }
        (self.status, Json(body)).into_response()
    }
}

/// Who is calling. With a users file every request needs `Authorization: Bearer TOKEN`;
/// without one ingest is open for reading and `user` is `None`.
pub(crate) struct Caller {
    pub user: Option<User>,
}

impl Caller {
    /// Whether the caller may see something placed at `place` (open mode sees everything).
    pub(crate) fn can_see(&self, place: Option<Placement<'_>>) -> bool {
        match (&self.user, place) {
            (None, _) => true,
            (Some(user), Some(place)) => user.can_see(place),
            // Devices outside the register belong to no grid: only the open mode shows them.
            (Some(_), None) => false,
        }
    }

    /// The user, for actions that change something; open mode may not write.
    pub(crate) fn writer(&self) -> Result<&User, ApiError> {
        self.user.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this action needs a user: start ingest with --users and send a bearer token",
            )
        })
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if state.users.is_open() {
            return Ok(Caller { user: None });
        }
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "missing header Authorization: Bearer TOKEN"))?;
        let user = state.users.by_token(token).cloned().ok_or_else(|| {
            metrics::counter!("gridwatch_api_rejected_total", "reason" => "bad_token").increment(1);
            ApiError::new(StatusCode::UNAUTHORIZED, "unknown token")
        })?;
        Ok(Caller { user: Some(user) })
    }
}

async fn devices(State(s): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let devices = s.store.devices().await?;
    let domain = s.alerting.domain.lock().await;
    let registry = domain.registry();
    let visible: Vec<_> = devices
        .into_iter()
        .filter(|d| caller.can_see(registry.device(&d.device_id).map(|dev| registry.placement(dev))))
        .collect();
    Ok(Json(visible).into_response())
}

async fn quarantine(State(s): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    // Quarantined input may come from anyone's devices: operators (open mode or grid heads) only.
    if let Some(user) = &caller.user
        && !user.has_role(gridwatch_cases::Role::GridHead)
    {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "the quarantine is for grid heads"));
    }
    Ok(Json(s.store.quarantine(500).await?).into_response())
}

async fn metrics(State(s): State<AppState>) -> String {
    s.metrics.render()
}
