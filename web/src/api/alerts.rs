//! `GET /api/alerts`, `POST /api/alerts/ack`.
use crate::http::{ApiError, AppState, Caller};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gridwatch_alerts::{AlertKey, AlertKind};
use gridwatch_storage::query;
use serde::Deserialize;

#[derive(Deserialize)]
pub(super) struct ListQuery {
    /// `open` (default) or `all`.
    state: Option<String>,
}

pub(super) async fn list(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let open_only = match q.state.as_deref() {
        None | Some("open") => true,
        Some("all") => false,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("state={other:?}: expected open or all"),
            ));
        }
    };
    let alerts = query::alerts(&s.store, open_only, 1000).await?;
    let domain = s.alerting.domain.lock().await;
    let registry = domain.registry();
    let visible: Vec<_> = alerts
        .into_iter()
        .filter(|a| caller.can_see(registry.device(&a.device_id).map(|d| registry.placement(d))))
        .collect();
    Ok(Json(visible).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AckBody {
    device_id: String,
    kind: String,
}

/// A maintenance firm (or grid user) acknowledges an open alert it can see.
pub(super) async fn acknowledge(
    State(s): State<AppState>,
    caller: Caller,
    Json(body): Json<AckBody>,
) -> Result<Response, ApiError> {
    let user = caller.writer()?;
    let kind: AlertKind = body
        .kind
        .parse()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("field kind: {e}")))?;
    let key = AlertKey {
        device: body.device_id,
        kind,
    };
    let mut domain = s.alerting.domain.lock().await;
    let place = domain
        .registry()
        .device(&key.device)
        .map(|d| domain.registry().placement(d));
    if !caller.can_see(place) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such open alert"));
    }
    let Some(fx) = domain.acknowledge(&key, &user.id, s.clock.now_ms()) else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such open alert"));
    };
    let event = fx.events.first().cloned();
    s.alerting.save(&mut domain, fx).await;
    Ok(Json(event).into_response())
}
