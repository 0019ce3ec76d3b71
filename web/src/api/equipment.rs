//! The equipment register: list what the caller may see; import the offices' CSV.
use crate::http::{ApiError, AppState, Caller};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gridwatch_alerts::Date;
use serde::Deserialize;

pub(super) async fn list(State(s): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let domain = s.alerting.domain.lock().await;
    let registry = domain.registry();
    let devices: Vec<_> = registry
        .devices()
        .filter(|d| caller.can_see(Some(registry.placement(d))))
        .collect();
    Ok(Json(devices).into_response())
}

/// Replaces the register with the CSV body. Grid heads only: it changes every grid.
pub(super) async fn import(State(s): State<AppState>, caller: Caller, body: Bytes) -> Result<Response, ApiError> {
    let user = caller.writer()?;
    if !user.has_role(gridwatch_cases::Role::GridHead) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "importing the register is for grid heads",
        ));
    }
    match gridwatch_domain::import_register(&s.alerting, &body, s.clock.now_ms()).await {
        Ok(summary) => Ok(Json(summary).into_response()),
        Err(rejected) => Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: rejected.to_string(),
            details: Some(serde_json::to_value(&rejected.errors).unwrap_or_default()),
        }),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InspectionBody {
    /// The inspection date, `YYYY-MM-DD` (China time).
    date: Date,
    /// The next periodic inspection due, as printed on the new label.
    next_due: Date,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MaintenanceBody {
    date: Date,
}

enum Record {
    Inspection(InspectionBody),
    Maintenance(MaintenanceBody),
}

/// `POST /api/equipment/{id}/inspections`: moves the next inspection due date.
pub(super) async fn inspection(
    s: State<AppState>,
    caller: Caller,
    id: Path<String>,
    Json(body): Json<InspectionBody>,
) -> Result<Response, ApiError> {
    record(s, caller, id, Record::Inspection(body)).await
}

/// `POST /api/equipment/{id}/maintenance`: restarts the maintenance interval.
pub(super) async fn maintenance(
    s: State<AppState>,
    caller: Caller,
    id: Path<String>,
    Json(body): Json<MaintenanceBody>,
) -> Result<Response, ApiError> {
    record(s, caller, id, Record::Maintenance(body)).await
}

async fn record(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    record: Record,
) -> Result<Response, ApiError> {
    caller.writer()?;
    let now = s.clock.now_ms();
    let mut domain = s.alerting.domain.lock().await;
    let visible = domain
        .registry()
        .device(&id)
        .is_some_and(|d| caller.can_see(Some(domain.registry().placement(d))));
    if !visible {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no device {id:?} in your grids"),
        ));
    }
    let result = match record {
        Record::Inspection(b) => domain.record_inspection(&id, b.date, b.next_due, now),
        Record::Maintenance(b) => domain.record_maintenance(&id, b.date, now),
    };
    let fx = result.map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let events = fx.events.clone();
    s.alerting.save(&mut domain, fx).await;
    let device = domain.registry().device(&id);
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "device": device, "alert_events": events })),
    )
        .into_response())
}
