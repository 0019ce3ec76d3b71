//! A using unit's kitchen schedule: the calendar (meal periods, operating days, opening
//! hours) its sterilizers are judged by instead of the global one.
use crate::error::Json;
use crate::http::{ApiError, AppState, Caller};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gridwatch_alerts::KitchenSchedule;
use gridwatch_cases::Registry;
use gridwatch_cases::{RegistryError, UnitKey, UsingUnit};
use serde::{Deserialize, Serialize};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ScheduleBody {
    /// The using unit, by name and address (names repeat).
    unit: UnitKey,
    /// `null` or `{}`: back to the global schedule.
    schedule: Option<KitchenSchedule>,
}

/// The answer to a schedule set.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ScheduleAnswer {
    unit: Option<UsingUnit>,
    /// The unit's sterilizers, by device id.
    sterilizers: Vec<String>,
}

/// The unit if the caller's grids cover it; 404 otherwise, so a wall does not tell
/// which units exist behind it.
fn visible_unit(registry: &Registry, caller: &Caller, key: &UnitKey) -> Result<(), ApiError> {
    let visible = registry.unit(key).is_some_and(|u| {
        caller.can_see(Some(gridwatch_cases::Placement {
            grid: u.grid,
            firm: None,
        }))
    });
    if visible {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no using unit {:?} at {:?} in your grids", key.name, key.address),
    ))
}

/// `PUT /api/units/schedule`: sets a unit's kitchen schedule. Only `inspector`,
/// `grid_head` or `grid_administrator` of the unit's grid may (403 otherwise); a
/// schedule that is no calendar is a 422.
#[utoipa::path(put, operation_id = "unit_schedule_put", path = "/api/units/schedule", tag = "equipment", request_body = ScheduleBody,
    responses(
        (status = 200, description = "The unit with its schedule, and the sterilizers it applies to", body = ScheduleAnswer),
        (status = 400, description = "A body that is not JSON (`invalid_body`)", body = crate::error::ErrorBody),
        (status = 403, description = "A role that may not set schedules", body = crate::error::ErrorBody),
        (status = 404, description = "No such using unit in the caller's grids", body = crate::error::ErrorBody),
        (status = 415, description = "No Content-Type: application/json", body = crate::error::ErrorBody),
        (status = 422, description = "A schedule that is no calendar, the field named (`unprocessable`), or a body of the wrong shape (`invalid_body`)", body = crate::error::ErrorBody),
    ))]
pub(super) async fn put(
    State(s): State<AppState>,
    caller: Caller,
    Json(body): Json<ScheduleBody>,
) -> Result<Response, ApiError> {
    let user = caller.writer()?;
    let mut domain = s.alerting.domain.lock().await;
    visible_unit(domain.registry(), &caller, &body.unit)?;
    let fx = domain
        .set_kitchen_schedule(user, &body.unit, body.schedule)
        .map_err(|e| {
            let status = match e {
                RegistryError::ScheduleNotAllowed { .. } => StatusCode::FORBIDDEN,
                RegistryError::UnknownUnit(_) => StatusCode::NOT_FOUND,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            ApiError::new(status, e.to_string())
        })?;
    s.alerting.save(&mut domain, fx).await;
    let registry = domain.registry();
    let sterilizers = registry
        .devices()
        .filter(|d| d.unit == body.unit && d.kind == gridwatch_protocol::DeviceKind::Sterilizer)
        .map(|d| d.id.clone())
        .collect();
    Ok(Json(ScheduleAnswer {
        unit: registry.unit(&body.unit).cloned(),
        sterilizers,
    })
    .into_response())
}
