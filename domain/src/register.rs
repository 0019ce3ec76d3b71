//! Importing the equipment register (the offices' CSV export) into the domain.
use crate::Alerting;
use gridwatch_cases::registry::Replacement;
use gridwatch_cases::{GridScope, RegistryError, RowError};
use gridwatch_protocol::DeviceKind;
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportSummary {
    pub devices: usize,
    pub lifts: usize,
    pub sterilizers: usize,
    pub using_units: usize,
    pub maintenance_firms: usize,
    /// Devices in the importer's scope that the file no longer lists.
    pub removed: usize,
    /// Devices outside the importer's scope, kept as they were.
    pub kept_outside_scope: usize,
    /// Alert events the new due dates produced at once (overdue, due soon).
    pub alert_events: usize,
}

/// The register was refused: every bad row, with its line and column.
#[derive(Debug, Clone, Serialize, thiserror::Error)]
#[error("the register has {} bad row(s); first: {}", .errors.len(), .errors.first().map(|e| e.to_string()).unwrap_or_default())]
pub struct RegisterRejected {
    pub errors: Vec<RowError>,
}

/// Who imports and what they confirmed.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The importer's walls: only devices within them are replaced, and rows outside them
    /// are refused. `None`: the whole register.
    pub scope: Option<Vec<GridScope>>,
    /// How many removals the importer confirmed; needed when an import would remove more
    /// than `[register] max_unconfirmed_removal_share` of the devices in scope.
    pub confirm_removals: Option<usize>,
}

/// An import that changed nothing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Rejected(#[from] RegisterRejected),
    /// The file and the register disagree (a device registered outside the scope).
    #[error(transparent)]
    Conflict(#[from] RegistryError),
    #[error(
        "the import would remove {removals} of the {in_scope} devices in scope (more than {:.0} %); \
         import again with confirm_removals={removals} to remove them",
        .max_share * 100.0
    )]
    RemovalsUnconfirmed {
        removals: usize,
        in_scope: usize,
        max_share: f64,
        /// The first few registration codes that would go.
        first: Vec<String>,
    },
}

/// Replaces the whole register with `csv` and re-evaluates due dates; nothing changes if
/// any row is bad or the file has no device row. Removals need no confirmation: for
/// callers that start from a known register (the demo, scenarios).
pub async fn import_register(alerting: &Alerting, csv: &[u8], now: u64) -> Result<ImportSummary, RegisterRejected> {
    let options = ImportOptions {
        scope: None,
        confirm_removals: Some(usize::MAX),
    };
    match import_register_with(alerting, csv, now, &options).await {
        Ok(summary) => Ok(summary),
        Err(ImportError::Rejected(rejected)) => Err(rejected),
        Err(other) => unreachable!("a whole-register import with removals confirmed: {other}"),
    }
}

/// Replaces the part of the register within `options.scope` with `csv` and re-evaluates
/// due dates. Nothing changes if any row is bad or outside the scope, if the file has no
/// device row, or if it would remove more than the configured share of the devices in
/// scope without `options.confirm_removals` covering them.
pub async fn import_register_with(
    alerting: &Alerting,
    csv: &[u8],
    now: u64,
    options: &ImportOptions,
) -> Result<ImportSummary, ImportError> {
    let incoming = gridwatch_cases::import::import_register_within(csv, options.scope.as_deref())
        .map_err(|errors| RegisterRejected { errors })?;
    let mut domain = alerting.domain.lock().await;
    let Replacement {
        registry,
        removed,
        in_scope_before,
        kept_outside,
    } = domain.registry().replace_within(options.scope.as_deref(), incoming)?;
    let max_share = domain.config().register.max_unconfirmed_removal_share;
    let confirmed = options.confirm_removals.is_some_and(|n| n >= removed.len());
    if !removed.is_empty() && removed.len() as f64 > max_share * in_scope_before as f64 && !confirmed {
        describe();
        metrics::counter!("gridwatch_register_imports_refused_total", "reason" => "removals_unconfirmed").increment(1);
        return Err(ImportError::RemovalsUnconfirmed {
            removals: removed.len(),
            in_scope: in_scope_before,
            max_share,
            first: removed.iter().take(10).cloned().collect(),
        });
    }
    let count = |kind| registry.devices().filter(|d| d.kind == kind).count();
    let mut summary = ImportSummary {
        devices: registry.devices().count(),
        lifts: count(DeviceKind::Lift),
        sterilizers: count(DeviceKind::Sterilizer),
        using_units: registry.units().count(),
        maintenance_firms: registry.firms().count(),
        removed: removed.len(),
        kept_outside_scope: kept_outside,
        alert_events: 0,
    };
    let fx = domain.replace_register(registry, now);
    summary.alert_events = fx.events.len();
    alerting.save(&mut domain, fx).await;
    tracing::info!(?summary, scope = ?options.scope, "register imported");
    Ok(summary)
}

fn describe() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        metrics::describe_counter!(
            "gridwatch_register_imports_refused_total",
            "Register imports refused after parsing, by reason (removals_unconfirmed)"
        );
    });
}
