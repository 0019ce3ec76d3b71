//! Comparing the alerts a run produced with what its scenario expects, and printing
//! the comparison as a table.
use crate::parse::{Absence, CaseAbsence, CaseExpectation, EventExpectation, Expectation, Scenario, format_offset};
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
    /// RFC 3339 (device time of the last change, and of the clear).
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub cleared_at: Option<String>,
    #[serde(default)]
    pub acknowledged_by: Option<String>,
}

impl ActualAlert {
    pub fn cleared(&self) -> bool {
        self.state == "cleared"
    }

    pub fn cleared_at_ms(&self) -> Option<u64> {
        self.cleared_at.as_deref().and_then(ms_of)
    }

    pub fn updated_at_ms(&self) -> Option<u64> {
        self.updated_at.as_deref().and_then(ms_of)
    }
}

/// An RFC 3339 time as ms since the epoch.
fn ms_of(text: &str) -> Option<u64> {
    let ts: jiff::Timestamp = text.parse().ok()?;
    u64::try_from(ts.as_millisecond()).ok()
}

/// A case as `GET /api/cases/{id}` returns it: the whole answer, with the fields the
/// check uses picked out.
#[derive(Debug, Clone, PartialEq)]
pub struct ActualCase {
    pub id: u64,
    /// The device the case is about (`None` for a using unit).
    pub device: Option<String>,
    pub case_type: String,
    pub opened_at_ms: u64,
    /// `{case, status, reports, records, escalations, deadlines}`.
    pub json: serde_json::Value,
}

impl ActualCase {
    pub fn from_json(json: serde_json::Value) -> Option<Self> {
        let case = &json["case"];
        Some(Self {
            id: case["id"].as_u64()?,
            device: (case["subject"]["type"] == "device")
                .then(|| case["subject"]["id"].as_str().map(str::to_string))
                .flatten(),
            case_type: case["case_type"].as_str()?.to_string(),
            opened_at_ms: case["opened_at_ms"].as_u64()?,
            json,
        })
    }

    fn status(&self) -> &str {
        self.json["status"].as_str().unwrap_or_default()
    }

    fn list<'a>(&'a self, key: &str, field: &'a str) -> impl Iterator<Item = String> + 'a {
        self.json[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(move |v| v[field].as_str().unwrap_or_default().to_string())
    }

    /// `accept:maintenance_firm, verify:supervisor`.
    fn steps(&self) -> Vec<String> {
        self.json["records"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                format!(
                    "{}:{}",
                    r["step"].as_str().unwrap_or_default(),
                    r["role"].as_str().unwrap_or_default()
                )
            })
            .collect()
    }

    fn reports(&self) -> usize {
        self.json["reports"].as_array().map_or(0, Vec::len)
            + self.json["case"]["extra_reports"].as_u64().unwrap_or(0) as usize
    }
}

/// A device event as `GET /api/devices/{id}/events` lists it, with its device.
#[derive(Debug, Clone, PartialEq)]
pub struct ActualEvent {
    pub device: String,
    pub kind: String,
    pub ts_ms: u64,
    /// The whole item (`kind, seq, ts_ms, ts`, and `code`, `floor`, `fw`, `boots`).
    pub json: serde_json::Value,
}

impl ActualEvent {
    pub fn from_json(device: &str, json: serde_json::Value) -> Option<Self> {
        Some(Self {
            device: device.to_string(),
            kind: json["kind"].as_str()?.to_string(),
            ts_ms: json["ts_ms"].as_u64()?,
            json,
        })
    }
}

/// What an API action of the scenario got back.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionOutcome {
    pub at_ms: u64,
    /// `case_step accept by firm`.
    pub what: String,
    pub device: String,
    /// The status expected (`None`: any 2xx) and the one answered, with the answer's text.
    pub expected: Option<u16>,
    pub status: u16,
    pub answer: String,
}

impl ActionOutcome {
    pub fn as_expected(&self) -> bool {
        match self.expected {
            Some(s) => s == self.status,
            None => (200..300).contains(&self.status),
        }
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
    /// An API action answered another status than expected.
    Failed,
}

impl Verdict {
    pub fn is_difference(self) -> bool {
        matches!(
            self,
            Verdict::Missing | Verdict::Forbidden | Verdict::Unexpected | Verdict::Failed
        )
    }

    fn label(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Missing => "MISSING",
            Verdict::Forbidden => "FORBIDDEN",
            Verdict::Unexpected => "UNEXPECTED",
            Verdict::Extra => "extra",
            Verdict::Failed => "FAILED",
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
    let within =
        |w: Option<(u64, u64)>, t: Option<u64>| w.is_none_or(|(from, to)| t.is_some_and(|t| (from..=to).contains(&t)));
    same_kind(e, a)
        && a.device_id == e.device
        && (e.from_ms..=e.to_ms).contains(&at)
        && e.cleared.is_none_or(|c| c == a.cleared())
        && within(e.cleared_within, a.cleared_at_ms())
        && within(e.updated_within, a.updated_at_ms())
        && e.acknowledged_by
            .as_ref()
            .is_none_or(|by| a.acknowledged_by.as_ref() == Some(by))
        && e.details.as_ref().is_none_or(|d| json_contains(&a.details, d))
}

fn same_kind(e: &Expectation, a: &ActualAlert) -> bool {
    e.kinds.iter().any(|k| k.to_string() == a.kind)
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
        match a.cleared_at_ms() {
            Some(c) if a.cleared() => {
                let _ = write!(text, " (cleared {})", at(c as i64));
            }
            _ if a.cleared() => text.push_str(" (cleared)"),
            _ => {}
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
        match (e.cleared_within, e.cleared) {
            (Some((from, to)), _) => {
                let _ = write!(window, ", cleared {}..{}", at(from as i64), at(to as i64));
            }
            (None, Some(c)) => window.push_str(if c { ", cleared" } else { ", open" }),
            (None, None) => {}
        }
        if let Some((from, to)) = e.updated_within {
            let _ = write!(window, ", updated {}..{}", at(from as i64), at(to as i64));
        }
        if let Some(by) = &e.acknowledged_by {
            let _ = write!(window, ", acknowledged by {by}");
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
                        .filter(|a| same_kind(e, a) && a.device_id == e.device)
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
                kind: e.kind_text(),
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

/// Lines for the scenario's API actions (each one: its status as expected or not), its
/// case expectations (each case claimed once) and case absences, appended to `comparison`.
pub fn compare_loop(scenario: &Scenario, cases: &[ActualCase], actions: &[ActionOutcome], comparison: &mut Comparison) {
    let start = scenario.start_ms as i64;
    let at = |ms: u64| format_offset(ms as i64 - start);
    for a in actions {
        let expected = match a.expected {
            Some(s) => format!("{} -> {s}", at(a.at_ms)),
            None => format!("{} -> 2xx", at(a.at_ms)),
        };
        let mut actual = a.status.to_string();
        if !a.as_expected() && !a.answer.is_empty() {
            let _ = write!(actual, " {}", a.answer.chars().take(160).collect::<String>());
        }
        comparison.lines.push(Line {
            verdict: if a.as_expected() { Verdict::Ok } else { Verdict::Failed },
            kind: a.what.clone(),
            device: a.device.clone(),
            expected,
            actual,
        });
    }
    let mut order: Vec<usize> = (0..cases.len()).collect();
    order.sort_by_key(|&i| (cases[i].opened_at_ms, cases[i].id));
    let mut claimed = vec![false; cases.len()];
    let describe = |c: &ActualCase| format!("#{} {} {} opened {}", c.id, c.case_type, c.status(), at(c.opened_at_ms));
    for e in &scenario.expect_cases {
        let expected = describe_case_expectation(e, &at);
        for _ in 0..e.count {
            let found = order
                .iter()
                .copied()
                .find(|&i| !claimed[i] && case_matches(e, &cases[i]).is_ok());
            let (verdict, actual) = match found {
                Some(i) => {
                    claimed[i] = true;
                    (Verdict::Ok, describe(&cases[i]))
                }
                None => {
                    let near: Vec<String> = order
                        .iter()
                        .map(|&i| &cases[i])
                        .filter(|c| c.device.as_deref() == Some(e.device.as_str()))
                        .map(|c| match case_matches(e, c) {
                            Err(why) => format!("{} ({why})", describe(c)),
                            Ok(()) => format!("{} (claimed by another line)", describe(c)),
                        })
                        .collect();
                    let text = if near.is_empty() {
                        "-".to_string()
                    } else {
                        format!("only {}", near.join("; "))
                    };
                    (Verdict::Missing, text)
                }
            };
            comparison.lines.push(Line {
                verdict,
                kind: format!("case {}", e.case_type.as_deref().unwrap_or("(any)")),
                device: e.device.clone(),
                expected: expected.clone(),
                actual,
            });
        }
    }
    for x in &scenario.absent_cases {
        let forbidden: Vec<&ActualCase> = order
            .iter()
            .map(|&i| &cases[i])
            .filter(|c| case_absence_matches(x, c))
            .collect();
        let expected = format!("no case {}..{}", at(x.from_ms), at(x.to_ms));
        let kind = format!("case {}", x.case_type.as_deref().unwrap_or("(any)"));
        let device = x.device.clone().unwrap_or_else(|| "(any)".into());
        if forbidden.is_empty() {
            comparison.lines.push(Line {
                verdict: Verdict::Ok,
                kind,
                device,
                expected,
                actual: "-".into(),
            });
        } else {
            for c in forbidden {
                comparison.lines.push(Line {
                    verdict: Verdict::Forbidden,
                    kind: kind.clone(),
                    device: c.device.clone().unwrap_or_default(),
                    expected: expected.clone(),
                    actual: describe(c),
                });
            }
        }
    }
}

/// One line per event expectation: `ok` when the device listed as many matching events
/// as it asks, `MISSING` when fewer, `FORBIDDEN` when more than an exact count.
pub fn compare_events(scenario: &Scenario, events: &[ActualEvent], comparison: &mut Comparison) {
    let start = scenario.start_ms as i64;
    let at = |ms: u64| format_offset(ms as i64 - start);
    for e in &scenario.expect_events {
        let matching: Vec<&ActualEvent> = events.iter().filter(|a| event_matches(e, a)).collect();
        let verdict = if e.count.fits(matching.len()) {
            Verdict::Ok
        } else if let crate::parse::EventCount::Exactly(n) = e.count
            && matching.len() > n
        {
            Verdict::Forbidden
        } else {
            Verdict::Missing
        };
        let mut expected = format!("{} {}..{}", e.count, at(e.from_ms), at(e.to_ms));
        if let Some(d) = &e.details {
            let _ = write!(expected, ", {d}");
        }
        let times = |list: &[&ActualEvent]| -> String {
            let mut shown: Vec<String> = list.iter().take(6).map(|a| at(a.ts_ms)).collect();
            if list.len() > 6 {
                shown.push(format!("… ({} in all)", list.len()));
            }
            shown.join(", ")
        };
        let actual = if !matching.is_empty() {
            format!("{} at {}", matching.len(), times(&matching))
        } else {
            // Say what came closest: the same kinds at other times or with other fields.
            let near: Vec<&ActualEvent> = events
                .iter()
                .filter(|a| a.device == e.device && e.kinds.contains(&a.kind))
                .collect();
            if near.is_empty() {
                "0".to_string()
            } else {
                format!("0; only at {}", times(&near))
            }
        };
        comparison.lines.push(Line {
            verdict,
            kind: format!("event {}", e.kinds.join("|")),
            device: e.device.clone(),
            expected,
            actual,
        });
    }
}

fn event_matches(e: &EventExpectation, a: &ActualEvent) -> bool {
    a.device == e.device
        && e.kinds.contains(&a.kind)
        && (e.from_ms..=e.to_ms).contains(&a.ts_ms)
        && e.details.as_ref().is_none_or(|d| json_contains(&a.json, d))
}

fn describe_case_expectation(e: &CaseExpectation, at: &dyn Fn(u64) -> String) -> String {
    let mut text = format!("opened {}..{}", at(e.from_ms), at(e.to_ms));
    let mut part = |label: &str, value: String| {
        let _ = write!(text, ", {label}{value}");
    };
    if let Some(p) = &e.priority {
        part("", p.clone());
    }
    if let Some(s) = &e.status {
        part("status ", s.clone());
    }
    if let Some(c) = e.closed {
        part("", if c { "closed".into() } else { "open".into() });
    }
    if let Some(n) = e.reports {
        part("reports ", n.to_string());
    }
    if !e.channels.is_empty() {
        part("channels ", e.channels.join("+"));
    }
    if let Some(steps) = &e.steps {
        part("steps ", format!("[{}]", steps.join(", ")));
    }
    if let Some(levels) = &e.escalated_to {
        part("escalated to ", format!("[{}]", levels.join(", ")));
    }
    if let Some((from, to)) = e.escalated_within {
        part("escalated ", format!("{}..{}", at(from), at(to)));
    }
    if let Some(late) = e.late {
        part("", if late { "late".into() } else { "not late".into() });
    }
    if let Some(responses) = &e.responses {
        let list: Vec<String> = responses
            .iter()
            .map(|r| {
                format!(
                    "{}:{} {}..{}",
                    r.response,
                    r.by.as_deref().unwrap_or("*"),
                    at(r.from_ms),
                    at(r.to_ms)
                )
            })
            .collect();
        part("responses ", format!("[{}]", list.join(", ")));
    }
    if let Some(d) = &e.details {
        part("", d.to_string());
    }
    text
}

/// Whether the case fits the expectation; if not, the first thing that differs.
fn case_matches(e: &CaseExpectation, c: &ActualCase) -> Result<(), String> {
    let case = &c.json["case"];
    let check = |ok: bool, why: &dyn Fn() -> String| if ok { Ok(()) } else { Err(why()) };
    check(c.device.as_deref() == Some(e.device.as_str()), &|| {
        "another device".into()
    })?;
    if let Some(t) = &e.case_type {
        check(c.case_type == *t, &|| format!("type {}", c.case_type))?;
    }
    check((e.from_ms..=e.to_ms).contains(&c.opened_at_ms), &|| {
        "opened outside the window".into()
    })?;
    if let Some(p) = &e.priority {
        let actual = case["priority"].as_str().unwrap_or_default();
        check(actual == p, &|| format!("priority {actual}"))?;
    }
    if let Some(s) = &e.status {
        check(c.status() == s, &|| format!("status {}", c.status()))?;
    }
    if let Some(closed) = e.closed {
        check((c.status() == "closed") == closed, &|| format!("status {}", c.status()))?;
    }
    if let Some(n) = e.reports {
        check(c.reports() == n, &|| format!("{} reports", c.reports()))?;
    }
    let channels: Vec<String> = c.list("reports", "channel").collect();
    for ch in &e.channels {
        check(channels.contains(ch), &|| format!("channels {}", channels.join("+")))?;
    }
    if let Some(steps) = &e.steps {
        let actual = c.steps();
        let fits = actual.len() == steps.len()
            && actual
                .iter()
                .zip(steps)
                .all(|(a, w)| a == w || a.split(':').next() == Some(w.as_str()));
        check(fits, &|| format!("steps [{}]", actual.join(", ")))?;
    }
    let levels: Vec<String> = c.list("escalations", "level").collect();
    if let Some(want) = &e.escalated_to {
        check(levels == *want, &|| format!("escalated to [{}]", levels.join(", ")))?;
    }
    if let Some((from, to)) = e.escalated_within {
        let times: Vec<u64> = c.json["escalations"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x["at_ms"].as_u64())
            .collect();
        check(
            !times.is_empty() && times.iter().all(|t| (from..=to).contains(t)),
            &|| format!("escalated at {:?}", times),
        )?;
    }
    if let Some(late) = e.late {
        match case["late"].as_bool() {
            Some(actual) => check(actual == late, &|| format!("late = {actual}"))?,
            None => return Err("the service reports no late flag".into()),
        }
    }
    if let Some(want) = &e.responses {
        let actual: Vec<&serde_json::Value> = c.json["responses"].as_array().into_iter().flatten().collect();
        let shown = || {
            let list: Vec<String> = actual
                .iter()
                .map(|r| {
                    format!(
                        "{}:{}@{}",
                        r["response"].as_str().unwrap_or_default(),
                        r["actor"].as_str().unwrap_or_default(),
                        r["at_ms"]
                            .as_u64()
                            .map_or("?".into(), |t| format_offset(t as i64 - c.opened_at_ms as i64))
                    )
                })
                .collect();
            format!("responses [{}] (times from its opening)", list.join(", "))
        };
        let fits = actual.len() == want.len()
            && actual.iter().zip(want).all(|(a, w)| {
                a["response"] == w.response.as_str()
                    && w.by.as_ref().is_none_or(|by| a["actor"] == by.as_str())
                    && a["at_ms"].as_u64().is_some_and(|t| (w.from_ms..=w.to_ms).contains(&t))
            });
        check(fits, &shown)?;
    }
    if let Some(d) = &e.details {
        check(json_contains(case, d), &|| "details differ".into())?;
    }
    Ok(())
}

fn case_absence_matches(x: &CaseAbsence, c: &ActualCase) -> bool {
    x.device.as_ref().is_none_or(|d| c.device.as_ref() == Some(d))
        && x.case_type.as_ref().is_none_or(|t| *t == c.case_type)
        && (x.from_ms..=x.to_ms).contains(&c.opened_at_ms)
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
            updated_at: None,
            cleared_at: None,
            acknowledged_by: None,
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

#[cfg(test)]
mod event_tests {
    use super::*;
    use crate::parse::parse;

    fn event(kind: &str, offset_s: u64, extra: serde_json::Value) -> ActualEvent {
        let start = parse(SCENARIO, "e").unwrap().start_ms;
        let mut json = serde_json::json!({ "kind": kind, "ts_ms": start + offset_s * 1000 });
        json.as_object_mut()
            .unwrap()
            .extend(extra.as_object().cloned().unwrap_or_default());
        ActualEvent::from_json("L-1", json).unwrap()
    }

    const SCENARIO: &str = r#"
        start = "2026-11-25T09:00:00+08:00"
        duration = "30m"
        [[lift]]
        id = "L-1"
        [[expect_event]]
        device = "L-1"
        kind = "alarm_button"
        after = "2m"
        before = "3m"
        [[expect_event]]
        device = "L-1"
        kind = ["power_lost", "power_restored"]
        count = 2
        [[expect_event]]
        device = "L-1"
        kind = "fault_raised"
        details = { code = 801 }
        [[expect_event]]
        device = "L-1"
        kind = "door_open_while_running"
        count = 0
    "#;

    fn verdicts(events: &[ActualEvent]) -> Vec<(Verdict, String)> {
        let s = parse(SCENARIO, "e").unwrap();
        let mut c = Comparison { lines: Vec::new() };
        compare_events(&s, events, &mut c);
        c.lines.into_iter().map(|l| (l.verdict, l.actual)).collect()
    }

    #[test]
    fn events_are_counted_in_their_window_by_kind_and_fields() {
        let good = [
            event("alarm_button", 150, serde_json::json!({})),
            event("power_lost", 300, serde_json::json!({})),
            event("power_restored", 400, serde_json::json!({})),
            event("fault_raised", 500, serde_json::json!({ "code": 801 })),
        ];
        let v = verdicts(&good);
        assert!(v.iter().all(|(v, _)| *v == Verdict::Ok), "{v:?}");
        assert_eq!(v[1].1, "2 at +5m, +6m40s");

        let bad = [
            // Outside its window, with another code, one too many, one forbidden.
            event("alarm_button", 200, serde_json::json!({})),
            event("power_lost", 300, serde_json::json!({})),
            event("power_restored", 400, serde_json::json!({})),
            event("power_lost", 450, serde_json::json!({})),
            event("fault_raised", 500, serde_json::json!({ "code": 802 })),
            event("door_open_while_running", 600, serde_json::json!({})),
        ];
        let v = verdicts(&bad);
        assert_eq!(v[0], (Verdict::Missing, "0; only at +3m20s".to_string()));
        assert_eq!(v[1].0, Verdict::Forbidden);
        assert_eq!(v[2].0, Verdict::Missing);
        assert_eq!(v[3], (Verdict::Forbidden, "1 at +10m".to_string()));
    }
}
