//! Range and sanity checks that decoding alone cannot express.
use crate::message::*;

/// Lowest and highest floor a lift may report (basements are negative).
pub const FLOOR_RANGE: core::ops::RangeInclusive<i16> = -9..=200;
/// Plausible cabinet temperature, °C; outside it the sensor is broken.
pub const TEMP_RANGE_C: core::ops::RangeInclusive<f32> = -40.0..=400.0;
/// Device timestamps must fall between 2020-01-01 and 2100-01-01 (ms).
pub const TS_RANGE_MS: core::ops::RangeInclusive<u64> = 1_577_836_800_000..=4_102_444_800_000;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValidationError {
    UnsupportedVersion(u8),
    BadDeviceId,
    /// `seq` starts at 1.
    SeqZero,
    TimestampOutOfRange(u64),
    FloorOutOfRange(i16),
    TemperatureOutOfRange(f32),
    /// The payload's device differs from the topic's.
    DeviceMismatch,
    /// A firmware version with characters other than printable ASCII.
    BadFirmwareVersion,
}

impl ValidationError {
    /// A stable, countable reason code (used as a metrics label and in quarantine).
    pub const fn reason(&self) -> &'static str {
        match self {
            ValidationError::UnsupportedVersion(_) => "unsupported_version",
            ValidationError::BadDeviceId => "bad_device_id",
            ValidationError::SeqZero => "seq_zero",
            ValidationError::TimestampOutOfRange(_) => "timestamp_out_of_range",
            ValidationError::FloorOutOfRange(_) => "floor_out_of_range",
            ValidationError::TemperatureOutOfRange(_) => "temperature_out_of_range",
            ValidationError::DeviceMismatch => "device_mismatch",
            ValidationError::BadFirmwareVersion => "bad_firmware_version",
        }
    }
}

impl core::fmt::Display for ValidationError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ValidationError::UnsupportedVersion(v) => {
                write!(f, "unsupported schema version {v}, expected {SCHEMA_VERSION}")
            }
            ValidationError::BadDeviceId => f.write_str("device id must be 1-32 characters of A-Z a-z 0-9 - _ ."),
            ValidationError::SeqZero => f.write_str("seq must be at least 1"),
            ValidationError::TimestampOutOfRange(ts) => {
                write!(f, "timestamp {ts} ms is outside 2020-01-01..2100-01-01")
            }
            ValidationError::FloorOutOfRange(x) => write!(
                f,
                "floor {x} is outside {}..={}",
                FLOOR_RANGE.start(),
                FLOOR_RANGE.end()
            ),
            ValidationError::TemperatureOutOfRange(t) => write!(f, "temperature {t} °C is outside -40..=400"),
            ValidationError::DeviceMismatch => f.write_str("payload device differs from topic device"),
            ValidationError::BadFirmwareVersion => f.write_str("fw must be printable ASCII"),
        }
    }
}

/// Checks a decoded value for ranges a type cannot express.
pub trait Validate {
    fn validate(&self) -> Result<(), ValidationError>;
}

pub fn valid_device_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_DEVICE_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

impl<B: Validate> Validate for Envelope<B> {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.v != SCHEMA_VERSION {
            return Err(ValidationError::UnsupportedVersion(self.v));
        }
        if !valid_device_id(&self.device) {
            return Err(ValidationError::BadDeviceId);
        }
        if self.seq == 0 {
            return Err(ValidationError::SeqZero);
        }
        if !TS_RANGE_MS.contains(&self.ts) {
            return Err(ValidationError::TimestampOutOfRange(self.ts));
        }
        self.body.validate()
    }
}

impl Validate for LiftStatus {
    fn validate(&self) -> Result<(), ValidationError> {
        if FLOOR_RANGE.contains(&self.floor) {
            Ok(())
        } else {
            Err(ValidationError::FloorOutOfRange(self.floor))
        }
    }
}

fn check_temp(t: f32) -> Result<(), ValidationError> {
    if TEMP_RANGE_C.contains(&t) {
        Ok(())
    } else {
        Err(ValidationError::TemperatureOutOfRange(t))
    }
}

impl Validate for SterilizerStatus {
    fn validate(&self) -> Result<(), ValidationError> {
        check_temp(self.temp_c)
    }
}

impl Validate for CycleReport {
    fn validate(&self) -> Result<(), ValidationError> {
        if !TS_RANGE_MS.contains(&self.started) {
            return Err(ValidationError::TimestampOutOfRange(self.started));
        }
        self.peak_c.map_or(Ok(()), check_temp)
    }
}

impl Validate for NodeEvent {
    fn validate(&self) -> Result<(), ValidationError> {
        Ok(())
    }
}

impl Validate for Birth {
    /// Control characters would pass the firmware's lenient decoder raw and come back
    /// from its encoder as `\u` escapes it cannot read (found by fuzzing), and would
    /// reach the dashboard and the database as they are.
    fn validate(&self) -> Result<(), ValidationError> {
        if self.fw.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            Ok(())
        } else {
            Err(ValidationError::BadFirmwareVersion)
        }
    }
}

impl Validate for Presence {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.v != SCHEMA_VERSION {
            return Err(ValidationError::UnsupportedVersion(self.v));
        }
        if valid_device_id(&self.device) {
            Ok(())
        } else {
            Err(ValidationError::BadDeviceId)
        }
    }
}

impl Validate for NodeAck {
    fn validate(&self) -> Result<(), ValidationError> {
        if valid_device_id(&self.device) {
            Ok(())
        } else {
            Err(ValidationError::BadDeviceId)
        }
    }
}
