//! The JSON API by concern: alerts, cases, statistics, equipment, webhooks; the live feed is
//! [`crate::feed`].
mod alerts;
mod cases;
mod devices;
mod equipment;
mod events;
mod history;
mod schedules;
mod stats;
mod webhooks;

use crate::feed;
use crate::http::{ApiError, AppState};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The API's routes, each registered with its documentation (`routes!` needs the
/// handler's `#[utoipa::path]`); handlers at one path go in one `routes!`.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(alerts::list))
        .routes(routes!(alerts::acknowledge))
        .routes(routes!(feed::stream))
        .routes(routes!(devices::list))
        .routes(routes!(events::list))
        .routes(routes!(history::show))
        .routes(routes!(cases::list, cases::report))
        .routes(routes!(cases::show))
        .routes(routes!(cases::step))
        .routes(routes!(cases::acknowledgement))
        .routes(routes!(cases::arrival))
        .routes(routes!(cases::resolution))
        .routes(routes!(stats::show))
        .routes(routes!(equipment::list))
        .routes(routes!(equipment::import))
        .routes(routes!(equipment::inspection))
        .routes(routes!(equipment::maintenance))
        .routes(routes!(schedules::put))
        .routes(routes!(webhooks::list, webhooks::add))
        .routes(routes!(webhooks::remove))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(webhooks::redrive))
}

/// Rows per page of a list when `limit` is not given.
pub(crate) const DEFAULT_PAGE: i64 = 200;
/// The largest `limit` a list accepts.
pub(crate) const MAX_PAGE: i64 = 1000;

/// The header that carries the cursor of the next page, when there is one.
pub(crate) const NEXT_CURSOR: &str = "x-next-cursor";

/// `?after=CURSOR&limit=N` of a list in arrival order.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PageQuery {
    /// The previous page's `x-next-cursor`; none: from the start.
    after: Option<String>,
    /// Rows per page: 1 to 1000, default 200.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
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

/// `?after=ID&limit=N` of a list in id order (devices, the register): the cursor is the
/// last id of the previous page.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PageQueryById {
    /// The previous page's `x-next-cursor` (an id); none: from the start.
    after: Option<String>,
    /// Rows per page: 1 to 1000, default 200.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

impl PageQueryById {
    /// The cursor (`""`: from the start) and the page size, or a 400 naming the parameter.
    pub(super) fn parse(&self) -> Result<(&str, i64), ApiError> {
        let (_, limit) = PageQuery {
            after: None,
            limit: self.limit.clone(),
        }
        .parse()?;
        Ok((self.after.as_deref().unwrap_or(""), limit))
    }
}

/// The page of up to `limit` ids after `after` out of `ids` (in order), and the cursor
/// of the next page when more follow.
pub(super) fn page_of_ids<'a>(
    ids: impl IntoIterator<Item = &'a str>,
    after: &str,
    limit: i64,
) -> (Vec<&'a str>, Option<String>) {
    let mut page: Vec<&str> = ids
        .into_iter()
        .filter(|id| *id > after)
        .take(limit as usize + 1)
        .collect();
    if page.len() as i64 > limit {
        page.truncate(limit as usize);
        let next = page.last().map(|id| id.to_string());
        (page, next)
    } else {
        (page, None)
    }
}

/// [`page_response`] for a list in id order; an id that cannot be a header (never one
/// of a device) ends the paging rather than break the answer.
pub(super) fn id_page_response<T: Serialize>(items: &[T], next: Option<String>, path: &str, limit: i64) -> Response {
    let mut response = axum::Json(crate::times::json(&items)).into_response();
    if let Some(next) = next
        && let Ok(cursor) = HeaderValue::from_str(&next)
    {
        let headers = response.headers_mut();
        headers.insert(NEXT_CURSOR, cursor);
        if let Ok(link) = HeaderValue::from_str(&format!("<{path}?after={next}&limit={limit}>; rel=\"next\"")) {
            headers.insert(header::LINK, link);
        }
    }
    response
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
    let mut response = axum::Json(crate::times::json(&items)).into_response();
    link_next(&mut response, next, path_and_query, limit);
    response
}

/// Puts the next page's cursor and link on `response`, when there is a next page.
pub(super) fn link_next(response: &mut Response, next: Option<i64>, path_and_query: &str, limit: i64) {
    if let Some(next) = next {
        let sep = if path_and_query.contains('?') { '&' } else { '?' };
        let link = format!("<{path_and_query}{sep}after={next}&limit={limit}>; rel=\"next\"");
        let headers = response.headers_mut();
        headers.insert(NEXT_CURSOR, HeaderValue::from(next));
        if let Ok(link) = HeaderValue::from_str(&link) {
            headers.insert(header::LINK, link);
        }
    }
}
