//! `/devices/{id}`: one device's state, its open alerts, cases, inspections and
//! maintenance, and a chart of its last 24 hours (storage's hourly history): floors,
//! trips and door cycles for a lift, the temperature curve with the hold band for a
//! sterilizer. The state section follows the live feed (the page's script).
use super::chart::{self, Hours};
use super::health::{Health, OpenAlert, urgency};
use super::i18n::serde_name;
use super::{Viewer, china_time, china_time_text, error_page};
use crate::http::{ApiError, AppState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gridwatch_alerts::Alert;
use gridwatch_cases::{Case, Subject};
use gridwatch_storage::history::{self, HourBucket};
use gridwatch_storage::model::AlertView;
use gridwatch_storage::query::Devices;
use maud::{Markup, html};

const WINDOW_MS: i64 = 24 * history::HOUR_MS;

pub(super) async fn page(State(s): State<AppState>, v: Viewer, Path(id): Path<String>) -> Response {
    match render(&s, &v, &id).await {
        Ok(Some(markup)) => super::page(&v, &format!("{} {id}", v.t("device.title")), markup),
        Ok(None) => error_page(&v, StatusCode::NOT_FOUND, &v.t("device.not_found")),
        Err(e) => e.into_response(),
    }
}

/// What the register says of the device, read under the domain's lock.
struct Registered {
    kind: String,
    unit: String,
    grid: String,
    firm: Option<String>,
    hold_min_c: Option<f64>,
    inspections: Vec<(String, String)>,
    maintenance: Vec<String>,
    next_inspection_due: Option<String>,
    cases: Vec<(u64, String, String, String)>,
}

async fn render(s: &AppState, v: &Viewer, id: &str) -> Result<Option<Markup>, ApiError> {
    if !gridwatch_protocol::validate::valid_device_id(id) {
        return Ok(None);
    }
    // Read before the state: the page's script follows the feed from here, missing nothing.
    let after = gridwatch_storage::feed::last_id(&s.store).await?;
    let (registered, alerts, health) = {
        let domain = s.alerting.domain.lock().await;
        let registry = domain.registry();
        let device = registry.device(id);
        if !v.can_see(device.map(|d| registry.placement(d))) {
            return Ok(None);
        }
        let monitor = domain.engine().state().devices.get(id);
        let mut open: Vec<&Alert> = monitor.map(|m| m.alerts.iter().collect()).unwrap_or_default();
        open.sort_by_cached_key(|a| urgency(a));
        let alerts: Vec<OpenAlert> = open.into_iter().map(OpenAlert::of).collect();
        let lang = v.lang;
        let cases = |c: &&Case| matches!(&c.subject, Subject::Device { id: d } if d == id);
        let registered = device.map(|d| Registered {
            kind: serde_name(&d.kind),
            unit: d.unit.name.clone(),
            grid: registry.grid_of(d).to_string(),
            firm: d
                .firm
                .as_ref()
                .map(|f| registry.firm(f).map_or(f.clone(), |firm| firm.name.clone())),
            hold_min_c: d
                .equipment_type
                .method()
                .map(|m| f64::from(domain.config().alerts.sterilizer.rule(m).min_temp_c)),
            inspections: d
                .inspections
                .iter()
                .map(|i| (i.date.to_string(), i.next_due.to_string()))
                .collect(),
            maintenance: d.maintenance.iter().map(|m| m.date.to_string()).collect(),
            next_inspection_due: d.next_inspection_due.map(|d| d.to_string()),
            cases: domain
                .book()
                .cases()
                .filter(cases)
                .map(|c| {
                    (
                        c.id,
                        lang.of("case_type", &c.case_type),
                        lang.of("status", &c.status()),
                        serde_name(&c.priority),
                    )
                })
                .collect(),
        });
        (registered, alerts, Health::of_device(monitor))
    };
    let stored = s.store.device(id).await?;
    if registered.is_none() && stored.is_none() {
        return Ok(None);
    }
    let ids = [id.to_string()];
    let (past, past_total) = past_alerts(&s.store, &ids).await?;
    let now = s.clock.now_ms() as i64;
    let (from_ms, to_ms) = history::hour_window(now - WINDOW_MS + history::HOUR_MS, now + 1)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let hourly = history::hourly(&s.store, id, from_ms, to_ms).await?;
    let hours = Hours {
        from_ms,
        hours: ((to_ms - from_ms) / history::HOUR_MS) as usize,
    };
    let kind = registered
        .as_ref()
        .map(|r| r.kind.clone())
        .or_else(|| stored.as_ref().map(|d| d.kind.clone()))
        .unwrap_or_default();
    let lang = v.lang;
    Ok(Some(html! {
        h1 { (v.t("device.title")) " " (id) " " (health.badge(lang)) }
        @if let Some(r) = &registered {
            dl.facts {
                dt { (v.t("col.kind")) } dd { (v.t(&format!("kind.{}", r.kind))) }
                dt { (v.t("col.unit")) } dd { (r.unit) }
                dt { (v.t("col.grid")) } dd { (r.grid) }
                @if let Some(firm) = &r.firm { dt { (v.t("col.firm")) } dd { (firm) } }
                @if let Some(due) = &r.next_inspection_due { dt { (v.t("col.next_due")) } dd { (due) } }
            }
        }
        section #live data-live="feed" data-after=(after) {
            h2 { (v.t("device.state")) }
            @if let Some(d) = &stored {
                p { (v.t("col.last_seen")) ": " (china_time_text(&d.last_seen)) }
                (state(lang, &d.last_state))
            } @else { p.none { (v.t("overview.none")) } }
            h2 { (v.t("overview.alerts")) " " span.count { (alerts.len()) } }
            @if alerts.is_empty() { p.none { (v.t("overview.none")) } } @else {
                div.scroll { table #alerts {
                    thead { tr { th { (v.t("col.raised")) } th { (v.t("col.kind")) } th { (v.t("col.severity")) } th { (v.t("col.state")) } } }
                    tbody { @for a in &alerts {
                        tr class={ "sev-" (a.severity) " kind-" (a.kind) } {
                            td { (china_time(a.raised_at_ms)) }
                            td { (a.health.badge(lang)) " " (lang.alert_kind(&a.kind)) }
                            td { (v.t(&format!("severity.{}", a.severity))) }
                            td { (v.t(&format!("alert_state.{}", a.state))) }
                        }
                    } }
                } }
            }
        }
        section #past-alerts {
            h2 { (v.t("device.past_alerts")) " " span.count { (past_total) } }
            @if past.is_empty() { p.none { (v.t("overview.none")) } } @else {
                div.scroll { table {
                    thead { tr { th { (v.t("col.raised")) } th { (v.t("col.kind")) } th { (v.t("col.cleared")) } } }
                    tbody { @for a in &past {
                        tr class={ "kind-" (a.kind) } {
                            td { (china_time_text(&a.raised_at)) }
                            td { (lang.alert_kind(&a.kind)) }
                            td { (a.cleared_at.as_deref().map_or("—".to_string(), china_time_text)) }
                        }
                    } }
                } }
                @if past_total > past.len() { p.small { (v.t("device.past_shown")) " " (past.len()) } }
            }
        }
        section #history {
            h2 { (v.t("device.history")) }
            @if hourly.buckets.is_empty() { p.none { (v.t("device.no_readings")) } }
            @else { (charts(v, &kind, hours, &hourly.buckets, registered.as_ref().and_then(|r| r.hold_min_c))) }
        }
        @if let Some(r) = &registered {
            section #device-cases {
                h2 { (v.t("nav.cases")) " " span.count { (r.cases.len()) } }
                ul { @for (case, kind, status, priority) in &r.cases {
                    li class={ "prio-" (priority) } { a href={ "/cases/" (case) } { "#" (case) " " (kind) } " · " (status) }
                } }
            }
            section {
                h2 { (v.t("device.inspections")) }
                @if r.inspections.is_empty() { p.none { (v.t("overview.none")) } }
                ul { @for (date, next) in &r.inspections { li { (date) " → " (v.t("col.next_due")) " " (next) } } }
                h2 { (v.t("device.maintenance")) }
                @if r.maintenance.is_empty() { p.none { (v.t("overview.none")) } }
                ul { @for date in &r.maintenance { li { (date) } } }
            }
        }
        p.small { (v.t("col.at")) ": " (china_time(now)) }
    }))
}

/// Cleared alerts shown on a device page, newest first, and how many are read at most.
const PAST_SHOWN: usize = 20;
const PAST_READ: usize = 10_000;

/// The device's cleared alerts, newest first (at most [`PAST_SHOWN`]), and how many
/// there are (counted up to [`PAST_READ`]).
async fn past_alerts(store: &gridwatch_storage::Store, ids: &[String]) -> Result<(Vec<AlertView>, usize), ApiError> {
    let mut past = Vec::new();
    let mut after = 0;
    loop {
        let page = gridwatch_storage::query::alerts_page(store, false, Devices::Only(ids), after, 1000).await?;
        past.extend(page.items.into_iter().filter(|a| a.state == "cleared"));
        match page.next {
            Some(next) if past.len() < PAST_READ => after = next,
            _ => break,
        }
    }
    let total = past.len();
    past.reverse();
    past.truncate(PAST_SHOWN);
    Ok((past, total))
}

/// The device's last reported state, field by field.
fn state(lang: super::Lang, value: &serde_json::Value) -> Markup {
    html! {
        @if let Some(fields) = value.as_object() {
            dl.facts #state {
                @for (key, value) in fields {
                    dt { (lang.t_or(&format!("state.{key}"), key)) } dd { (value.as_str().map_or_else(|| value.to_string(), str::to_string)) }
                }
            }
        }
    }
}

fn charts(v: &Viewer, kind: &str, hours: Hours, buckets: &[HourBucket], hold_min: Option<f64>) -> Markup {
    let series = |f: fn(&HourBucket) -> Option<f64>| -> Vec<(i64, f64)> {
        buckets.iter().filter_map(|b| f(b).map(|x| (b.start_ms, x))).collect()
    };
    if kind == "sterilizer" {
        let points: Vec<_> = buckets
            .iter()
            .filter_map(|b| Some((b.start_ms, b.temp_min_c?, b.temp_mean_c?, b.temp_max_c?)))
            .collect();
        return html! {
            (chart::temperature(&v.t("chart.temp"), hours, &points, hold_min))
        };
    }
    let floors: Vec<_> = buckets
        .iter()
        .filter_map(|b| Some((b.start_ms, b.floor_min? as f64, b.floor_max? as f64)))
        .collect();
    html! {
        (chart::ranges(&v.t("chart.floors"), hours, &floors, "floors"))
        (chart::bars(&v.t("chart.trips"), hours, &series(|b| b.trips.map(|x| x as f64)), "trips"))
        (chart::bars(&v.t("chart.doors"), hours, &series(|b| b.door_cycles.map(|x| x as f64)), "doors"))
    }
}
