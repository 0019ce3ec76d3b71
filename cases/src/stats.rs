//! Statistics the offices ask for, as serializable rows (and CSV): cases by grid, type and
//! status; overdue cases; response and closing times; devices overdue per grid; a per-grid
//! ranking. Every function takes the cases (or devices) to count, so the caller picks the
//! period, e.g. with [`opened_between`].
use crate::case::{Case, CaseId, CaseType, Priority, Status};
use crate::deadline::DeadlineConfig;
use crate::grid::GridCode;
use crate::registry::Registry;
use crate::workflow::Step;
use gridwatch_alerts::config::DueConfig;
use gridwatch_alerts::{Date, DueKind, DueStage, evaluate_due};
use serde::Serialize;
use std::collections::BTreeMap;

/// Cases opened in `[from, to)` (ms since the Unix epoch).
pub fn opened_between(case: &Case, from: u64, to: u64) -> bool {
    (from..to).contains(&case.opened_at)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CaseCountRow {
    pub grid: GridCode,
    pub case_type: CaseType,
    pub status: Status,
    pub count: u64,
}

pub fn count_cases<'a>(cases: impl IntoIterator<Item = &'a Case>) -> Vec<CaseCountRow> {
    let mut counts: BTreeMap<(GridCode, CaseType, Status), u64> = BTreeMap::new();
    for c in cases {
        *counts.entry((c.grid, c.case_type, c.status())).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|((grid, case_type, status), count)| CaseCountRow {
            grid,
            case_type,
            status,
            count,
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OverdueRow {
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub case_id: CaseId,
    pub grid: GridCode,
    pub case_type: CaseType,
    pub priority: Priority,
    pub status: Status,
    /// The step not done in time.
    pub step: Step,
    pub due_at: u64,
    pub overdue_s: u64,
}

/// Open cases with a step past its deadline at `now`, most overdue first.
pub fn overdue_cases<'a>(cases: impl IntoIterator<Item = &'a Case>, cfg: &DeadlineConfig, now: u64) -> Vec<OverdueRow> {
    let mut rows: Vec<OverdueRow> = cases
        .into_iter()
        .filter(|c| c.is_open())
        .flat_map(|c| {
            c.deadlines(cfg)
                .filter(|d| d.done_at.is_none() && now > d.due_at)
                .map(move |d| OverdueRow {
                    case_id: c.id,
                    grid: c.grid,
                    case_type: c.case_type,
                    priority: c.priority,
                    status: c.status(),
                    step: d.step,
                    due_at: d.due_at,
                    overdue_s: (now - d.due_at) / 1000,
                })
        })
        .collect();
    rows.sort_by(|a, b| b.overdue_s.cmp(&a.overdue_s).then(a.case_id.cmp(&b.case_id)));
    rows
}

/// Response (known → accepted) and closing (known → closed) times, in seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TimingRow {
    /// A grid code, or `all` for the total row.
    pub grid: String,
    pub cases: u64,
    pub accepted: u64,
    pub mean_response_s: Option<f64>,
    pub p90_response_s: Option<u64>,
    pub closed: u64,
    pub mean_close_s: Option<f64>,
    pub p90_close_s: Option<u64>,
}

/// One row per grid, then the `all` row.
pub fn timings_by_grid<'a>(cases: impl IntoIterator<Item = &'a Case>) -> Vec<TimingRow> {
    let mut per_grid: BTreeMap<GridCode, Vec<&Case>> = BTreeMap::new();
    for c in cases {
        per_grid.entry(c.grid).or_default().push(c);
    }
    let all: Vec<&Case> = per_grid.values().flatten().copied().collect();
    let mut rows: Vec<TimingRow> = per_grid.iter().map(|(g, cs)| timing_row(g.to_string(), cs)).collect();
    rows.push(timing_row("all".to_string(), &all));
    rows
}

fn timing_row(grid: String, cases: &[&Case]) -> TimingRow {
    // From when the case became known, as its deadlines.
    let secs = |end: Option<u64>, c: &Case| end.map(|t| t.saturating_sub(c.known_at) / 1000);
    let response: Vec<u64> = cases
        .iter()
        .filter_map(|c| secs(c.completed_at(Step::Accept), c))
        .collect();
    let closing: Vec<u64> = cases.iter().filter_map(|c| secs(c.closed_at(), c)).collect();
    TimingRow {
        grid,
        cases: cases.len() as u64,
        accepted: response.len() as u64,
        mean_response_s: mean(&response),
        p90_response_s: p90(&response),
        closed: closing.len() as u64,
        mean_close_s: mean(&closing),
        p90_close_s: p90(&closing),
    }
}

fn mean(values: &[u64]) -> Option<f64> {
    (!values.is_empty()).then(|| (values.iter().sum::<u64>() as f64 / values.len() as f64 * 10.0).round() / 10.0)
}

/// The 90th percentile by the nearest-rank method: the smallest value with at least 90 %
/// of the values at or below it.
fn p90(values: &[u64]) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = (sorted.len() * 9).div_ceil(10);
    Some(sorted[rank - 1])
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GridDueRow {
    pub grid: GridCode,
    /// Devices in service.
    pub devices: u64,
    pub inspection_overdue: u64,
    pub inspection_due_soon: u64,
    pub maintenance_overdue: u64,
}

/// Devices in service per grid, and how many are overdue or due soon on `today`.
pub fn devices_due_by_grid(registry: &Registry, today: Date, cfg: &DueConfig) -> Vec<GridDueRow> {
    let mut rows: BTreeMap<GridCode, GridDueRow> = BTreeMap::new();
    for device in registry.devices() {
        let profile = device.profile();
        if !profile.in_service {
            continue;
        }
        let grid = registry.grid_of(device);
        let row = rows.entry(grid).or_insert(GridDueRow {
            grid,
            devices: 0,
            inspection_overdue: 0,
            inspection_due_soon: 0,
            maintenance_overdue: 0,
        });
        row.devices += 1;
        for state in evaluate_due(&profile, today, cfg) {
            match (state.kind, state.stage) {
                (DueKind::Inspection, DueStage::Overdue { .. }) => row.inspection_overdue += 1,
                (DueKind::Inspection, DueStage::Upcoming { .. }) => row.inspection_due_soon += 1,
                (DueKind::Maintenance, DueStage::Overdue { .. }) => row.maintenance_overdue += 1,
                (DueKind::Maintenance, DueStage::Upcoming { .. }) => {}
            }
        }
    }
    rows.into_values().collect()
}

/// A grid's standing for the quarterly assessment: share of cases closed, and share of
/// deadlines met.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GridRankRow {
    pub rank: u32,
    pub grid: GridCode,
    pub cases: u64,
    pub closed: u64,
    pub closed_share: f64,
    pub deadlines: u64,
    pub deadlines_met: u64,
    pub on_time_share: f64,
}

/// Grids ranked by deadlines met, then by cases closed (shares rounded to 0.001).
pub fn rank_grids<'a>(cases: impl IntoIterator<Item = &'a Case>, cfg: &DeadlineConfig, now: u64) -> Vec<GridRankRow> {
    let mut per_grid: BTreeMap<GridCode, (u64, u64, u64, u64)> = BTreeMap::new();
    for c in cases {
        let e = per_grid.entry(c.grid).or_default();
        e.0 += 1;
        e.1 += u64::from(!c.is_open());
        for d in c.deadlines(cfg).filter(|d| d.done_at.is_some() || now > d.due_at) {
            e.2 += 1;
            e.3 += u64::from(!d.missed(now));
        }
    }
    let share = |part: u64, whole: u64| {
        if whole == 0 {
            1.0
        } else {
            (part as f64 / whole as f64 * 1000.0).round() / 1000.0
        }
    };
    let mut rows: Vec<GridRankRow> = per_grid
        .into_iter()
        .map(|(grid, (cases, closed, deadlines, met))| GridRankRow {
            rank: 0,
            grid,
            cases,
            closed,
            closed_share: share(closed, cases),
            deadlines,
            deadlines_met: met,
            on_time_share: share(met, deadlines),
        })
        .collect();
    rows.sort_by(|a, b| {
        b.on_time_share
            .total_cmp(&a.on_time_share)
            .then(b.closed_share.total_cmp(&a.closed_share))
            .then(a.grid.cmp(&b.grid))
    });
    for (i, row) in rows.iter_mut().enumerate() {
        row.rank = i as u32 + 1;
    }
    rows
}

/// Renders rows as CSV with a header line from the field names.
pub fn to_csv<T: Serialize>(rows: &[T]) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for row in rows {
        w.serialize(row)?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8(bytes).expect("csv writes the UTF-8 it is given"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p90_is_the_nearest_rank() {
        assert_eq!(p90(&[]), None);
        assert_eq!(p90(&[5]), Some(5));
        assert_eq!(p90(&(1..=10).collect::<Vec<_>>()), Some(9));
        assert_eq!(p90(&(1..=11).collect::<Vec<_>>()), Some(10));
        assert_eq!(mean(&[1, 2]), Some(1.5));
    }
}
