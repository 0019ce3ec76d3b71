//! `GET /api/devices/{id}/history`: one device's hourly history for charts (a lift's
//! floors, trips and door cycles; a sterilizer's temperatures and cycles), in device
//! time, at most 31 days a request.
use crate::error::{Json, Path, Query};
use crate::http::{ApiError, AppState, Caller};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gridwatch_storage::history::{self, HourBucket, Source};
use gridwatch_storage::model::rfc3339;
use serde::{Deserialize, Serialize};

/// The window when `from` is not given: the day before `to`.
const DEFAULT_WINDOW_MS: i64 = 24 * history::HOUR_MS;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct HistoryQuery {
    /// Device time window, `from <= ts < to`, widened to whole hours: ms since the
    /// epoch or RFC 3339. Default: the day up to now.
    from: Option<String>,
    to: Option<String>,
    /// `hour`, the only bucket there is.
    bucket: Option<String>,
}

/// One device's hours in a window.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct HistoryPage<'a> {
    device_id: &'a str,
    /// `hour`, the only bucket there is.
    bucket: &'static str,
    from_ms: i64,
    from: String,
    to_ms: i64,
    to: String,
    source: Source,
    buckets: Vec<HourBucket>,
}

fn bad(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

/// A device time: ms since the Unix epoch, or RFC 3339 with `Z` or an offset.
fn device_time(name: &str, text: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    text.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|_| {
            bad(format!(
                "{name}={text:?}: expected ms since the Unix epoch or RFC 3339 (2025-11-25T17:00:00+08:00)"
            ))
        })
}

/// The hours of a device the caller may see. A device outside the caller's walls, or
/// one unknown to both the register and the readings, is a 404 like any other.
#[utoipa::path(get, operation_id = "device_history", path = "/api/devices/{id}/history", tag = "devices",
    params(("id" = String, Path, description = "The device id"), HistoryQuery),
    responses(
        (status = 200, description = "The hours of the window that have readings, oldest first", body = HistoryPage),
        (status = 400, description = "A time or bucket that does not parse, an empty window, or more than 31 days", body = crate::error::ErrorBody),
        (status = 404, description = "No such device in the caller's grids", body = crate::error::ErrorBody),
    ))]
pub(super) async fn show(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, format!("no device {id:?} in your grids"));
    if !gridwatch_protocol::validate::valid_device_id(&id) {
        return Err(not_found());
    }
    let given = |v: &Option<String>| v.as_deref().filter(|t| !t.is_empty()).map(str::to_string);
    match given(&q.bucket).as_deref() {
        None | Some("hour") => {}
        Some(other) => return Err(bad(format!("bucket={other:?}: expected hour"))),
    }
    let to_ms = given(&q.to).map_or(Ok(s.clock.now_ms() as i64), |t| device_time("to", &t))?;
    let from_ms = given(&q.from).map_or(Ok(to_ms.saturating_sub(DEFAULT_WINDOW_MS)), |t| device_time("from", &t))?;
    let (from_ms, to_ms) = history::hour_window(from_ms, to_ms).map_err(|e| bad(e.to_string()))?;
    let (visible, registered) = {
        let domain = s.alerting.domain.lock().await;
        let registry = domain.registry();
        let place = registry.device(&id).map(|d| registry.placement(d));
        (caller.can_see(place), place.is_some())
    };
    // Open mode also shows devices outside the register, if they ever sent a reading.
    if !visible || (!registered && !gridwatch_storage::events::device_has_readings(&s.store, &id).await?) {
        return Err(not_found());
    }
    let hourly = history::hourly(&s.store, &id, from_ms, to_ms).await?;
    Ok(Json(HistoryPage {
        device_id: &id,
        bucket: "hour",
        from_ms,
        from: rfc3339(from_ms),
        to_ms,
        to: rfc3339(to_ms),
        source: hourly.source,
        buckets: hourly.buckets,
    })
    .into_response())
}
