//! `/`: open alerts, urgent first (trapped passengers, faults, then by severity); the
//! grid tree (area -> unit -> grid) with device counts and health; every device the
//! viewer may see with its health badge. Long lists are paged, never cut silently.
//!
//! Everything comes from the domain's memory (register and alert engine) in one hold of
//! its lock: the page reads no table but the feed's last id, so its cost is the walk
//! over the register, and only the rows shown are formatted.
use super::health::{Health, OpenAlert, urgency};
use super::i18n::serde_name;
use super::{Viewer, china_time, page_of, pager};
use crate::http::{ApiError, AppState};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use gridwatch_cases::{Device, GridCode};
use gridwatch_domain::Domain;
use maud::{Markup, html};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Alerts shown before "show all", devices per page.
const ALERTS_SHOWN: usize = 50;
const DEVICES_PER_PAGE: usize = 100;

#[derive(Deserialize)]
pub(super) struct OverviewQuery {
    page: Option<usize>,
    /// `all`: every open alert, not the first [`ALERTS_SHOWN`].
    alerts: Option<String>,
}

/// One device row of the page.
struct DeviceLine {
    id: String,
    kind: String,
    unit: String,
    grid: Option<GridCode>,
    /// Device time of the last reading the alert engine applied (what the offline rule
    /// watches).
    last_seen: Option<u64>,
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

/// What the page shows, taken from the domain while its lock is held.
struct Overview {
    /// The open alerts shown, most urgent first, of `alert_total`.
    alerts: Vec<OpenAlert>,
    alert_total: usize,
    tree: BTreeMap<u8, (Counts, Units)>,
    /// The page of devices shown, of `device_total`.
    devices: Vec<DeviceLine>,
    device_total: usize,
    page: usize,
    pages: usize,
}

impl Overview {
    fn gather(domain: &Domain, v: &Viewer, q: &OverviewQuery) -> Overview {
        let registry = domain.registry();
        let monitors = &domain.engine().state().devices;
        let visible = |d: &Device| v.can_see(Some(registry.placement(d)));

        // Open mode sees every alert, also of unregistered devices and of gateways.
        let mut alerts: Vec<_> = domain
            .engine()
            .open_alerts()
            .into_iter()
            .filter(|a| v.user.is_none() || registry.device(&a.key.device).is_some_and(visible))
            .collect();
        alerts.sort_by_cached_key(|a| urgency(a));
        let shown = if q.alerts.as_deref() == Some("all") {
            alerts.len()
        } else {
            alerts.len().min(ALERTS_SHOWN)
        };

        // Every registered device in the walls; open mode adds those that report
        // without being registered.
        let mut listed: Vec<(Health, &str, Option<&Device>)> = registry
            .devices()
            .filter(|d| visible(d))
            .map(|d| (Health::of_device(monitors.get(&d.id)), d.id.as_str(), Some(d)))
            .collect();
        if v.user.is_none() {
            listed.extend(
                monitors
                    .iter()
                    .filter(|(id, _)| registry.device(id).is_none())
                    .map(|(id, m)| (Health::of_device(Some(m)), id.as_str(), None)),
            );
        }
        listed.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));

        let mut tree: BTreeMap<u8, (Counts, Units)> = BTreeMap::new();
        for (health, _, device) in &listed {
            let Some(device) = device else { continue };
            let grid = registry.grid_of(device);
            let area = tree.entry(grid.area).or_default();
            area.0.add(*health);
            let unit = area.1.entry(grid.unit).or_default();
            unit.0.add(*health);
            unit.1.entry(grid).or_default().add(*health);
        }

        let (page, pages) = page_of(q.page, listed.len(), DEVICES_PER_PAGE);
        let devices = listed
            .iter()
            .skip((page - 1) * DEVICES_PER_PAGE)
            .take(DEVICES_PER_PAGE)
            .map(|&(health, id, device)| {
                let monitor = monitors.get(id);
                DeviceLine {
                    id: id.to_string(),
                    kind: match device {
                        Some(d) => serde_name(&d.kind),
                        None => monitor.and_then(|m| m.kind).map(|k| serde_name(&k)).unwrap_or_default(),
                    },
                    unit: device.map(|d| d.unit.name.clone()).unwrap_or_default(),
                    grid: device.map(|d| registry.grid_of(d)),
                    last_seen: monitor.and_then(|m| m.last_reading),
                    health,
                }
            })
            .collect();
        Overview {
            alerts: alerts[..shown].iter().map(|a| OpenAlert::of(a)).collect(),
            alert_total: alerts.len(),
            tree,
            devices,
            device_total: listed.len(),
            page,
            pages,
        }
    }
}

pub(super) async fn page(State(s): State<AppState>, v: Viewer, Query(q): Query<OverviewQuery>) -> Response {
    match render(&s, &v, q).await {
        Ok(markup) => super::page(&v, &v.t("nav.overview"), markup),
        Err(e) => e.into_response(),
    }
}

async fn render(s: &AppState, v: &Viewer, q: OverviewQuery) -> Result<Markup, ApiError> {
    // Read before the domain: the page's script follows the feed from here, missing nothing.
    let after = gridwatch_storage::feed::last_id(&s.store).await?;
    let Overview {
        alerts,
        alert_total,
        tree,
        devices,
        device_total,
        page,
        pages,
    } = Overview::gather(&*s.alerting.domain.lock().await, v, &q);
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
            h2 { (v.t("overview.alerts")) " " span #alert-count.count { (alert_total) } }
            @if alert_total == 0 {
                p.none { (v.t("overview.none")) }
            } @else {
                div.scroll {
                    table #alerts {
                        thead { tr {
                            th { (v.t("col.raised")) } th { (v.t("col.kind")) } th { (v.t("col.device")) }
                            th.wide { (v.t("col.severity")) } th.wide { (v.t("col.state")) }
                        } }
                        tbody {
                            @for a in &alerts {
                                tr class={ "sev-" (a.severity) " kind-" (a.kind) } {
                                    td { (china_time(a.raised_at_ms)) }
                                    td { (lang.alert_kind(&a.kind)) }
                                    td { a href={ "/devices/" (a.device) } { (a.device) } }
                                    td.wide { (v.t(&format!("severity.{}", a.severity))) }
                                    td.wide { (v.t(&format!("alert_state.{}", a.state))) }
                                }
                            }
                        }
                    }
                }
                @if alerts.len() < alert_total {
                    p { a #show-all-alerts href="/?alerts=all" { (v.t("overview.show_all")) " (" (alert_total) ")" } }
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
            h2 { (v.t("overview.devices")) " " span.count { (device_total) } }
            div.scroll {
                table #devices {
                    thead { tr {
                        th { (v.t("col.device")) } th { (v.t("col.health")) } th.wide { (v.t("col.kind")) }
                        th.wide { (v.t("col.unit")) } th { (v.t("col.grid")) } th.wide { (v.t("col.last_seen")) }
                    } }
                    tbody {
                        @for d in &devices {
                            tr class={ "health-" (d.health.key()) } data-device=(d.id) {
                                td { a href={ "/devices/" (d.id) } { (d.id) } }
                                td { (d.health.badge(lang)) }
                                td.wide { (v.t(&format!("kind.{}", d.kind))) }
                                td.wide { (d.unit) }
                                td { @if let Some(g) = d.grid { (g.to_string()) } }
                                td.wide { (d.last_seen.map_or("—".to_string(), |ms| china_time(ms as i64))) }
                            }
                        }
                    }
                }
            }
            (pager(v, "/", page, pages, device_total))
        }
    })
}
