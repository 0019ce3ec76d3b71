//! Importing the equipment register (the offices' CSV export) into the domain.
use crate::Alerting;
use gridwatch_cases::RowError;
use gridwatch_protocol::DeviceKind;
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ImportSummary {
    pub devices: usize,
    pub lifts: usize,
    pub sterilizers: usize,
    pub using_units: usize,
    pub maintenance_firms: usize,
    /// Alert events the new due dates produced at once (overdue, due soon).
    pub alert_events: usize,
}

/// The register was refused: every bad row, with its line and column.
#[derive(Debug, Clone, Serialize, thiserror::Error)]
#[error("the register has {} bad row(s); first: {}", .errors.len(), .errors.first().map(|e| e.to_string()).unwrap_or_default())]
pub struct RegisterRejected {
    pub errors: Vec<RowError>,
}

/// Replaces the register with `csv` and re-evaluates due dates; nothing changes if any row is bad.
pub async fn import_register(alerting: &Alerting, csv: &[u8], now: u64) -> Result<ImportSummary, RegisterRejected> {
    let registry = gridwatch_cases::import_register(csv).map_err(|errors| RegisterRejected { errors })?;
    let count = |kind| registry.devices().filter(|d| d.kind == kind).count();
    let mut summary = ImportSummary {
        devices: registry.devices().count(),
        lifts: count(DeviceKind::Lift),
        sterilizers: count(DeviceKind::Sterilizer),
        using_units: registry.units().count(),
        maintenance_firms: registry.firms().count(),
        alert_events: 0,
    };
    let mut domain = alerting.domain.lock().await;
    let fx = domain.replace_register(registry, now);
    summary.alert_events = fx.events.len();
    alerting.save(&mut domain, fx).await;
    tracing::info!(?summary, "register imported");
    Ok(summary)
}
