//! The equipment register: list what the caller may see; import the offices' CSV.
use crate::error::{Json, Path, Query};
use crate::http::{ApiError, AppState, Caller};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gridwatch_alerts::Date;
use gridwatch_cases::{Assignment, GridScope, RegistryError, Role};
use gridwatch_domain::{ImportError, ImportOptions};
use serde::{Deserialize, Serialize};

#[utoipa::path(get, operation_id = "equipment_list", path = "/api/equipment", tag = "equipment", params(super::PageQueryById),
    responses(
        (status = 200, description = "Register entries the caller sees, in device id order", body = [gridwatch_cases::Device], headers(("x-next-cursor" = String, description = "The cursor of the next page, when there is one"),
                    ("link" = String, description = "`<URL of the next page>; rel=\"next\"`, when there is one"))),
        (status = 400, description = "A limit that does not parse or is out of range", body = crate::error::ErrorBody),
    ))]
pub(super) async fn list(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<super::PageQueryById>,
) -> Result<Response, ApiError> {
    let (after, limit) = q.parse()?;
    let domain = s.alerting.domain.lock().await;
    let registry = domain.registry();
    let visible = registry
        .devices()
        .filter(|d| caller.can_see(Some(registry.placement(d))))
        .map(|d| d.id.as_str());
    let (page, next) = super::page_of_ids(visible, after, limit);
    let devices: Vec<_> = page.into_iter().filter_map(|id| registry.device(id)).collect();
    Ok(super::id_page_response(&devices, next, "/api/equipment", limit))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ImportQuery {
    /// How many removals the importer confirms, after a 409 named them.
    confirm_removals: Option<usize>,
}

/// Replaces the part of the register within the caller's grid-head scopes with the CSV
/// body; devices outside them are untouched and rows outside them refused. Grid heads only.
#[utoipa::path(post, operation_id = "equipment_import", path = "/api/equipment/import", tag = "equipment", params(ImportQuery),
    request_body(content = String, content_type = "text/csv", description = "The office's register export (layout of simulators/data/registry-sample.csv)"),
    responses(
        (status = 200, description = "What the import changed", body = gridwatch_domain::ImportSummary),
        (status = 400, description = "A query that does not parse (`invalid_query`)", body = crate::error::ErrorBody),
        (status = 403, description = "Not a grid head", body = crate::error::ErrorBody),
        (status = 409, description = "Unconfirmed mass removal: `details: {removals, in_scope, max_unconfirmed_share, first}`", body = crate::error::ErrorBody),
        (status = 422, description = "Bad rows, each as `{line, column, found, expected}` in `details`; nothing changed", body = crate::error::ErrorBody),
    ))]
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
        Ok(summary) => Ok(Json(crate::times::json(&summary)).into_response()),
        Err(ImportError::Rejected(rejected)) => {
            Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, rejected.to_string())
                .details(serde_json::to_value(&rejected.errors).unwrap_or_default()))
        }
        Err(e @ ImportError::Conflict(_)) => Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())),
        Err(
            ref e @ ImportError::RemovalsUnconfirmed {
                removals,
                in_scope,
                max_share,
                ref first,
            },
        ) => Err(
            ApiError::new(StatusCode::CONFLICT, e.to_string()).details(serde_json::json!({
                "removals": removals,
                "in_scope": in_scope,
                "max_unconfirmed_share": max_share,
                "first": first,
            })),
        ),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct InspectionBody {
    /// The inspection date, `YYYY-MM-DD` (China time).
    #[schema(value_type = String, example = "2026-11-25")]
    date: Date,
    /// The next periodic inspection due, as printed on the new label.
    #[schema(value_type = String, example = "2027-11-24")]
    next_due: Date,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct MaintenanceBody {
    /// The maintenance date, `YYYY-MM-DD` (China time).
    #[schema(value_type = String, example = "2026-11-25")]
    date: Date,
}

/// The answer to an inspection or maintenance record.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct RecordAnswer {
    device: Option<gridwatch_cases::Device>,
    /// Due-date alerts raised, updated or cleared by the new dates.
    alert_events: Vec<gridwatch_alerts::AlertEvent>,
}

enum Record {
    Inspection(InspectionBody),
    Maintenance(MaintenanceBody),
}

/// `POST /api/equipment/{id}/inspections`: moves the next inspection due date.
#[utoipa::path(post, operation_id = "equipment_inspection", path = "/api/equipment/{id}/inspections", tag = "equipment", request_body = InspectionBody,
    params(("id" = String, Path, description = "The device id")),
    responses(
        (status = 201, description = "The device as recorded, and the alert events the new dates produced", body = RecordAnswer),
        (status = 400, description = "A body that is not JSON (`invalid_body`)", body = crate::error::ErrorBody),
        (status = 403, description = "A role that may not record inspections", body = crate::error::ErrorBody),
        (status = 404, description = "No such device in the caller's grids", body = crate::error::ErrorBody),
        (status = 415, description = "No Content-Type: application/json", body = crate::error::ErrorBody),
        (status = 422, description = "A date after today or a next_due outside the allowed range (`unprocessable`), or a body of the wrong shape (`invalid_body`)", body = crate::error::ErrorBody),
    ))]
pub(super) async fn inspection(
    s: State<AppState>,
    caller: Caller,
    id: Path<String>,
    Json(body): Json<InspectionBody>,
) -> Result<Response, ApiError> {
    record(s, caller, id, Record::Inspection(body)).await
}

/// `POST /api/equipment/{id}/maintenance`: restarts the maintenance interval.
#[utoipa::path(post, operation_id = "equipment_maintenance", path = "/api/equipment/{id}/maintenance", tag = "equipment", request_body = MaintenanceBody,
    params(("id" = String, Path, description = "The device id")),
    responses(
        (status = 201, description = "The device as recorded, and the alert events the new dates produced", body = RecordAnswer),
        (status = 400, description = "A body that is not JSON (`invalid_body`)", body = crate::error::ErrorBody),
        (status = 403, description = "Not the device's firm, nor an inspector, grid head or grid administrator over its grid", body = crate::error::ErrorBody),
        (status = 404, description = "No such device in the caller's grids", body = crate::error::ErrorBody),
        (status = 415, description = "No Content-Type: application/json", body = crate::error::ErrorBody),
        (status = 422, description = "A date after today (`unprocessable`), or a body of the wrong shape (`invalid_body`)", body = crate::error::ErrorBody),
    ))]
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
    let answer = RecordAnswer {
        device: domain.registry().device(&id).cloned(),
        alert_events: events,
    };
    Ok((StatusCode::CREATED, Json(crate::times::json(&answer))).into_response())
}
