//! The JSON API by concern: alerts, cases, statistics, equipment, webhooks; the live feed is
//! [`crate::feed`].
mod alerts;
mod cases;
mod equipment;
mod events;
mod history;
mod schedules;
mod stats;
mod webhooks;

use crate::http::{ApiError, AppState};
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde::{Deserialize, Serialize};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/alerts", get(alerts::list))
        .route("/api/alerts/ack", post(alerts::acknowledge))
        .route("/api/feed", get(crate::feed::stream))
        .route("/api/devices/{id}/events", get(events::list))
        .route("/api/devices/{id}/history", get(history::show))
        .route("/api/cases", get(cases::list).post(cases::report))
        .route("/api/cases/{id}", get(cases::show))
        .route("/api/cases/{id}/steps", post(cases::step))
        .route("/api/cases/{id}/acknowledgement", post(cases::acknowledgement))
        .route("/api/cases/{id}/arrival", post(cases::arrival))
        .route("/api/cases/{id}/resolution", post(cases::resolution))
        .route("/api/stats/{name}", get(stats::show))
        .route("/api/equipment", get(equipment::list))
        .route("/api/equipment/import", post(equipment::import))
        .route("/api/equipment/{id}/inspections", post(equipment::inspection))
        .route("/api/equipment/{id}/maintenance", post(equipment::maintenance))
        .route("/api/units/schedule", put(schedules::put))
        .route("/api/webhooks", get(webhooks::list).post(webhooks::add))
        .route("/api/webhooks/{id}", delete(webhooks::remove))
        .route("/api/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route(
            "/api/webhooks/{id}/deliveries/{delivery}/redrive",
            post(webhooks::redrive),
        )
}

/// Rows per page of a list when `limit` is not given.
pub(crate) const DEFAULT_PAGE: i64 = 200;
/// The largest `limit` a list accepts.
pub(crate) const MAX_PAGE: i64 = 1000;

/// The header that carries the cursor of the next page, when there is one.
pub(crate) const NEXT_CURSOR: &str = "x-next-cursor";

/// `?after=CURSOR&limit=N` of a list in arrival order.
#[derive(Deserialize)]
pub(super) struct PageQuery {
    after: Option<String>,
    limit: Option<String>,
}

impl PageQuery {
    /// The cursor (0: from the start) and the page size, or a 400 naming the parameter.
    pub(super) fn parse(&self) -> Result<(i64, i64), ApiError> {
        let after = match self.after.as_deref() {
            None | Some("") => 0,
            Some(text) => text.parse::<i64>().ok().filter(|c| *c >= 0).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("after={text:?}: expected a cursor from a previous page's {NEXT_CURSOR} header"),
                )
            })?,
        };
        let limit = match self.limit.as_deref() {
            None | Some("") => DEFAULT_PAGE,
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|l| (1..=MAX_PAGE).contains(l))
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!("limit={text:?}: expected 1 to {MAX_PAGE}"),
                    )
                })?,
        };
        Ok((after, limit))
    }
}

/// A page as a JSON array; when more rows follow, the `x-next-cursor` header holds the
/// cursor and `Link: <…>; rel="next"` the URL of the next page (`path_and_query` is the
/// list's path with its other parameters, e.g. `/api/alerts?state=all`).
pub(super) fn page_response<T: Serialize>(
    items: &[T],
    next: Option<i64>,
    path_and_query: &str,
    limit: i64,
) -> Response {
    let mut response = axum::Json(items).into_response();
    if let Some(next) = next {
        let sep = if path_and_query.contains('?') { '&' } else { '?' };
        let link = format!("<{path_and_query}{sep}after={next}&limit={limit}>; rel=\"next\"");
        let headers = response.headers_mut();
        headers.insert(NEXT_CURSOR, HeaderValue::from(next));
        if let Ok(link) = HeaderValue::from_str(&link) {
            headers.insert(header::LINK, link);
        }
    }
    response
}
