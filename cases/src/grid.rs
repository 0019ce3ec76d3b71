//! Grid codes: six digits, two per level — district area (片区), unit (单元), grid (网格).
//! `050103` is area 05, unit 01, grid 03. A scope is a node of that tree: an area, a unit
//! or a single grid; a user holding a role at an area sees every grid under it.
use serde::{Deserialize, Serialize};
use std::fmt;

/// One grid: area, unit and grid number, each 01–99.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GridCode {
    pub area: u8,
    pub unit: u8,
    pub grid: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GridCodeError {
    #[error("expected {}, found {text:?}", self.expected())]
    Length {
        expected: &'static str,
        what: &'static str,
        text: String,
    },
    #[error("expected {}, found {text:?}", self.expected())]
    NotDigits { text: String },
    #[error("expected {}, found {text:?}", self.expected())]
    Zero { level: &'static str, text: String },
}

impl GridCodeError {
    /// What a valid code looks like, for error messages that name the input themselves.
    pub fn expected(&self) -> String {
        match self {
            GridCodeError::Length { expected, what, .. } => format!("{expected} digits ({what})"),
            GridCodeError::NotDigits { .. } => "only digits 0-9".to_string(),
            GridCodeError::Zero { level, .. } => format!("the {level} number to be 01-99, not 00"),
        }
    }
}

const LEVELS: [&str; 3] = ["area", "unit", "grid"];

/// Parses `digits` into its two-digit levels after checking the length is one of `lengths`.
fn parse_levels(
    text: &str,
    lengths: &[usize],
    expected: &'static str,
    what: &'static str,
) -> Result<Vec<u8>, GridCodeError> {
    if !lengths.contains(&text.len()) {
        return Err(GridCodeError::Length {
            expected,
            what,
            text: text.to_string(),
        });
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(GridCodeError::NotDigits { text: text.to_string() });
    }
    text.as_bytes()
        .chunks(2)
        .zip(LEVELS)
        .map(|(pair, level)| {
            let n = (pair[0] - b'0') * 10 + (pair[1] - b'0');
            if n == 0 {
                Err(GridCodeError::Zero {
                    level,
                    text: text.to_string(),
                })
            } else {
                Ok(n)
            }
        })
        .collect()
}

impl GridCode {
    /// `"050103"` → area 5, unit 1, grid 3. Surrounding whitespace is ignored.
    pub fn parse(text: &str) -> Result<GridCode, GridCodeError> {
        let levels = parse_levels(text.trim(), &[6], "6", "area, unit and grid, two each")?;
        Ok(GridCode {
            area: levels[0],
            unit: levels[1],
            grid: levels[2],
        })
    }

    pub fn area_scope(self) -> GridScope {
        GridScope::Area(self.area)
    }

    pub fn unit_scope(self) -> GridScope {
        GridScope::Unit(self.area, self.unit)
    }
}

/// A grid code is written as its six digits.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for GridCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("A grid: area, unit and grid number, two digits each"))
            .pattern(Some("^[0-9]{6}$"))
            .examples(["010203"])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for GridCode {}

impl fmt::Display for GridCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}{:02}{:02}", self.area, self.unit, self.grid)
    }
}

impl TryFrom<String> for GridCode {
    type Error = GridCodeError;
    fn try_from(s: String) -> Result<Self, GridCodeError> {
        GridCode::parse(&s)
    }
}

impl From<GridCode> for String {
    fn from(g: GridCode) -> String {
        g.to_string()
    }
}

/// A node of the grid tree: written with 2 (area), 4 (unit) or 6 (grid) digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum GridScope {
    Area(u8),
    Unit(u8, u8),
    Grid(GridCode),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GridLevel {
    Area,
    Unit,
    Grid,
}

impl GridScope {
    pub fn parse(text: &str) -> Result<GridScope, GridCodeError> {
        let levels = parse_levels(text.trim(), &[2, 4, 6], "2, 4 or 6", "area, unit, grid")?;
        Ok(match levels[..] {
            [area] => GridScope::Area(area),
            [area, unit] => GridScope::Unit(area, unit),
            [area, unit, grid] => GridScope::Grid(GridCode { area, unit, grid }),
            _ => unreachable!("lengths are checked"),
        })
    }

    pub fn level(self) -> GridLevel {
        match self {
            GridScope::Area(_) => GridLevel::Area,
            GridScope::Unit(..) => GridLevel::Unit,
            GridScope::Grid(_) => GridLevel::Grid,
        }
    }

    /// Whether `grid` lies in this part of the tree.
    pub fn contains(self, grid: GridCode) -> bool {
        match self {
            GridScope::Area(a) => grid.area == a,
            GridScope::Unit(a, u) => grid.area == a && grid.unit == u,
            GridScope::Grid(g) => g == grid,
        }
    }

    /// Whether every grid of `other` lies in this scope.
    pub fn covers(self, other: GridScope) -> bool {
        match other {
            GridScope::Grid(g) => self.contains(g),
            GridScope::Unit(a, u) => match self {
                GridScope::Area(sa) => sa == a,
                GridScope::Unit(sa, su) => (sa, su) == (a, u),
                GridScope::Grid(_) => false,
            },
            GridScope::Area(a) => self == GridScope::Area(a),
        }
    }
}

impl fmt::Display for GridScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GridScope::Area(a) => write!(f, "{a:02}"),
            GridScope::Unit(a, u) => write!(f, "{a:02}{u:02}"),
            GridScope::Grid(g) => g.fmt(f),
        }
    }
}

impl TryFrom<String> for GridScope {
    type Error = GridCodeError;
    fn try_from(s: String) -> Result<Self, GridCodeError> {
        GridScope::parse(&s)
    }
}

impl From<GridScope> for String {
    fn from(s: GridScope) -> String {
        s.to_string()
    }
}

impl From<GridCode> for GridScope {
    fn from(g: GridCode) -> GridScope {
        GridScope::Grid(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_area_unit_grid() {
        let g = GridCode::parse("050103").unwrap();
        assert_eq!((g.area, g.unit, g.grid), (5, 1, 3));
        assert_eq!(g.to_string(), "050103");
        assert_eq!(serde_json::to_string(&g).unwrap(), "\"050103\"");
        assert_eq!(
            serde_json::from_str::<GridCode>("\"020304\"").unwrap(),
            GridCode {
                area: 2,
                unit: 3,
                grid: 4
            }
        );
    }

    #[test]
    fn errors_say_what_was_expected() {
        let msg = |s: &str| GridCode::parse(s).unwrap_err().to_string();
        assert_eq!(
            msg("05013"),
            "expected 6 digits (area, unit and grid, two each), found \"05013\""
        );
        assert_eq!(msg("05O103"), "expected only digits 0-9, found \"05O103\"");
        assert_eq!(
            msg("050003"),
            "expected the unit number to be 01-99, not 00, found \"050003\""
        );
        assert!(GridScope::parse("050").is_err());
    }

    #[test]
    fn scopes_form_a_tree() {
        let g = GridCode::parse("050103").unwrap();
        let area = GridScope::parse("05").unwrap();
        let unit = GridScope::parse("0501").unwrap();
        assert!(area.contains(g) && unit.contains(g) && GridScope::Grid(g).contains(g));
        assert!(!GridScope::parse("0502").unwrap().contains(g));
        assert!(!GridScope::parse("06").unwrap().contains(g));
        assert!(area.covers(unit) && unit.covers(g.into()) && !unit.covers(area));
        assert_eq!((area.level(), unit.level()), (GridLevel::Area, GridLevel::Unit));
        assert_eq!(unit.to_string(), "0501");
    }
}
