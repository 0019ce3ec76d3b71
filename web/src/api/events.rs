//! `GET /api/devices/{id}/events`: what a device reported around a time (node events,
//! births, door openings and closings), in device time, one page at a time.
use super::{MAX_PAGE, NEXT_CURSOR, page_response};
use crate::error::{Path, Query};
use crate::http::{ApiError, AppState, Caller};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use gridwatch_storage::events::{self, EventKind, EventQuery, Position};
use serde::Deserialize;

/// Events per page when `limit` is not given.
const DEFAULT_EVENTS: i64 = 100;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct EventsQuery {
    /// Device time window, `from <= ts < to`: ms since the epoch or RFC 3339.
    from: Option<String>,
    to: Option<String>,
    /// Comma-separated event kinds; none: every kind.
    kind: Option<String>,
    /// The previous page's `x-next-cursor`.
    after: Option<String>,
    /// Events per page: 1 to 1000, default 100.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

/// The parameters, checked: a 400 names the one that is wrong.
struct Params {
    from_ms: i64,
    to_ms: i64,
    kinds: Vec<EventKind>,
    after: Option<Position>,
    limit: i64,
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

impl EventsQuery {
    fn parse(&self) -> Result<Params, ApiError> {
        let given = |v: &Option<String>| v.as_deref().filter(|t| !t.is_empty()).map(str::to_string);
        let from_ms = given(&self.from).map_or(Ok(0), |t| device_time("from", &t))?;
        let to_ms = given(&self.to).map_or(Ok(i64::MAX), |t| device_time("to", &t))?;
        if from_ms >= to_ms {
            return Err(bad(format!(
                "from={from_ms} to={to_ms}: the window is empty (from must be before to)"
            )));
        }
        let mut kinds = Vec::new();
        for name in given(&self.kind).iter().flat_map(|k| k.split(',')) {
            let kind = EventKind::parse(name.trim()).ok_or_else(|| {
                let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                bad(format!("kind={name:?}: expected one of {}", known.join(", ")))
            })?;
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        let after = match given(&self.after) {
            None => None,
            Some(text) => Some(text.parse::<Position>().map_err(|()| {
                bad(format!(
                    "after={text:?}: expected a cursor from a previous page's {NEXT_CURSOR} header"
                ))
            })?),
        };
        let limit = match given(&self.limit) {
            None => DEFAULT_EVENTS,
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|l| (1..=MAX_PAGE).contains(l))
                .ok_or_else(|| bad(format!("limit={text:?}: expected 1 to {MAX_PAGE}")))?,
        };
        Ok(Params {
            from_ms,
            to_ms,
            kinds,
            after,
            limit,
        })
    }
}

/// The device's events the caller may see. A device outside the caller's walls, or one
/// unknown to both the register and the readings, is a 404 like any other.
#[utoipa::path(get, operation_id = "device_events", path = "/api/devices/{id}/events", tag = "devices",
    params(("id" = String, Path, description = "The device id"), EventsQuery),
    responses(
        (status = 200, description = "Events in device time, then seq", body = [gridwatch_storage::events::DeviceEvent], headers(("x-next-cursor" = String, description = "The cursor of the next page, when there is one"),
                    ("link" = String, description = "`<URL of the next page>; rel=\"next\"`, when there is one"))),
        (status = 400, description = "A time, kind, cursor or limit that does not parse, or an empty window", body = crate::error::ErrorBody),
        (status = 404, description = "No such device in the caller's grids", body = crate::error::ErrorBody),
    ))]
pub(super) async fn list(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, format!("no device {id:?} in your grids"));
    // A valid device id is also safe in the next page's URL as it is.
    if !gridwatch_protocol::validate::valid_device_id(&id) {
        return Err(not_found());
    }
    let params = q.parse()?;
    let (visible, registered) = {
        let domain = s.alerting.domain.lock().await;
        let registry = domain.registry();
        let place = registry.device(&id).map(|d| registry.placement(d));
        let registered = place.is_some();
        (caller.can_see(place), registered)
    };
    // Open mode also shows devices outside the register, if they ever sent a reading.
    if !visible || (!registered && !events::device_has_readings(&s.store, &id).await?) {
        return Err(not_found());
    }
    let query = EventQuery {
        device: &id,
        from_ms: params.from_ms,
        to_ms: params.to_ms,
        kinds: &params.kinds,
        after: params.after,
        limit: params.limit,
    };
    let page = events::events_page(&s.store, &query).await?;
    let mut response = page_response(&page.items, None, "", params.limit);
    if let Some(next) = page.next {
        // Times as ms and kinds by name: nothing in the URL that needs escaping.
        let mut url = format!("/api/devices/{id}/events?from={}", params.from_ms);
        if params.to_ms != i64::MAX {
            url.push_str(&format!("&to={}", params.to_ms));
        }
        if !params.kinds.is_empty() {
            let kinds: Vec<&str> = params.kinds.iter().map(|k| k.as_str()).collect();
            url.push_str(&format!("&kind={}", kinds.join(",")));
        }
        let link = format!("<{url}&after={next}&limit={}>; rel=\"next\"", params.limit);
        let headers = response.headers_mut();
        if let Ok(cursor) = HeaderValue::from_str(&next.to_string()) {
            headers.insert(NEXT_CURSOR, cursor);
        }
        if let Ok(link) = HeaderValue::from_str(&link) {
            headers.insert(header::LINK, link);
        }
    }
    Ok(response)
}
