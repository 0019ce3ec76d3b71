//! `GET /api/stats/{name}[?format=csv]`: the statistics the grid offices ask for,
//! over the cases and devices the caller may see.
use crate::error::{Path, Query};
use crate::http::{ApiError, AppState, Caller};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use gridwatch_cases::{Case, stats};
use serde::{Deserialize, Serialize};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct Format {
    /// `json` (default) or `csv`.
    format: Option<String>,
}

const NAMES: &str = "cases, overdue, timings, devices-due, ranking";

#[utoipa::path(get, operation_id = "stats_show", path = "/api/stats/{name}", tag = "statistics", params(
        ("name" = String, Path, description = "`cases`, `overdue`, `timings`, `devices-due` or `ranking`"),
        Format,
        super::PageQuery,
    ),
    responses(
        (status = 200, description = "The statistics' rows over what the caller sees, as JSON or CSV, paged by row position (`x-next-cursor`: the rows given so far)",
            headers(("x-next-cursor" = String, description = "The cursor of the next page, when there is one"),
                    ("link" = String, description = "`<URL of the next page>; rel=\"next\"`, when there is one")),
            content((crate::openapi::StatsRows = "application/json"), (String = "text/csv"))),
        (status = 400, description = "A format other than json or csv", body = crate::error::ErrorBody),
        (status = 404, description = "No statistics of that name", body = crate::error::ErrorBody),
    ))]
pub(super) async fn show(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<Format>,
    Query(page): Query<super::PageQuery>,
) -> Result<Response, ApiError> {
    let (after, limit) = page.parse()?;
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("format={other:?}: expected json or csv"),
            ));
        }
    };
    let now = s.clock.now_ms();
    let domain = s.alerting.domain.lock().await;
    let deadlines = &domain.config().cases.deadlines;
    let cases: Vec<&Case> = domain
        .book()
        .cases()
        .filter(|c| caller.can_see(Some(c.placement())))
        .collect();
    let page = Page {
        path: format!("/api/stats/{name}?format={}", if csv { "csv" } else { "json" }),
        csv,
        after,
        limit,
    };
    match name.as_str() {
        "cases" => page.render(&stats::count_cases(cases)),
        "overdue" => page.render(&stats::overdue_cases(cases, deadlines, now)),
        "timings" => page.render(&stats::timings_by_grid(cases)),
        "ranking" => page.render(&stats::rank_grids(cases, deadlines, now)),
        "devices-due" => {
            let registry = domain.registry();
            let today = gridwatch_alerts::china::date_of(now);
            let rows = stats::devices_due_by_grid(registry, today, &domain.config().alerts.due);
            let visible: Vec<_> = match &caller.user {
                None => rows,
                Some(user) => rows
                    .into_iter()
                    .filter(|r| user.visible_scopes().iter().any(|scope| scope.contains(r.grid)))
                    .collect(),
            };
            page.render(&visible)
        }
        other => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no statistics {other:?}; there are: {NAMES}"),
        )),
    }
}

/// One page of a statistics' rows. The rows are computed whole on each request (a
/// snapshot, bounded by the caller's cases and grids); the cursor counts the rows given
/// before.
struct Page {
    path: String,
    csv: bool,
    after: i64,
    limit: i64,
}

impl Page {
    fn render<T: Serialize>(&self, rows: &[T]) -> Result<Response, ApiError> {
        let start = usize::try_from(self.after).unwrap_or(usize::MAX).min(rows.len());
        let end = start.saturating_add(self.limit as usize).min(rows.len());
        let next = (end < rows.len()).then_some(end as i64);
        if !self.csv {
            return Ok(super::page_response(&rows[start..end], next, &self.path, self.limit));
        }
        let mut response = csv_response(&rows[start..end])?;
        super::link_next(&mut response, next, &self.path, self.limit);
        Ok(response)
    }
}

fn csv_response<T: Serialize>(rows: &[T]) -> Result<Response, ApiError> {
    let text = stats::to_csv(rows).map_err(|e| {
        tracing::error!(error = %e, "statistics as CSV");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "statistics could not be written as CSV",
        )
    })?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], text).into_response())
}
