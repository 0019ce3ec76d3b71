//! China local time (Asia/Shanghai): a fixed UTC+8 offset, no daylight saving since 1991,
//! so plain arithmetic on milliseconds is exact and needs no time-zone database.
use jiff::SignedDuration;
pub use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Milliseconds in one day.
pub const DAY_MS: u64 = 86_400_000;
/// China time is UTC + 8 h.
pub const OFFSET_MS: u64 = 8 * 3_600_000;

const EPOCH: Date = Date::constant(1970, 1, 1);

/// The China-local date of a device timestamp (ms since the Unix epoch, UTC).
pub fn date_of(ts_ms: u64) -> Date {
    date_from_epoch_day(epoch_day(ts_ms))
}

/// Days since 1970-01-01 in China time.
pub fn epoch_day(ts_ms: u64) -> i64 {
    ((ts_ms + OFFSET_MS) / DAY_MS) as i64
}

pub fn date_from_epoch_day(day: i64) -> Date {
    EPOCH
        .checked_add(SignedDuration::from_hours(day * 24))
        .expect("device timestamps are validated to 2020..2100")
}

pub fn epoch_day_of(date: Date) -> i64 {
    date.duration_since(EPOCH).as_hours().div_euclid(24)
}

/// Midnight at the start of `date`, China time, as ms since the Unix epoch.
/// Dates before 1970-01-01 08:00 UTC saturate to 0.
pub fn midnight(date: Date) -> u64 {
    (epoch_day_of(date) * DAY_MS as i64 - OFFSET_MS as i64).max(0) as u64
}

/// The instant `time` on `date`, China time, as ms since the Unix epoch.
pub fn at(date: Date, time: ClockTime) -> u64 {
    midnight(date) + time.ms_after_midnight()
}

/// Whole days from `from` to `to` (negative when `to` is earlier).
pub fn days_between(from: Date, to: Date) -> i64 {
    epoch_day_of(to) - epoch_day_of(from)
}

pub fn add_days(date: Date, days: i64) -> Date {
    date_from_epoch_day(epoch_day_of(date) + days)
}

/// ISO weekday of `date`: 1 = Monday … 7 = Sunday.
pub fn iso_weekday(date: Date) -> u8 {
    date.weekday().to_monday_one_offset() as u8
}

/// A wall-clock time of day in China time, minute resolution; written `"HH:MM"`.
/// `"24:00"` is allowed as the end of a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClockTime {
    minutes: u16,
}

/// A clock time is written `HH:MM` (24:00 for the end of the day).
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for ClockTime {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[0-9]{2}:[0-9]{2}$"))
            .examples(["11:00"])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for ClockTime {}

impl ClockTime {
    pub const MIDNIGHT: ClockTime = ClockTime { minutes: 0 };
    pub const END_OF_DAY: ClockTime = ClockTime { minutes: 24 * 60 };

    pub const fn hm(hour: u16, minute: u16) -> ClockTime {
        assert!(minute < 60 && hour * 60 + minute <= 24 * 60);
        ClockTime {
            minutes: hour * 60 + minute,
        }
    }

    pub fn parse(s: &str) -> Result<ClockTime, String> {
        let bad = || format!("expected a time of day as HH:MM (00:00..24:00), found {s:?}");
        let (h, m) = s.split_once(':').ok_or_else(bad)?;
        if h.len() != 2 || m.len() != 2 {
            return Err(bad());
        }
        let hour: u16 = h.parse().map_err(|_| bad())?;
        let minute: u16 = m.parse().map_err(|_| bad())?;
        if minute >= 60 || hour * 60 + minute > 24 * 60 {
            return Err(bad());
        }
        Ok(ClockTime {
            minutes: hour * 60 + minute,
        })
    }

    pub const fn ms_after_midnight(self) -> u64 {
        self.minutes as u64 * 60_000
    }
}

impl fmt::Display for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.minutes / 60, self.minutes % 60)
    }
}

impl TryFrom<String> for ClockTime {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        ClockTime::parse(&s)
    }
}

impl From<ClockTime> for String {
    fn from(t: ClockTime) -> String {
        t.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn china_midnight_is_16_utc_the_day_before() {
        // 2026-11-25 00:00 +08:00 = 2026-11-24 16:00 UTC = 1795536000000 ms.
        let d = Date::constant(2026, 11, 25);
        assert_eq!(midnight(d), 1_795_536_000_000);
        assert_eq!(date_of(1_795_536_000_000), d);
        assert_eq!(date_of(1_795_536_000_000 - 1), Date::constant(2026, 11, 24));
        assert_eq!(at(d, ClockTime::hm(10, 30)), 1_795_536_000_000 + 37_800_000);
    }

    #[test]
    fn day_arithmetic_round_trips() {
        let d = Date::constant(2024, 2, 28);
        assert_eq!(add_days(d, 2), Date::constant(2024, 3, 1));
        assert_eq!(days_between(d, Date::constant(2025, 2, 28)), 366);
        assert_eq!(iso_weekday(Date::constant(2026, 11, 25)), 3); // a Wednesday
    }

    #[test]
    fn clock_time_parses_hh_mm_only() {
        assert_eq!(ClockTime::parse("16:30").unwrap(), ClockTime::hm(16, 30));
        assert_eq!(ClockTime::parse("24:00").unwrap(), ClockTime::END_OF_DAY);
        for bad in ["1630", "7:30", "24:01", "12:60", "ab:cd"] {
            assert!(ClockTime::parse(bad).is_err(), "{bad}");
        }
    }
}
