//! `GET /api/devices`: every device of the register the caller sees, reporting or not,
//! with its health, in device id order, one page at a time. Devices that report but are
//! not registered belong to no grid: only open mode lists them.
use crate::error::Query;
use crate::http::{ApiError, AppState, Caller};
use axum::extract::State;
use axum::response::Response;
use gridwatch_alerts::{AlertKind, Date, evaluate_due};
use gridwatch_storage::model::DeviceRow;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// A device's health, worst first: a device shows the first that applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Health {
    /// An open trapped-passenger alert.
    Trapped,
    /// An open alert of the equipment: a fault code, door or stop anomalies, power loss,
    /// a failed or missed sterilizing cycle.
    Fault,
    /// An open device-offline alert: it stopped reporting.
    Offline,
    /// Its periodic inspection is overdue (register dates, China today).
    InspectionOverdue,
    /// Its maintenance is overdue.
    MaintenanceOverdue,
    /// Registered and never reported a reading (no sensor yet, or not connected).
    NeverReported,
    /// An inspection or maintenance falls due soon.
    DueSoon,
    Ok,
}

impl Health {
    /// The health an open alert (or a due date's stage) of `kind` stands for.
    fn of(kind: AlertKind) -> Health {
        match kind {
            AlertKind::TrappedPassenger => Health::Trapped,
            AlertKind::DeviceOffline | AlertKind::GatewayOffline => Health::Offline,
            AlertKind::InspectionOverdue => Health::InspectionOverdue,
            AlertKind::MaintenanceOverdue => Health::MaintenanceOverdue,
            AlertKind::InspectionDueSoon | AlertKind::MaintenanceDueSoon => Health::DueSoon,
            AlertKind::Fault(_)
            | AlertKind::DoorOpenWhileRunning
            | AlertKind::StoppedOutsideDoorZone
            | AlertKind::PowerLoss
            | AlertKind::CycleAborted
            | AlertKind::CycleUnderTemperature
            | AlertKind::CycleHoldTooShort
            | AlertKind::NoCycleInMealPeriod => Health::Fault,
        }
    }
}

/// One device of the list.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct DeviceItem {
    device_id: String,
    #[schema(value_type = gridwatch_protocol::DeviceKind)]
    kind: String,
    /// In the equipment register; `false` only in open mode, for devices that report
    /// without being registered.
    registered: bool,
    health: Health,
    /// The open alerts' kinds, in the engine's order.
    open_alerts: Vec<String>,
    /// The register's grid code and maintenance firm; `null` outside the register.
    grid: Option<String>,
    firm: Option<String>,
    /// The register's status.
    #[schema(value_type = Option<gridwatch_cases::DeviceStatus>)]
    status: Option<serde_json::Value>,
    /// The register's due dates (`YYYY-MM-DD`, China).
    #[schema(value_type = Option<String>, format = Date)]
    next_inspection_due: Option<Date>,
    #[schema(value_type = Option<String>, format = Date)]
    next_maintenance_due: Option<Date>,
    /// The last reading: `null` for a device that never reported.
    gateway: Option<String>,
    last_seq: Option<i64>,
    last_seen_ms: Option<i64>,
    /// `last_seen_ms` as RFC 3339 UTC.
    last_seen: Option<String>,
    #[schema(schema_with = crate::openapi::reading_body)]
    last_state: Option<serde_json::Value>,
}

#[utoipa::path(get, operation_id = "devices_list", path = "/api/devices", tag = "devices", params(super::PageQueryById),
    responses(
        (status = 200, description = "The devices the caller sees, in device id order", body = [DeviceItem],
            headers(
                ("x-next-cursor" = String, description = "The cursor of the next page, when there is one"),
                ("link" = String, description = "`<URL of the next page>; rel=\"next\"`, when there is one"),
            )),
        (status = 400, description = "A limit that does not parse or is out of range", body = crate::error::ErrorBody),
    ))]
pub(super) async fn list(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<super::PageQueryById>,
) -> Result<Response, ApiError> {
    let (after, limit) = q.parse()?;
    // Read before the lock: the domain lock is not held across a database read.
    let reported: BTreeMap<String, DeviceRow> = s
        .store
        .devices()
        .await?
        .into_iter()
        .map(|d| (d.device_id.clone(), d))
        .collect();
    let today = gridwatch_alerts::china::date_of(s.clock.now_ms());
    let domain = s.alerting.domain.lock().await;
    let registry = domain.registry();
    let mut open: BTreeMap<&str, Vec<AlertKind>> = BTreeMap::new();
    for alert in domain.engine().open_alerts() {
        open.entry(alert.key.device.as_str()).or_default().push(alert.key.kind);
    }
    let due_cfg = &domain.config().alerts.due;
    // Registered devices the caller sees, and in open mode those that only report.
    let mut ids: BTreeSet<&str> = registry
        .devices()
        .filter(|d| caller.can_see(Some(registry.placement(d))))
        .map(|d| d.id.as_str())
        .collect();
    if caller.user.is_none() {
        ids.extend(reported.keys().map(String::as_str));
    }
    let (page, next) = super::page_of_ids(ids, after, limit);
    let items: Vec<DeviceItem> = page
        .into_iter()
        .map(|id| {
            let kinds = open.get(id).cloned().unwrap_or_default();
            let row = reported.get(id);
            let device = registry.device(id);
            let mut health = kinds.iter().map(|k| Health::of(*k)).min().unwrap_or(Health::Ok);
            if let Some(d) = device {
                let profile = d.profile();
                for state in evaluate_due(&profile, today, due_cfg) {
                    health = health.min(Health::of(state.alert_kind()));
                }
                if row.is_none() {
                    health = health.min(Health::NeverReported);
                }
            }
            let last_seen_ms = row
                .as_ref()
                .and_then(|r| r.last_seen.parse::<jiff::Timestamp>().ok())
                .map(|t| t.as_millisecond());
            DeviceItem {
                device_id: id.to_string(),
                kind: device
                    .and_then(|d| serde_json::to_value(d.kind).ok())
                    .and_then(|v| v.as_str().map(str::to_string))
                    .or_else(|| row.map(|r| r.kind.clone()))
                    .unwrap_or_default(),
                registered: device.is_some(),
                health,
                open_alerts: kinds.iter().map(ToString::to_string).collect(),
                grid: device.map(|d| registry.grid_of(d).to_string()),
                firm: device.and_then(|d| d.firm.clone()),
                status: device.and_then(|d| serde_json::to_value(d.status).ok()),
                next_inspection_due: device.and_then(|d| d.next_inspection_due),
                next_maintenance_due: device.and_then(|d| d.profile().next_maintenance_due()),
                gateway: row.map(|r| r.gateway.clone()),
                last_seq: row.map(|r| r.last_seq),
                last_seen_ms,
                last_seen: row.map(|r| r.last_seen.clone()),
                last_state: row.map(|r| r.last_state.clone()),
            }
        })
        .collect();
    Ok(super::id_page_response(&items, next, "/api/devices", limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_health_wins() {
        let worst = |kinds: &[AlertKind]| kinds.iter().map(|k| Health::of(*k)).min().unwrap_or(Health::Ok);
        assert_eq!(worst(&[]), Health::Ok);
        assert_eq!(
            worst(&[
                AlertKind::InspectionDueSoon,
                AlertKind::TrappedPassenger,
                AlertKind::Fault(31)
            ]),
            Health::Trapped
        );
        assert_eq!(worst(&[AlertKind::DeviceOffline, AlertKind::PowerLoss]), Health::Fault);
        assert_eq!(
            worst(&[AlertKind::MaintenanceOverdue, AlertKind::InspectionOverdue]),
            Health::InspectionOverdue
        );
        assert!(Health::MaintenanceOverdue < Health::NeverReported);
        assert!(Health::NeverReported < Health::DueSoon);
    }
}
