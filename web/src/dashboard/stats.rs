//! `/stats` and `/stats.csv`: case counts by grid and by type, devices overdue for
//! inspection or maintenance, overdue cases and response times, from the same
//! `gridwatch_cases::stats` functions as `GET /api/stats/{name}`, within the viewer's walls.
use super::chart;
use super::{Viewer, china_time, error_page};
use crate::http::AppState;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use gridwatch_cases::{Case, stats};
use maud::html;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The tables `/stats.csv?name=` exports.
const NAMES: &str = "cases, overdue, timings, devices-due, ranking";

pub(super) async fn page(State(s): State<AppState>, v: Viewer) -> Response {
    let now = s.clock.now_ms();
    let domain = s.alerting.domain.lock().await;
    let deadlines = &domain.config().cases.deadlines;
    let cases: Vec<&Case> = domain
        .book()
        .cases()
        .filter(|c| v.can_see(Some(c.placement())))
        .collect();
    let counts = stats::count_cases(cases.iter().copied());
    let mut by_grid: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    for row in &counts {
        *by_grid.entry(row.grid.to_string()).or_default() += row.count;
        *by_type.entry(v.lang.of("case_type", &row.case_type)).or_default() += row.count;
    }
    let bars = |m: BTreeMap<String, u64>| -> Vec<(String, f64)> {
        let mut rows: Vec<_> = m.into_iter().map(|(k, n)| (k, n as f64)).collect();
        rows.sort_by(|a, b| b.1.total_cmp(&a.1));
        rows
    };
    let overdue = stats::overdue_cases(cases.iter().copied(), deadlines, now);
    let timings = stats::timings_by_grid(cases.iter().copied());
    let due = devices_due(&v, &domain, now);
    let lang = v.lang;
    let opt = |x: Option<f64>| x.map_or("—".to_string(), |x| format!("{x:.0}"));
    let content = html! {
        h1 { (v.t("stats.title")) }
        p.csv { (v.t("stats.csv")) ": "
            @for name in NAMES.split(", ") { a href={ "/stats.csv?name=" (name) } download { (name) } " " }
        }
        section #stats-by-grid {
            h2 { (v.t("stats.by_grid")) }
            @if by_grid.is_empty() { p.none { (v.t("overview.none")) } } @else { (chart::hbars(&v.t("stats.by_grid"), &bars(by_grid), "by-grid")) }
        }
        section #stats-by-type {
            h2 { (v.t("stats.by_type")) }
            @if by_type.is_empty() { p.none { (v.t("overview.none")) } } @else { (chart::hbars(&v.t("stats.by_type"), &bars(by_type), "by-type")) }
        }
        section #stats-due {
            h2 { (v.t("stats.overdue_devices")) }
            div.scroll { table #devices-due {
                thead { tr { th { (v.t("col.grid")) } th { (v.t("col.devices")) } th { (v.t("alert.inspection_overdue")) } th { (v.t("alert.inspection_due_soon")) } th { (v.t("alert.maintenance_overdue")) } } }
                tbody { @for r in &due {
                    tr { td { (r.grid.to_string()) } td { (r.devices) } td { (r.inspection_overdue) } td { (r.inspection_due_soon) } td { (r.maintenance_overdue) } }
                } }
            } }
        }
        section #stats-overdue {
            h2 { (v.t("stats.overdue_cases")) " " span.count { (overdue.len()) } }
            div.scroll { table #overdue-cases {
                thead { tr { th { (v.t("col.case")) } th { (v.t("col.grid")) } th { (v.t("col.kind")) } th { (v.t("col.step")) } th { (v.t("col.due")) } th { (v.t("col.overdue_s")) } } }
                tbody { @for r in &overdue {
                    tr { td { a href={ "/cases/" (r.case_id) } { "#" (r.case_id) } } td { (r.grid.to_string()) } td { (lang.of("case_type", &r.case_type)) }
                         td { (lang.of("step", &r.step)) } td { (china_time(r.due_at as i64)) } td { (r.overdue_s) } }
                } }
            } }
        }
        section #stats-timings {
            h2 { (v.t("stats.timings")) }
            div.scroll { table #timings {
                thead { tr { th { (v.t("col.grid")) } th { (v.t("nav.cases")) } th { (v.t("col.mean_response_s")) } th { (v.t("col.closed")) } th { (v.t("col.mean_close_s")) } } }
                tbody { @for r in &timings {
                    tr { td { (r.grid) } td { (r.cases) } td { (opt(r.mean_response_s)) } td { (r.closed) } td { (opt(r.mean_close_s)) } }
                } }
            } }
        }
    };
    drop(domain);
    super::page(&v, &v.t("stats.title"), content)
}

/// Devices due by grid, only the grids the viewer sees (as the API's `devices-due`).
fn devices_due(v: &Viewer, domain: &gridwatch_domain::Domain, now: u64) -> Vec<stats::GridDueRow> {
    let today = gridwatch_alerts::china::date_of(now);
    let rows = stats::devices_due_by_grid(domain.registry(), today, &domain.config().alerts.due);
    match &v.user {
        None => rows,
        Some(user) => {
            let scopes = user.visible_scopes();
            rows.into_iter()
                .filter(|r| scopes.iter().any(|scope| scope.contains(r.grid)))
                .collect()
        }
    }
}

#[derive(Deserialize)]
pub(super) struct CsvQuery {
    name: Option<String>,
}

/// `/stats.csv?name=…` (default `cases`): a table as CSV, for a spreadsheet.
pub(super) async fn csv(State(s): State<AppState>, v: Viewer, Query(q): Query<CsvQuery>) -> Response {
    let now = s.clock.now_ms();
    let domain = s.alerting.domain.lock().await;
    let deadlines = &domain.config().cases.deadlines;
    let cases: Vec<&Case> = domain
        .book()
        .cases()
        .filter(|c| v.can_see(Some(c.placement())))
        .collect();
    let name = q.name.as_deref().unwrap_or("cases");
    let text = match name {
        "cases" => stats::to_csv(&stats::count_cases(cases)),
        "overdue" => stats::to_csv(&stats::overdue_cases(cases, deadlines, now)),
        "timings" => stats::to_csv(&stats::timings_by_grid(cases)),
        "ranking" => stats::to_csv(&stats::rank_grids(cases, deadlines, now)),
        "devices-due" => stats::to_csv(&devices_due(&v, &domain, now)),
        other => {
            return error_page(
                &v,
                StatusCode::NOT_FOUND,
                &format!("name={other:?}: no such statistics; there are: {NAMES}"),
            );
        }
    };
    match text {
        Ok(text) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"gridwatch-{name}.csv\""),
                ),
            ],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "statistics as CSV");
            error_page(
                &v,
                StatusCode::INTERNAL_SERVER_ERROR,
                "statistics could not be written as CSV",
            )
        }
    }
}
