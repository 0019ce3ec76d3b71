//! The equipment register: list what the caller may see; import the offices' CSV.
use crate::http::{ApiError, AppState, Caller};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gridwatch_alerts::Date;
use gridwatch_cases::{Assignment, GridScope, RegistryError, Role};
use gridwatch_domain::{ImportError, ImportOptions};
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ImportQuery {
    /// How many removals the importer confirms, after a 409 named them.
    confirm_removals: Option<usize>,
}

/// Replaces the part of the register within the caller's grid-head scopes with the CSV
/// body; devices outside them are untouched and rows outside them refused. Grid heads only.
pub(super) async fn import(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<ImportQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = caller.writer()?;
    let scope: Vec<GridScope> = user
        .assignments
        .iter()
        .filter_map(|a| match a {
            Assignment::Grid {
                role: Role::GridHead,
                scope,
            } => Some(*scope),
            _ => None,
        })
        .collect();
    if scope.is_empty() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "importing the register is for grid heads",
        ));
    }
    let options = ImportOptions {
        scope: Some(scope),
        confirm_removals: q.confirm_removals,
    };
    match gridwatch_domain::import_register_with(&s.alerting, &body, s.clock.now_ms(), &options).await {
        Ok(summary) => Ok(Json(summary).into_response()),
        Err(ImportError::Rejected(rejected)) => Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: rejected.to_string(),
            details: Some(serde_json::to_value(&rejected.errors).unwrap_or_default()),
        }),
        Err(e @ ImportError::Conflict(_)) => Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())),
        Err(
            ref e @ ImportError::RemovalsUnconfirmed {
                removals,
                in_scope,
                max_share,
                ref first,
            },
        ) => Err(ApiError {
            status: StatusCode::CONFLICT,
            message: e.to_string(),
            details: Some(serde_json::json!({
                "removals": removals,
                "in_scope": in_scope,
                "max_unconfirmed_share": max_share,
                "first": first,
            })),
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
    let user = caller.writer()?;
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
        Record::Inspection(b) => domain.record_inspection(user, &id, b.date, b.next_due, now),
        Record::Maintenance(b) => domain.record_maintenance(user, &id, b.date, now),
    };
    let fx = result.map_err(|e| {
        let status = match e {
            RegistryError::NotAllowed { .. } => StatusCode::FORBIDDEN,
            RegistryError::UnknownDevice(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, e.to_string())
    })?;
    let events = fx.events.clone();
    s.alerting.save(&mut domain, fx).await;
    let device = domain.registry().device(&id);
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "device": device, "alert_events": events })),
    )
        .into_response())
}
