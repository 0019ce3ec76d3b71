//! `GET /api/alerts`, `POST /api/alerts/ack`.
use super::{PageQuery, page_response};
use crate::error::{Json, Query};
use crate::http::{ApiError, AppState, Caller};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gridwatch_alerts::{AlertKey, AlertKind};
use gridwatch_storage::query;
use serde::Deserialize;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// `open` (default) or `all`.
    state: Option<String>,
}

/// Alerts the caller sees, in arrival order, one page at a time (`?after=CURSOR&limit=N`).
/// The walls are part of the query: foreign alerts never take a place on the page.
#[utoipa::path(get, operation_id = "alerts_list", path = "/api/alerts", tag = "alerts", params(ListQuery, super::PageQuery),
    responses(
        (status = 200, description = "Alerts in arrival order", body = [gridwatch_storage::model::AlertView],
            headers(("x-next-cursor" = String, description = "The cursor of the next page, when there is one"),
                    ("link" = String, description = "`<URL of the next page>; rel=\"next\"`, when there is one"))),
        (status = 400, description = "A state, cursor or limit that does not parse", body = crate::error::ErrorBody),
    ))]
pub(super) async fn list(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
    Query(page): Query<PageQuery>,
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
    let (after, limit) = page.parse()?;
    let visible: Option<Vec<String>> = match &caller.user {
        None => None,
        Some(user) => {
            let domain = s.alerting.domain.lock().await;
            Some(domain.registry().visible_devices(user).map(|d| d.id.clone()).collect())
        }
    };
    let devices = visible.as_deref().map_or(query::Devices::All, query::Devices::Only);
    let page = query::alerts_page(&s.store, open_only, devices, after, limit).await?;
    let state = if open_only { "open" } else { "all" };
    Ok(page_response(
        &page.items,
        page.next,
        &format!("/api/alerts?state={state}"),
        limit,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AckBody {
    device_id: String,
    /// The alert's kind, e.g. `trapped_passenger`, `fault:31`.
    #[schema(value_type = AlertKind)]
    kind: String,
}

/// A maintenance firm (or grid user) acknowledges an open alert it can see; the open
/// case the alert opened is acknowledged with it when the caller may respond to it
/// (its firm, a grid administrator).
#[utoipa::path(post, operation_id = "alerts_acknowledge", path = "/api/alerts/ack", tag = "alerts", request_body = AckBody,
    responses(
        (status = 200, description = "The acknowledgement event", body = gridwatch_alerts::AlertEvent),
        (status = 400, description = "A body that is not JSON (`invalid_body`)", body = crate::error::ErrorBody),
        (status = 404, description = "No such open alert the caller sees", body = crate::error::ErrorBody),
        (status = 415, description = "No Content-Type: application/json", body = crate::error::ErrorBody),
        (status = 422, description = "An unknown alert kind (`unprocessable`), or a body of the wrong shape (`invalid_body`)", body = crate::error::ErrorBody),
    ))]
pub(super) async fn acknowledge(
    State(s): State<AppState>,
    caller: Caller,
    Json(body): Json<AckBody>,
) -> Result<Response, ApiError> {
    let user = caller.writer()?;
    let kind: AlertKind = body
        .kind
        .parse()
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("field kind: {e}")))?;
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
    let Some(fx) = domain.acknowledge(&key, user, s.clock.now_ms()) else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such open alert"));
    };
    let event = fx.events.first().cloned();
    s.alerting.save(&mut domain, fx).await;
    Ok(Json(crate::times::json(&event)).into_response())
}
