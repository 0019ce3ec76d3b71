//! Comparing the alerts a run produced with what its scenario expects, and printing
//! the comparison as a table.
use crate::parse::{Absence, Expectation, Scenario, format_offset};
use serde::Deserialize;
use std::fmt::Write as _;

/// An alert as `GET /api/alerts?state=all` returns it (the fields the check uses).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ActualAlert {
    pub kind: String,
    pub device_id: String,
    pub raised_at_ms: i64,
    /// `raised`, `acknowledged` or `cleared`.
    pub state: String,
    #[serde(default)]
    pub details: serde_json::Value,
}

impl ActualAlert {
    pub fn cleared(&self) -> bool {
        self.state == "cleared"
    }
}

/// How one line of the comparison came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// An expected alert was raised as expected.
    Ok,
    /// An expected alert was not raised (in its window, with its details and state).
    Missing,
    /// An alert the scenario forbids was raised.
    Forbidden,
    /// An alert nobody expected was raised (strict scenarios).
    Unexpected,
    /// An alert nobody expected, allowed because the scenario is not strict.
    Extra,
}

impl Verdict {
    pub fn is_difference(self) -> bool {
        matches!(self, Verdict::Missing | Verdict::Forbidden | Verdict::Unexpected)
    }

    fn label(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Missing => "MISSING",
            Verdict::Forbidden => "FORBIDDEN",
            Verdict::Unexpected => "UNEXPECTED",
            Verdict::Extra => "extra",
        }
    }
}

/// One line of the table: an expectation and/or an actual alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub verdict: Verdict,
    pub kind: String,
    pub device: String,
    /// What was expected: a window (`+2m..+4m`), `never ...`, or `-`.
    pub expected: String,
    /// What happened: the alert's raise time (and clear), or `-`.
    pub actual: String,
}

/// The outcome of a check.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub lines: Vec<Line>,
}

impl Comparison {
    pub fn differences(&self) -> usize {
        self.lines.iter().filter(|l| l.verdict.is_difference()).count()
    }

    pub fn passed(&self) -> bool {
        self.differences() == 0
    }

    /// The comparison as an aligned text table.
    pub fn table(&self) -> String {
        if self.lines.is_empty() {
            return "  no alerts expected, none raised\n".to_string();
        }
        let headers = ["result", "kind", "device", "expected (device time)", "actual"];
        let rows: Vec<[&str; 5]> = self
            .lines
            .iter()
            .map(|l| [l.verdict.label(), &l.kind, &l.device, &l.expected, &l.actual])
            .collect();
        let mut widths = headers.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let mut line = |cells: [&str; 5]| {
            let mut text = String::from("  ");
            for (cell, w) in cells.iter().zip(widths) {
                let _ = write!(text, "{cell:<w$}  ");
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(headers);
        for row in rows {
            line(row);
        }
        out
    }
}

/// Whether `actual` holds every field of `wanted` (objects recursively, other values equal).
pub fn json_contains(actual: &serde_json::Value, wanted: &serde_json::Value) -> bool {
    match (actual, wanted) {
        (serde_json::Value::Object(a), serde_json::Value::Object(w)) => {
            w.iter().all(|(k, wv)| a.get(k).is_some_and(|av| json_contains(av, wv)))
        }
        (serde_json::Value::Number(a), serde_json::Value::Number(w)) => a.as_f64() == w.as_f64(),
        (a, w) => a == w,
    }
}

fn matches_expectation(e: &Expectation, a: &ActualAlert) -> bool {
    let at = a.raised_at_ms.max(0) as u64;
    a.kind == e.kind.to_string()
        && a.device_id == e.device
        && (e.from_ms..=e.to_ms).contains(&at)
        && e.cleared.is_none_or(|c| c == a.cleared())
        && e.details.as_ref().is_none_or(|d| json_contains(&a.details, d))
}

fn matches_absence(x: &Absence, a: &ActualAlert) -> bool {
    let at = a.raised_at_ms.max(0) as u64;
    a.kind == x.kind.to_string()
        && x.device.as_ref().is_none_or(|d| *d == a.device_id)
        && (x.from_ms..=x.to_ms).contains(&at)
}

/// Compares `actual` with the scenario's expectations: each expected alert claims the
/// earliest actual alert that fits it; an alert that an `[[absent]]` entry fits is forbidden
/// (claimed or not); what is left over is unexpected (a strict scenario) or extra.
pub fn compare(scenario: &Scenario, actual: &[ActualAlert]) -> Comparison {
    let start = scenario.start_ms as i64;
    let at = |ms: i64| format_offset(ms - start);
    let describe = |a: &ActualAlert| {
        let mut text = at(a.raised_at_ms);
        if a.cleared() {
            text.push_str(" (cleared)");
        }
        text
    };
    let mut order: Vec<usize> = (0..actual.len()).collect();
    order.sort_by_key(|&i| {
        (
            actual[i].raised_at_ms,
            actual[i].device_id.clone(),
            actual[i].kind.clone(),
        )
    });
    let mut claimed = vec![false; actual.len()];
    let mut lines = Vec::new();
    for e in &scenario.expect {
        let mut window = format!("{}..{}", at(e.from_ms as i64), at(e.to_ms as i64));
        if let Some(c) = e.cleared {
            window.push_str(if c { ", cleared" } else { ", open" });
        }
        if let Some(d) = &e.details {
            let _ = write!(window, ", {d}");
        }
        for _ in 0..e.count {
            let found = order
                .iter()
                .copied()
                .find(|&i| !claimed[i] && matches_expectation(e, &actual[i]));
            let (verdict, actual_text) = match found {
                Some(i) => {
                    claimed[i] = true;
                    (Verdict::Ok, describe(&actual[i]))
                }
                None => {
                    // Say what came closest: the same kind on the same device, if any.
                    let near: Vec<String> = order
                        .iter()
                        .map(|&i| &actual[i])
                        .filter(|a| a.kind == e.kind.to_string() && a.device_id == e.device)
                        .map(|a| {
                            let mut t = describe(a);
                            if e.details.as_ref().is_some_and(|d| !json_contains(&a.details, d)) {
                                let _ = write!(t, " {}", a.details);
                            }
                            t
                        })
                        .collect();
                    let text = if near.is_empty() {
                        "-".to_string()
                    } else {
                        format!("only at {}", near.join(", "))
                    };
                    (Verdict::Missing, text)
                }
            };
            lines.push(Line {
                verdict,
                kind: e.kind.to_string(),
                device: e.device.clone(),
                expected: window.clone(),
                actual: actual_text,
            });
        }
    }
    for &i in &order {
        let a = &actual[i];
        // An absence is absolute: it flags an alert even when an expectation claimed it.
        let forbidden = scenario.absent.iter().find(|x| matches_absence(x, a));
        if claimed[i] && forbidden.is_none() {
            continue;
        }
        let (verdict, expected) = match forbidden {
            Some(x) => (
                Verdict::Forbidden,
                format!("never {}..{}", at(x.from_ms as i64), at(x.to_ms as i64)),
            ),
            None if scenario.strict => (Verdict::Unexpected, "-".to_string()),
            None => (Verdict::Extra, "-".to_string()),
        };
        lines.push(Line {
            verdict,
            kind: a.kind.clone(),
            device: a.device_id.clone(),
            expected,
            actual: describe(a),
        });
    }
    // Absences that held are worth a line too: the reader sees what was checked.
    for x in &scenario.absent {
        if !actual.iter().any(|a| matches_absence(x, a)) {
            lines.push(Line {
                verdict: Verdict::Ok,
                kind: x.kind.to_string(),
                device: x.device.clone().unwrap_or_else(|| "(any)".into()),
                expected: format!("never {}..{}", at(x.from_ms as i64), at(x.to_ms as i64)),
                actual: "-".to_string(),
            });
        }
    }
    Comparison { lines }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;

    const SCENARIO: &str = r#"
        start = "2026-11-25T09:00:00+08:00"
        duration = "30m"
        [[lift]]
        id = "L-1"
        [[lift]]
        id = "L-2"
        [[expect]]
        kind = "trapped_passenger"
        device = "L-1"
        after = "2m"
        before = "4m"
        details = { reason = "alarm_button" }
        [[expect]]
        kind = "power_loss"
        device = "L-1"
        [[absent]]
        kind = "device_offline"
    "#;

    fn alert(kind: &str, device: &str, offset_s: i64, state: &str, details: serde_json::Value) -> ActualAlert {
        ActualAlert {
            kind: kind.into(),
            device_id: device.into(),
            raised_at_ms: parse(SCENARIO, "t").unwrap().start_ms as i64 + offset_s * 1000,
            state: state.into(),
            details,
        }
    }

    #[test]
    fn matches_windows_details_and_lists_every_difference() {
        let s = parse(SCENARIO, "t").unwrap();
        let actual = vec![
            alert(
                "trapped_passenger",
                "L-1",
                200,
                "raised",
                serde_json::json!({"type": "trapped", "reason": "alarm_button", "floor": 3}),
            ),
            alert("device_offline", "L-2", 900, "cleared", serde_json::Value::Null),
            alert("fault:901", "L-2", 60, "raised", serde_json::Value::Null),
        ];
        let c = compare(&s, &actual);
        let verdicts: Vec<(Verdict, &str)> = c.lines.iter().map(|l| (l.verdict, l.kind.as_str())).collect();
        assert_eq!(
            verdicts,
            [
                (Verdict::Ok, "trapped_passenger"),
                (Verdict::Missing, "power_loss"),
                (Verdict::Unexpected, "fault:901"),
                (Verdict::Forbidden, "device_offline"),
            ]
        );
        assert_eq!(c.differences(), 3);
        let table = c.table();
        assert!(
            table.contains("+2m..+4m") && table.contains("+15m (cleared)"),
            "{table}"
        );
    }

    #[test]
    fn a_window_or_details_mismatch_is_missing_and_says_what_came_closest() {
        let s = parse(SCENARIO, "t").unwrap();
        let actual = vec![
            alert(
                "trapped_passenger",
                "L-1",
                150,
                "raised",
                serde_json::json!({"reason": "doors_closed_not_moving"}),
            ),
            alert("power_loss", "L-1", 10, "raised", serde_json::Value::Null),
        ];
        let c = compare(&s, &actual);
        assert_eq!(c.lines[0].verdict, Verdict::Missing);
        assert!(c.lines[0].actual.contains("only at +2m30s"), "{:?}", c.lines[0]);
        // The alert that did not fit is left over as well: strict scenarios list it.
        assert_eq!(c.lines[2].verdict, Verdict::Unexpected);
        assert!(!c.passed() && c.differences() == 2);
        assert!(json_contains(
            &serde_json::json!({"a": {"b": 1.0, "c": 2}}),
            &serde_json::json!({"a": {"b": 1}})
        ));
    }
}
