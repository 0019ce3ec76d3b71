//! Reads the offices' equipment register export as it is: UTF-8 CSV, one row per device,
//! Chinese headers (see `simulators/data/README.md`). Columns are found by header, so their
//! order does not matter and extra columns are ignored.
//!
//! Every problem is reported with its line, its column header and what was expected;
//! a bad row is left out and the others are still read.
use crate::grid::GridCode;
use crate::registry::{Device, DeviceStatus, EquipmentType, MaintenanceFirm, Registry, UnitKey, UsingUnit};
use gridwatch_alerts::Date;
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
pub fn import_register(reader: impl Read) -> Result<Registry, Vec<RowError>> {
    let parsed = parse_register(reader);
    if parsed.errors.is_empty() {
        Ok(parsed.registry)
    } else {
        Err(parsed.errors)
    }
}

/// Reads a register, keeping the good rows and reporting the bad ones.
pub fn parse_register(reader: impl Read) -> ParsedRegister {
    let mut csv = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(reader);
    let mut out = ParsedRegister::default();
    let columns = match csv.headers() {
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
    fn get(&self, column: &'static str) -> &str {
        self.record.get(self.columns.0[column]).unwrap_or("")
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
            self.units
                .entry(row.unit.key.clone())
                .or_insert((line, row.unit.clone()));
            if let Some(f) = &row.firm {
                self.firms.entry(f.id.clone()).or_insert((line, f.name.clone()));
            }
        }
    }
}

fn add(registry: &mut Registry, row: ParsedRow) {
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
