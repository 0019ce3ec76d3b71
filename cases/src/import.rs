//! Reads the offices' equipment register export as it is: UTF-8 CSV, one row per device,
//! Chinese headers (see `simulators/data/README.md`). Columns are found by header, so their
//! order does not matter and extra columns are ignored.
//!
//! Every problem is reported with its line, its column header and what was expected;
//! a bad row is left out and the others are still read.
//!
//! Three optional columns give a using unit's own kitchen calendar (its sterilizers are
//! judged by it; see [`SCHEDULE_COLUMNS`]). Empty cells leave the global schedule; rows of
//! the same unit that fill them must agree.
use crate::grid::{GridCode, GridScope};
use crate::registry::{Device, DeviceStatus, EquipmentType, MaintenanceFirm, Registry, UnitKey, UsingUnit};
use gridwatch_alerts::config::{MealPeriod, ScheduleError};
use gridwatch_alerts::{ClockTime, Date, KitchenSchedule};
use gridwatch_protocol::DeviceKind;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::io::Read;

pub const CLASS: &str = "设备类别";
pub const TYPE: &str = "设备品种";
pub const CODE: &str = "设备注册代码";
pub const LABEL: &str = "内部编号";
pub const MANUFACTURER: &str = "制造单位";
pub const INSTALLED: &str = "投用日期";
pub const UNIT: &str = "使用单位";
pub const ADDRESS: &str = "使用单位地址";
pub const PHONE: &str = "使用单位联系电话";
pub const GRID: &str = "网格编码";
pub const FIRM_ID: &str = "维保单位编码";
pub const FIRM: &str = "维保单位";
pub const INTERVAL: &str = "维保周期(天)";
pub const LAST_MAINTENANCE: &str = "上次维保日期";
pub const NEXT_INSPECTION: &str = "下次检验日期";
pub const STATUS: &str = "设备状态";

pub const COLUMNS: [&str; 16] = [
    CLASS,
    TYPE,
    CODE,
    LABEL,
    MANUFACTURER,
    INSTALLED,
    UNIT,
    ADDRESS,
    PHONE,
    GRID,
    FIRM_ID,
    FIRM,
    INTERVAL,
    LAST_MAINTENANCE,
    NEXT_INSPECTION,
    STATUS,
];

/// Optional: ISO weekdays the kitchen operates, `1-5`, `1,3,5` or `1-5,7` (1 = Monday).
pub const OPERATING_DAYS: &str = "营业日";
/// Optional: meal periods, `午餐 10:30-13:30; 晚餐 16:30-20:00`.
pub const MEAL_PERIODS: &str = "供餐时段";
/// Optional: opening hours (offline is judged within them), `10:00-20:30`.
pub const OPENING_HOURS: &str = "营业时间";

/// The optional columns of a using unit's kitchen schedule.
pub const SCHEDULE_COLUMNS: [&str; 3] = [OPERATING_DAYS, MEAL_PERIODS, OPENING_HOURS];

const LIFT_CLASS: &str = "电梯";
const STERILIZER_CLASS: &str = "餐具消毒设备";

/// One problem in the register file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    /// 1-based line in the file; the header is line 1.
    pub line: u64,
    /// The column's header; empty for a problem with the whole row.
    pub column: String,
    pub found: String,
    pub expected: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}", self.line)?;
        if !self.column.is_empty() {
            write!(f, ", column {}", self.column)?;
        }
        write!(f, ": expected {}, found {:?}", self.expected, self.found)
    }
}

impl std::error::Error for RowError {}

/// What a register file held: every good row, and an error for each bad one.
#[derive(Debug, Clone, Default)]
pub struct ParsedRegister {
    pub registry: Registry,
    /// Rows read into the registry.
    pub devices: usize,
    pub errors: Vec<RowError>,
}

/// Reads a register into a [`Registry`], or every problem found if there was any.
/// A file without a single device row is refused: an empty register would remove
/// every device.
pub fn import_register(reader: impl Read) -> Result<Registry, Vec<RowError>> {
    import_register_within(reader, None)
}

/// [`import_register`] for an importer whose walls are `scope`: a row whose grid lies
/// outside every scope is refused (column 网格编码). `None`: every grid.
pub fn import_register_within(reader: impl Read, scope: Option<&[GridScope]>) -> Result<Registry, Vec<RowError>> {
    let parsed = parse_within(reader, scope);
    if !parsed.errors.is_empty() {
        return Err(parsed.errors);
    }
    if parsed.devices == 0 {
        return Err(vec![whole_row(
            2,
            "no device rows",
            "at least one device row after the header (an empty register is refused)".to_string(),
        )]);
    }
    Ok(parsed.registry)
}

/// Reads a register, keeping the good rows and reporting the bad ones.
pub fn parse_register(reader: impl Read) -> ParsedRegister {
    parse_within(reader, None)
}

fn parse_within(reader: impl Read, scope: Option<&[GridScope]>) -> ParsedRegister {
    let mut csv = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(reader);
    let mut out = ParsedRegister::default();
    let columns = match csv.headers() {
        Ok(h) if h.iter().all(|c| c.trim_start_matches('\u{feff}').trim().is_empty()) => {
            out.errors.push(whole_row(
                1,
                "an empty file",
                "a header line and at least one device row".to_string(),
            ));
            return out;
        }
        Ok(h) => match Columns::find(h) {
            Ok(c) => c,
            Err(errors) => {
                out.errors = errors;
                return out;
            }
        },
        Err(e) => {
            out.errors
                .push(whole_row(1, "", format!("a CSV header line in UTF-8 ({e})")));
            return out;
        }
    };
    let mut seen = Seen::default();
    for record in csv.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                out.errors
                    .push(whole_row(line, "", format!("a well-formed UTF-8 CSV row ({e})")));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(str::is_empty) {
            continue; // trailing blank lines of spreadsheet exports
        }
        let mut row = Row {
            line,
            record: &record,
            columns: &columns,
            errors: Vec::new(),
        };
        if let Some(parsed) = row.parse() {
            seen.check(line, &parsed, &mut row.errors);
            if let Some(scope) = scope.filter(|s| !s.iter().any(|s| s.contains(parsed.unit.grid))) {
                let scopes: Vec<String> = scope.iter().map(ToString::to_string).collect();
                row.errors.push(RowError {
                    line,
                    column: GRID.to_string(),
                    found: parsed.unit.grid.to_string(),
                    expected: format!("a grid within your scope ({})", scopes.join(", ")),
                });
            }
            if row.errors.is_empty() {
                add(&mut out.registry, parsed);
                out.devices += 1;
            }
        }
        out.errors.extend(row.errors);
    }
    out
}

fn whole_row(line: u64, found: &str, expected: String) -> RowError {
    RowError {
        line,
        column: String::new(),
        found: found.to_string(),
        expected,
    }
}

/// Where each known column is.
struct Columns(HashMap<&'static str, usize>);

impl Columns {
    fn find(headers: &csv::StringRecord) -> Result<Columns, Vec<RowError>> {
        let names: Vec<&str> = headers
            .iter()
            .map(|h| h.trim_start_matches('\u{feff}').trim())
            .collect();
        let mut found = HashMap::new();
        let mut errors = Vec::new();
        for column in COLUMNS {
            match names.iter().position(|n| *n == column) {
                Some(i) => {
                    found.insert(column, i);
                }
                None => errors.push(RowError {
                    line: 1,
                    column: column.to_string(),
                    found: names.join(","),
                    expected: format!("a header named {column}"),
                }),
            }
        }
        for column in SCHEDULE_COLUMNS {
            if let Some(i) = names.iter().position(|n| *n == column) {
                found.insert(column, i);
            }
        }
        if errors.is_empty() {
            Ok(Columns(found))
        } else {
            Err(errors)
        }
    }
}

struct ParsedRow {
    unit: UsingUnit,
    firm: Option<MaintenanceFirm>,
    device: Device,
}

struct Row<'a> {
    line: u64,
    record: &'a csv::StringRecord,
    columns: &'a Columns,
    errors: Vec<RowError>,
}

impl Row<'_> {
    /// The cell of `column`; empty for an optional column the file does not have.
    fn get(&self, column: &'static str) -> &str {
        self.columns
            .0
            .get(column)
            .and_then(|&i| self.record.get(i))
            .unwrap_or("")
    }

    fn fail(&mut self, column: &'static str, expected: impl Into<String>) {
        let found = self.get(column).to_string();
        self.errors.push(RowError {
            line: self.line,
            column: column.to_string(),
            found,
            expected: expected.into(),
        });
    }

    fn required(&mut self, column: &'static str) -> String {
        let value = self.get(column).to_string();
        if value.is_empty() {
            self.fail(column, "a value (it may not be empty)");
        }
        value
    }

    /// A date, required or optional; `None` if empty (and optional) or malformed.
    fn date(&mut self, column: &'static str, required: bool) -> Option<Date> {
        let text = self.get(column);
        if text.is_empty() {
            if required {
                self.fail(column, "a date YYYY-MM-DD (required for lifts)");
            }
            return None;
        }
        let parsed = parse_date(text);
        if parsed.is_none() {
            self.fail(column, "a date YYYY-MM-DD (or YYYY/M/D)");
        }
        parsed
    }

    fn parse(&mut self) -> Option<ParsedRow> {
        if self.record.len() < self.columns.0.values().max().map_or(0, |m| m + 1) {
            let found = self.record.iter().collect::<Vec<_>>().join(",");
            let expected = format!("as many fields as the header, found {} fields", self.record.len());
            self.errors.push(whole_row(self.line, &found, expected));
            return None;
        }
        let kind = match self.get(CLASS) {
            LIFT_CLASS => Some(DeviceKind::Lift),
            STERILIZER_CLASS => Some(DeviceKind::Sterilizer),
            _ => {
                self.fail(CLASS, format!("{LIFT_CLASS} or {STERILIZER_CLASS}"));
                None
            }
        };
        let equipment_type = self.equipment_type(kind);
        let id = self.registration_code(kind);
        let lift = kind == Some(DeviceKind::Lift);
        let installed = self.date(INSTALLED, false);
        let unit_name = self.required(UNIT);
        let address = self.required(ADDRESS);
        let grid = match GridCode::parse(self.get(GRID)) {
            Ok(g) => Some(g),
            Err(e) => {
                self.fail(GRID, e.expected());
                None
            }
        };
        let firm = self.firm(lift);
        let interval = self.interval(lift);
        let last_maintenance = self.date(LAST_MAINTENANCE, lift);
        let next_inspection_due = self.date(NEXT_INSPECTION, lift);
        let schedule = self.schedule();
        let status = match self.get(STATUS) {
            "在用" => Some(DeviceStatus::InUse),
            "停用" => Some(DeviceStatus::OutOfService),
            _ => {
                self.fail(STATUS, "在用 (in use) or 停用 (out of service)");
                None
            }
        };
        if !self.errors.is_empty() {
            return None;
        }
        let key = UnitKey {
            name: unit_name,
            address,
        };
        let unit = UsingUnit {
            key: key.clone(),
            phone: self.get(PHONE).to_string(),
            grid: grid?,
            schedule,
        };
        let device = Device {
            id,
            kind: kind?,
            equipment_type: equipment_type?,
            label: self.get(LABEL).to_string(),
            manufacturer: self.get(MANUFACTURER).to_string(),
            model: None,
            installed,
            unit: key,
            firm: firm.as_ref().map(|f| f.id.clone()),
            maintenance_interval_days: interval,
            last_maintenance,
            next_inspection_due,
            status: status?,
            inspections: Vec::new(),
            maintenance: Vec::new(),
        };
        Some(ParsedRow { unit, firm, device })
    }

    /// The unit's kitchen schedule from the optional columns; `None` when they are empty.
    fn schedule(&mut self) -> Option<KitchenSchedule> {
        let mut schedule = KitchenSchedule::default();
        let days = self.get(OPERATING_DAYS);
        if !days.is_empty() {
            match parse_days(days) {
                Some(d) => schedule.operating_days = Some(d),
                None => self.fail(OPERATING_DAYS, "ISO weekdays 1-7 (1 = Monday) as 1-5, 1,3,5 or 1-5,7"),
            }
        }
        let periods = self.get(MEAL_PERIODS);
        if !periods.is_empty() {
            match parse_periods(periods) {
                Some(p) => schedule.meal_periods = Some(p),
                None => self.fail(MEAL_PERIODS, "named periods as 午餐 10:30-13:30; 晚餐 16:30-20:00"),
            }
        }
        let hours = self.get(OPENING_HOURS);
        if !hours.is_empty() {
            match parse_range(hours) {
                Some((opens, closes)) => (schedule.opens, schedule.closes) = (Some(opens), Some(closes)),
                None => self.fail(OPENING_HOURS, "opening hours as 10:00-20:30"),
            }
        }
        match schedule.check() {
            Ok(()) => {}
            Err(e @ ScheduleError::Hours { .. }) => self.fail(OPENING_HOURS, e.to_string()),
            Err(e @ ScheduleError::Weekday(_)) => self.fail(OPERATING_DAYS, e.to_string()),
            Err(e) => self.fail(MEAL_PERIODS, e.to_string()),
        }
        (!schedule.is_empty()).then_some(schedule)
    }

    fn equipment_type(&mut self, kind: Option<DeviceKind>) -> Option<EquipmentType> {
        let names_of = |k: DeviceKind| {
            EquipmentType::ALL
                .into_iter()
                .filter(|t| t.kind() == k)
                .map(|t| t.chinese())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match (EquipmentType::from_chinese(self.get(TYPE)), kind) {
            (Some(t), Some(k)) if t.kind() != k => {
                self.fail(TYPE, format!("a type of {}: {}", self.get(CLASS), names_of(k)));
                None
            }
            (Some(t), _) => Some(t),
            (None, _) => {
                let all = EquipmentType::ALL.map(|t| t.chinese()).join(", ");
                self.fail(TYPE, format!("one of {all}"));
                None
            }
        }
    }

    fn registration_code(&mut self, kind: Option<DeviceKind>) -> String {
        let code = self.get(CODE).to_string();
        if kind == Some(DeviceKind::Lift) && !(code.len() == 20 && code.bytes().all(|b| b.is_ascii_digit())) {
            self.fail(CODE, "20 digits for a lift (type 4 + county 6 + year 4 + serial 6)");
        } else if !gridwatch_protocol::validate::valid_device_id(&code) {
            self.fail(CODE, "1-32 characters of A-Z a-z 0-9 - _ . (it is the device id)");
        }
        code
    }

    fn firm(&mut self, lift: bool) -> Option<MaintenanceFirm> {
        let (id, name) = (self.get(FIRM_ID).to_string(), self.get(FIRM).to_string());
        match (id.is_empty(), name.is_empty()) {
            (true, true) if lift => {
                self.fail(FIRM_ID, "a maintenance firm id (required for lifts)");
                None
            }
            (true, true) => None,
            (false, false) => Some(MaintenanceFirm { id, name }),
            (true, false) => {
                self.fail(FIRM_ID, format!("the id of maintenance firm {name}"));
                None
            }
            (false, true) => {
                self.fail(FIRM, format!("the name of maintenance firm {id}"));
                None
            }
        }
    }

    fn interval(&mut self, lift: bool) -> Option<u32> {
        let text = self.get(INTERVAL);
        if text.is_empty() && !lift {
            return None;
        }
        match text.parse::<u32>() {
            Ok(days) if (1..=3660).contains(&days) => Some(days),
            _ => {
                self.fail(INTERVAL, "a whole number of days, 1 or more (required for lifts)");
                None
            }
        }
    }
}

/// `2026-11-25`, `2026/11/25` or `2026/1/5`.
fn parse_date(text: &str) -> Option<Date> {
    let mut parts = text.split(['-', '/']);
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.is_empty() || m.len() > 2 || d.is_empty() || d.len() > 2 {
        return None;
    }
    Date::new(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?).ok()
}

/// `1-5`, `1,3,5`, `1-5,7` (also with ， or 、): sorted ISO weekdays, or `None`.
fn parse_days(text: &str) -> Option<Vec<u8>> {
    let mut days = Vec::new();
    for part in text.split([',', '，', '、']).map(str::trim) {
        let (from, to) = part.split_once('-').unwrap_or((part, part));
        let (from, to): (u8, u8) = (from.trim().parse().ok()?, to.trim().parse().ok()?);
        if !(1..=7).contains(&from) || !(1..=7).contains(&to) || from > to {
            return None;
        }
        days.extend(from..=to);
    }
    days.sort_unstable();
    days.dedup();
    Some(days)
}

/// `10:30-13:30` as two times of day.
fn parse_range(text: &str) -> Option<(ClockTime, ClockTime)> {
    let (from, to) = text.split_once('-')?;
    Some((ClockTime::parse(from.trim()).ok()?, ClockTime::parse(to.trim()).ok()?))
}

/// `午餐 10:30-13:30; 晚餐 16:30-20:00` (also with ；): named periods, or `None`.
fn parse_periods(text: &str) -> Option<Vec<MealPeriod>> {
    text.split([';', '；'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, range) = p.rsplit_once(char::is_whitespace)?;
            let (start, end) = parse_range(range)?;
            Some(MealPeriod {
                name: name.trim().to_string(),
                start,
                end,
            })
        })
        .collect()
}

/// A schedule in the form the columns take, for exports and messages.
pub fn schedule_cells(schedule: &KitchenSchedule) -> [String; 3] {
    let days = schedule.operating_days.as_ref().map_or_else(String::new, |d| {
        d.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
    });
    let periods = schedule.meal_periods.as_ref().map_or_else(String::new, |p| {
        p.iter()
            .map(|p| format!("{} {}-{}", p.name, p.start, p.end))
            .collect::<Vec<_>>()
            .join("; ")
    });
    let hours = match (schedule.opens, schedule.closes) {
        (Some(o), Some(c)) => format!("{o}-{c}"),
        _ => String::new(),
    };
    [days, periods, hours]
}

/// What earlier rows said, to catch contradictions between rows.
#[derive(Default)]
struct Seen {
    devices: HashMap<String, u64>,
    units: HashMap<UnitKey, (u64, UsingUnit)>,
    firms: HashMap<String, (u64, String)>,
}

impl Seen {
    fn check(&mut self, line: u64, row: &ParsedRow, errors: &mut Vec<RowError>) {
        let fail = |errors: &mut Vec<RowError>, column: &str, found: &str, expected: String| {
            errors.push(RowError {
                line,
                column: column.into(),
                found: found.into(),
                expected,
            })
        };
        if let Some(first) = self.devices.get(&row.device.id) {
            fail(
                errors,
                CODE,
                &row.device.id,
                format!("a registration code not used before (it is on line {first})"),
            );
        }
        if let Some((first, unit)) = self.units.get(&row.unit.key) {
            if unit.grid != row.unit.grid {
                let expected = format!("{} as on line {first} for the same using unit", unit.grid);
                fail(errors, GRID, &row.unit.grid.to_string(), expected);
            }
            if unit.phone != row.unit.phone {
                let expected = format!("{} as on line {first} for the same using unit", unit.phone);
                fail(errors, PHONE, &row.unit.phone, expected);
            }
            if let (Some(known), Some(this)) = (&unit.schedule, &row.unit.schedule)
                && known != this
            {
                let [days, periods, hours] = schedule_cells(known);
                let expected = format!(
                    "the kitchen schedule on line {first} for the same using unit ({days} / {periods} / {hours})"
                );
                fail(errors, OPERATING_DAYS, &schedule_cells(this).join(" / "), expected);
            }
        }
        if let Some(firm) = &row.firm
            && let Some((first, name)) = self.firms.get(&firm.id)
            && *name != firm.name
        {
            fail(
                errors,
                FIRM,
                &firm.name,
                format!("{name} as on line {first} for firm {}", firm.id),
            );
        }
        if errors.is_empty() {
            self.devices.insert(row.device.id.clone(), line);
            let (_, unit) = self
                .units
                .entry(row.unit.key.clone())
                .or_insert((line, row.unit.clone()));
            // A later row may be the first to give the unit's schedule.
            if unit.schedule.is_none() {
                unit.schedule = row.unit.schedule.clone();
            }
            if let Some(f) = &row.firm {
                self.firms.entry(f.id.clone()).or_insert((line, f.name.clone()));
            }
        }
    }
}

fn add(registry: &mut Registry, mut row: ParsedRow) {
    // Rows of a unit that leave the schedule empty take the one another row gave.
    if let Some(known) = registry.unit(&row.unit.key) {
        match (&known.schedule, &row.unit.schedule) {
            (Some(s), None) => row.unit.schedule = Some(s.clone()),
            (None, Some(s)) => registry.fill_schedule(&row.unit.key, s.clone()),
            _ => {}
        }
    }
    // The checks above make these consistent; a conflict here would be a bug.
    registry.add_unit(row.unit).expect("checked against earlier rows");
    if let Some(firm) = row.firm {
        registry.add_firm(firm).expect("checked against earlier rows");
    }
    registry.add_device(row.device).expect("checked against earlier rows");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_cells_in_their_forms() {
        assert_eq!(parse_days("1-5"), Some(vec![1, 2, 3, 4, 5]));
        assert_eq!(parse_days("6，1-2、7"), Some(vec![1, 2, 6, 7]));
        for bad in ["0-5", "1-8", "5-1", "Mon", "1,,2"] {
            assert_eq!(parse_days(bad), None, "{bad}");
        }
        let periods = parse_periods("早餐 06:30-08:30；午餐 11:00-13:00;").unwrap();
        assert_eq!(
            periods.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["早餐", "午餐"]
        );
        assert_eq!(periods[1].start, ClockTime::hm(11, 0));
        assert_eq!(parse_periods("午餐11:00-13:00"), None, "name and times need a space");
        assert_eq!(parse_periods("午餐 11:00"), None);
        let schedule = KitchenSchedule {
            operating_days: Some(vec![1, 2, 3, 4, 5]),
            meal_periods: Some(periods),
            opens: Some(ClockTime::hm(6, 0)),
            closes: Some(ClockTime::hm(14, 0)),
        };
        let [days, periods, hours] = schedule_cells(&schedule);
        assert_eq!(
            (days.as_str(), periods.as_str(), hours.as_str()),
            ("1,2,3,4,5", "早餐 06:30-08:30; 午餐 11:00-13:00", "06:00-14:00")
        );
        assert_eq!(parse_days(&days), schedule.operating_days);
        assert_eq!(parse_periods(&periods), schedule.meal_periods);
    }

    #[test]
    fn dates_in_the_usual_spreadsheet_forms() {
        assert_eq!(parse_date("2026-11-25"), Some(Date::constant(2026, 11, 25)));
        assert_eq!(parse_date("2026/1/5"), Some(Date::constant(2026, 1, 5)));
        for bad in [
            "2026-13-01",
            "2026-02-30",
            "26-1-5",
            "2026-1",
            "2026.1.5",
            "2026-1-5-1",
            "",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }
}
