//! `/`: open alerts, urgent first (trapped passengers, faults, then by severity); the
//! grid tree (area -> unit -> grid) with device counts and health; every device the
//! viewer may see with its health badge. Long lists are paged, never cut silently.
use super::health::{Health, urgency};
use super::i18n::serde_name;
use super::{Viewer, china_time_text, page_of, pager};
use crate::http::{ApiError, AppState};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use gridwatch_cases::GridCode;
use gridwatch_storage::Store;
use gridwatch_storage::model::AlertView;
use gridwatch_storage::query::{self, Devices};
use maud::{Markup, html};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

/// Alerts shown before "show all", devices per page.
const ALERTS_SHOWN: usize = 50;
const DEVICES_PER_PAGE: usize = 100;
/// Open alerts read at most for one page: beyond it the page says so.
pub(super) const MAX_OPEN_ALERTS: usize = 100_000;
const ALERT_READ_PAGE: i64 = 1000;

#[derive(Deserialize)]
pub(super) struct OverviewQuery {
    page: Option<usize>,
    /// `all`: every open alert, not the first [`ALERTS_SHOWN`].
    alerts: Option<String>,
}

/// The open alerts within the walls, most urgent first; `true` when there were more
/// than [`MAX_OPEN_ALERTS`].
pub(super) async fn open_alerts(store: &Store, walls: Devices<'_>) -> Result<(Vec<AlertView>, bool), ApiError> {
    let mut alerts = Vec::new();
    let mut after = 0;
    let more = loop {
        let page = query::alerts_page(store, true, walls, after, ALERT_READ_PAGE).await?;
        alerts.extend(page.items);
        match page.next {
            Some(next) if alerts.len() < MAX_OPEN_ALERTS => after = next,
            Some(_) => break true,
            None => break false,
        }
    };
    alerts.sort_by(|a, b| urgency(a).cmp(&urgency(b)).then(b.raised_at_ms.cmp(&a.raised_at_ms)));
    Ok((alerts, more))
}

/// One device row of the page.
struct DeviceLine {
    id: String,
    kind: String,
    unit: String,
    grid: Option<GridCode>,
    /// As stored: only the rows of the page shown are turned into Beijing time.
    last_seen: Option<String>,
    health: Health,
}

/// An area's units, each with its grids.
type Units = BTreeMap<u8, (Counts, BTreeMap<GridCode, Counts>)>;

#[derive(Default, Clone, Copy)]
struct Counts {
    devices: usize,
    unhealthy: usize,
    worst: Option<Health>,
}

impl Counts {
    fn add(&mut self, health: Health) {
        self.devices += 1;
        if health < Health::DueSoon {
            self.unhealthy += 1;
        }
        self.worst = Some(self.worst.map_or(health, |w| w.min(health)));
    }
}

pub(super) async fn page(State(s): State<AppState>, v: Viewer, Query(q): Query<OverviewQuery>) -> Response {
    match render(&s, &v, q).await {
        Ok(markup) => super::page(&v, &v.t("nav.overview"), markup),
        Err(e) => e.into_response(),
    }
}

async fn render(s: &AppState, v: &Viewer, q: OverviewQuery) -> Result<Markup, ApiError> {
    let visible: Option<Vec<String>> = match &v.user {
        None => None,
        Some(user) => {
            let domain = s.alerting.domain.lock().await;
            Some(domain.registry().visible_devices(user).map(|d| d.id.clone()).collect())
        }
    };
    let walls = visible.as_deref().map_or(Devices::All, Devices::Only);
    // Read before the alerts: the page's script follows the feed from here, missing nothing.
    let after = gridwatch_storage::feed::last_id(&s.store).await?;
    let (alerts, more_alerts) = open_alerts(&s.store, walls).await?;
    let stored = s.store.devices().await?;
    let mut by_device: HashMap<&str, Vec<&AlertView>> = HashMap::new();
    for a in &alerts {
        by_device.entry(a.device_id.as_str()).or_default().push(a);
    }
    let health_of = |id: &str| Health::of_alerts(by_device.get(id).into_iter().flatten().copied());
    let last_seen: HashMap<&str, &str> = stored
        .iter()
        .map(|d| (d.device_id.as_str(), d.last_seen.as_str()))
        .collect();

    let mut lines: Vec<DeviceLine> = {
        let domain = s.alerting.domain.lock().await;
        let registry = domain.registry();
        let mut lines: Vec<DeviceLine> = registry
            .devices()
            .filter(|d| v.can_see(Some(registry.placement(d))))
            .map(|d| DeviceLine {
                id: d.id.clone(),
                kind: serde_name(&d.kind),
                unit: d.unit.name.clone(),
                grid: Some(registry.grid_of(d)),
                last_seen: last_seen.get(d.id.as_str()).map(|t| t.to_string()),
                health: health_of(&d.id),
            })
            .collect();
        // Open mode also shows devices that report but are not in the register.
        if v.user.is_none() {
            lines.extend(
                stored
                    .iter()
                    .filter(|d| registry.device(&d.device_id).is_none())
                    .map(|d| DeviceLine {
                        id: d.device_id.clone(),
                        kind: d.kind.clone(),
                        unit: String::new(),
                        grid: None,
                        last_seen: Some(d.last_seen.clone()),
                        health: health_of(&d.device_id),
                    }),
            );
        }
        lines
    };
    lines.sort_by(|a, b| a.health.cmp(&b.health).then_with(|| a.id.cmp(&b.id)));

    let mut tree: BTreeMap<u8, (Counts, Units)> = BTreeMap::new();
    for line in &lines {
        let Some(grid) = line.grid else { continue };
        let area = tree.entry(grid.area).or_default();
        area.0.add(line.health);
        let unit = area.1.entry(grid.unit).or_default();
        unit.0.add(line.health);
        unit.1.entry(grid).or_default().add(line.health);
    }

    let show_all = q.alerts.as_deref() == Some("all");
    let shown = if show_all {
        alerts.len()
    } else {
        alerts.len().min(ALERTS_SHOWN)
    };
    let (page, pages) = page_of(q.page, lines.len(), DEVICES_PER_PAGE);
    let lang = v.lang;
    let counts = |c: &Counts| {
        html! {
            span.count { (c.devices) }
            @if c.unhealthy > 0 { " " span.count.bad { (v.t("col.unhealthy")) " " (c.unhealthy) } }
            " " (c.worst.unwrap_or(Health::Ok).badge(lang))
        }
    };
    Ok(html! {
        section #live data-live="feed" data-after=(after) {
            h2 { (v.t("overview.alerts")) " " span #alert-count.count { (alerts.len()) @if more_alerts { "+" } } }
            @if alerts.is_empty() {
                p.none { (v.t("overview.none")) }
            } @else {
                div.scroll {
                    table #alerts {
                        thead { tr {
                            th { (v.t("col.raised")) } th { (v.t("col.kind")) } th { (v.t("col.device")) }
                            th.wide { (v.t("col.severity")) } th.wide { (v.t("col.state")) }
                        } }
                        tbody {
                            @for a in &alerts[..shown] {
                                tr class={ "sev-" (a.severity) " kind-" (a.kind) } {
                                    td { (china_time_text(&a.raised_at)) }
                                    td { (lang.alert_kind(&a.kind)) }
                                    td { a href={ "/devices/" (a.device_id) } { (a.device_id) } }
                                    td.wide { (v.t(&format!("severity.{}", a.severity))) }
                                    td.wide { (v.t(&format!("alert_state.{}", a.state))) }
                                }
                            }
                        }
                    }
                }
                @if shown < alerts.len() {
                    p { a #show-all-alerts href="/?alerts=all" { (v.t("overview.show_all")) " (" (alerts.len()) ")" } }
                }
            }
        }
        section #grids data-live="feed" {
            h2 { (v.t("overview.grids")) }
            @if tree.is_empty() { p.none { (v.t("overview.none")) } }
            ul.tree {
                @for (area, (area_counts, units)) in &tree {
                    li { details open {
                        summary { (v.t("level.area")) " " (format!("{area:02}")) " " (counts(area_counts)) }
                        ul { @for (unit, (unit_counts, grids)) in units {
                            li { details {
                                summary { (v.t("level.unit")) " " (format!("{area:02}{unit:02}")) " " (counts(unit_counts)) }
                                ul { @for (grid, grid_counts) in grids {
                                    li { (v.t("level.grid")) " " (grid.to_string()) " " (counts(grid_counts)) }
                                } }
                            } }
                        } }
                    } }
                }
            }
        }
        section #devices-section data-live="feed" {
            h2 { (v.t("overview.devices")) " " span.count { (lines.len()) } }
            div.scroll {
                table #devices {
                    thead { tr {
                        th { (v.t("col.device")) } th { (v.t("col.health")) } th.wide { (v.t("col.kind")) }
                        th.wide { (v.t("col.unit")) } th { (v.t("col.grid")) } th.wide { (v.t("col.last_seen")) }
                    } }
                    tbody {
                        @for d in lines.iter().skip((page - 1) * DEVICES_PER_PAGE).take(DEVICES_PER_PAGE) {
                            tr class={ "health-" (d.health.key()) } data-device=(d.id) {
                                td { a href={ "/devices/" (d.id) } { (d.id) } }
                                td { (d.health.badge(lang)) }
                                td.wide { (v.t(&format!("kind.{}", d.kind))) }
                                td.wide { (d.unit) }
                                td { @if let Some(g) = d.grid { (g.to_string()) } }
                                td.wide { (d.last_seen.as_deref().map_or("—".to_string(), china_time_text)) }
                            }
                        }
                    }
                }
            }
            (pager(v, "/", page, pages, lines.len()))
        }
    })
}
