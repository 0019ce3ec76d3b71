//! The drivers and helpers on the target, against fake buses and chips: bit fields,
//! sign extension, byte order and 64-bit time arithmetic on a 32-bit core.
use crate::fakes::{FRAM_BYTES, FramChip, Max31855Chip, ScriptedPin, TfLunaBus};
use core::cell::Cell;
use embedded_hal::i2c::{self, NoAcknowledgeSource};
use embedded_storage::{ReadStorage, Storage};
use gridwatch_firmware::debounce::Debounced;
use gridwatch_firmware::fram::{FramError, Mb85rs};
use gridwatch_firmware::input::Contact;
use gridwatch_firmware::position::PositionSensor;
use gridwatch_firmware::rangefinder::{DEFAULT_ADDRESS, Range, TfLuna, TfLunaError};
use gridwatch_firmware::sntp;
use gridwatch_firmware::thermocouple::{Max31855, Max31855Reading, TemperatureSensor, ThermocoupleFault, decode_frame};

/// An active-low contact reads active on a low pin; a failed read keeps the last value
/// and is counted.
pub(crate) fn contact_polarity_and_read_errors() {
    static READS: [Option<bool>; 3] = [Some(false), None, Some(true)];
    let mut door_closed = Contact::active_low(ScriptedPin::new(&READS));
    assert!(door_closed.is_active());
    assert!(door_closed.is_active(), "a failed read keeps the last value");
    assert!(!door_closed.is_active());
    assert_eq!(door_closed.errors(), 1);
    assert!(door_closed.release().played_all());
}

/// A value counts once the input showed it for the settle time; shorter bounces do not.
pub(crate) fn debounce_ignores_bounces() {
    let mut d = Debounced::new(false, 50);
    d.reset(false, u64::from(u32::MAX) - 20); // across the 32-bit boundary of the ms counter
    let t = |ms: u64| u64::from(u32::MAX) - 20 + ms;
    assert_eq!(d.update(true, t(10)), None);
    assert_eq!(d.update(false, t(20)), None);
    assert_eq!(d.update(true, t(30)), None);
    assert_eq!(d.update(true, t(70)), None);
    assert_eq!(d.update(true, t(80)), Some(true));
    assert_eq!(d.update(true, t(200)), None);
    assert!(d.value());
}

/// Frames from the MAX31855 datasheet's tables: 14- and 12-bit two's complement fields
/// (sign extension by arithmetic shift), the fault bits, and a floating MISO line.
pub(crate) fn max31855_decodes_datasheet_frames() {
    let reading = |thermocouple_c, internal_c| {
        Ok(Max31855Reading {
            thermocouple_c,
            internal_c,
        })
    };
    // +1600 °C = 0110 0100 0000 00, internal +127 °C = 0111 1111 0000.
    assert_eq!(decode_frame(0x6400_7F00), reading(1600.0, 127.0));
    // +100.75 °C = 0000 0110 0100 11, internal -55 °C = 1100 1001 0000.
    assert_eq!(decode_frame(0x064C_C900), reading(100.75, -55.0));
    // -250 °C = 1111 0000 0110 00, internal +25 °C = 0001 1001 0000.
    assert_eq!(decode_frame(0xF060_1900), reading(-250.0, 25.0));
    // -0.25 °C = all ones, internal -0.0625 °C = all ones.
    assert_eq!(decode_frame(0xFFFC_FFF0), reading(-0.25, -0.0625));
    assert_eq!(decode_frame(0x0001_0001), Err(ThermocoupleFault::OpenCircuit));
    assert_eq!(decode_frame(0x0001_0002), Err(ThermocoupleFault::ShortToGround));
    assert_eq!(decode_frame(0x0001_0004), Err(ThermocoupleFault::ShortToVcc));
    assert_eq!(
        decode_frame(0xFFFF_FFFF),
        Err(ThermocoupleFault::NoResponse),
        "floating MISO"
    );

    // Through the driver: 121.5 °C (486 quarters), cold junction 25 °C, MSB first.
    let frame = Cell::new(0x0798_1900);
    let mut sensor = Max31855::new(Max31855Chip { frame: &frame });
    assert_eq!(sensor.read_celsius(), Ok(121.5));
    frame.set(0x0001_0001);
    assert_eq!(sensor.read_celsius(), Err(ThermocoupleFault::OpenCircuit));
}

/// One write-read burst from register 0x00, little-endian fields, the mount offset
/// applied; a weak or overexposed signal and a missing chip are errors, not heights.
pub(crate) fn tf_luna_burst_read_and_signal_checks() {
    let (distance_cm, amplitude, nack) = (Cell::new(523), Cell::new(1_200), Cell::new(false));
    let bus = TfLunaBus {
        distance_cm: &distance_cm,
        amplitude: &amplitude,
        nack: &nack,
        reads: 0,
    };
    let mut sensor = TfLuna::new(bus, DEFAULT_ADDRESS, -300);
    assert_eq!(sensor.read_height_mm(), Ok(4_930));
    assert_eq!(
        sensor.measure(),
        Ok(Range {
            distance_mm: 5_230,
            amplitude: 1_200,
            chip_temp_centi_c: 4_150
        })
    );
    distance_cm.set(10);
    assert_eq!(
        sensor.read_height_mm(),
        Ok(0),
        "a car below the sensor's zero is at 0, not wrapped"
    );
    amplitude.set(99);
    assert_eq!(sensor.measure(), Err(TfLunaError::Unreliable { amplitude: 99 }));
    amplitude.set(0xFFFF);
    assert_eq!(sensor.measure(), Err(TfLunaError::Unreliable { amplitude: 0xFFFF }));
    nack.set(true);
    assert_eq!(
        sensor.read_height_mm(),
        Err(TfLunaError::I2c(i2c::ErrorKind::NoAcknowledge(
            NoAcknowledgeSource::Address
        )))
    );
    assert_eq!(sensor.release().reads, 5);

    let bus = TfLunaBus {
        distance_cm: &distance_cm,
        amplitude: &amplitude,
        nack: &Cell::new(false),
        reads: 0,
    };
    let mut elsewhere = TfLuna::new(bus, 0x11, 0);
    assert!(
        matches!(elsewhere.measure(), Err(TfLunaError::I2c(_))),
        "no chip at 0x11"
    );
}

/// The MB85RS driver against a chip that behaves as the datasheet says: each write is
/// a WREN frame then a WRITE frame at a 16-bit address; reads are one READ frame;
/// accesses past the end never reach the bus.
pub(crate) fn mb85rs_latch_addressing_and_bounds() {
    let mut fram = Mb85rs::new(FramChip::new(), FRAM_BYTES);
    assert_eq!(fram.capacity(), FRAM_BYTES);
    fram.write(0x1FFE, &[0xAB, 0xCD]).expect("a write at the end");
    fram.write(0x0100, &[1, 2, 3, 4, 5]).expect("a write");
    let mut bytes = [0u8; 5];
    fram.read(0x0100, &mut bytes).expect("a read");
    assert_eq!(bytes, [1, 2, 3, 4, 5]);
    let mut last = [0u8; 2];
    fram.read(0x1FFE, &mut last).expect("a read at the end");
    assert_eq!(last, [0xAB, 0xCD]);
    assert_eq!(fram.write(0x1FFF, &[0, 0]), Err(FramError::OutOfBounds));
    assert_eq!(fram.read(0x2000, &mut [0]), Err(FramError::OutOfBounds));
    assert_eq!(fram.write(u32::MAX, &[0]), Err(FramError::OutOfBounds));

    let chip = fram.release();
    assert_eq!(chip.frames, 2 + 2 + 1 + 1, "WREN + WRITE per write, one frame per read");
    assert_eq!(chip.refused_bytes, 0, "every write had the latch set");
    assert!(!chip.latch(), "a WRITE frame clears the latch");
    assert_eq!(chip.memory()[0x1FFE..], [0xAB, 0xCD]);
    assert!(
        chip.memory()[..0x0100].iter().all(|&b| b == 0),
        "nothing written elsewhere"
    );
}

/// SNTP transmit timestamps to Unix milliseconds: 64-bit arithmetic on NTP's 32-bit
/// seconds and fraction, the 2036 era rollover, unsynchronised servers refused.
pub(crate) fn sntp_reply_to_unix_ms() {
    const NTP_TO_UNIX_S: u64 = 2_208_988_800;
    let reply = |seconds: u32, fraction: u32| {
        let mut r = [0u8; sntp::PACKET_BYTES];
        r[0] = 0b00_100_100; // no leap warning, version 4, server
        r[1] = 2;
        r[40..44].copy_from_slice(&seconds.to_be_bytes());
        r[44..48].copy_from_slice(&fraction.to_be_bytes());
        r
    };
    let ntp_s = (1_764_061_200 + NTP_TO_UNIX_S) as u32;
    assert_eq!(
        sntp::unix_ms_from_reply(&reply(ntp_s, 1 << 31)),
        Some(1_764_061_200_500)
    );
    assert_eq!(
        sntp::unix_ms_from_reply(&reply(ntp_s, u32::MAX)),
        Some(1_764_061_200_999)
    );
    let after_2036 = (2_208_988_800 + NTP_TO_UNIX_S - (1 << 32)) as u32;
    assert_eq!(sntp::unix_ms_from_reply(&reply(after_2036, 0)), Some(2_208_988_800_000));
    let mut kiss_of_death = reply(ntp_s, 0);
    kiss_of_death[1] = 0;
    assert_eq!(sntp::unix_ms_from_reply(&kiss_of_death), None);
    assert_eq!(sntp::unix_ms_from_reply(&reply(ntp_s, 0)[..40]), None);
    assert_eq!(sntp::request()[0], 0x23);
}
