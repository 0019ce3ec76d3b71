//! Checks of the firmware's node logic, outbox, session and drivers that run on the
//! firmware's own instruction set: `src/main.rs` runs them on an emulated Cortex-M4
//! (QEMU `mps2-an386`, `thumbv7em-none-eabihf`) and reports through semihosting;
//! `tests/qemu.rs` runs that image under QEMU and on the host.
//!
//! `no_std` and no heap, like the firmware: every fake (pins, I2C and SPI buses, an
//! MB85RS FRAM chip, the broker connection, the clock) is a small struct over the
//! embedded-hal 1.0 and `Transport` traits in [`fakes`]. A check passes by returning
//! and fails by panicking (`assert!`), which the image turns into a non-zero exit.
#![no_std]

mod drivers;
mod fakes;
mod lift;
mod outbox;
mod session;
mod sterilizer;

use core::fmt::Write;

/// One named check.
#[derive(Clone, Copy)]
pub struct Check {
    pub name: &'static str,
    pub run: fn(),
}

/// Every check, in the order they run.
pub const CHECKS: &[Check] = &[
    check(
        "contact_polarity_and_read_errors",
        drivers::contact_polarity_and_read_errors,
    ),
    check("debounce_ignores_bounces", drivers::debounce_ignores_bounces),
    check(
        "max31855_decodes_datasheet_frames",
        drivers::max31855_decodes_datasheet_frames,
    ),
    check(
        "tf_luna_burst_read_and_signal_checks",
        drivers::tf_luna_burst_read_and_signal_checks,
    ),
    check(
        "mb85rs_latch_addressing_and_bounds",
        drivers::mb85rs_latch_addressing_and_bounds,
    ),
    check("sntp_reply_to_unix_ms", drivers::sntp_reply_to_unix_ms),
    check(
        "lift_trapped_passenger_is_reported",
        lift::trapped_passenger_is_reported,
    ),
    check(
        "lift_rangefinder_fault_raised_and_cleared",
        lift::rangefinder_fault_raised_and_cleared,
    ),
    check("sterilizer_good_cycle_completes", sterilizer::good_cycle_completes),
    check(
        "sterilizer_door_opened_early_aborts",
        sterilizer::door_opened_early_aborts,
    ),
    check(
        "sterilizer_thermocouple_fault_reported",
        sterilizer::thermocouple_fault_reported,
    ),
    check(
        "outbox_in_fram_replays_oldest_first_after_reboot",
        outbox::replays_oldest_first_after_reboot,
    ),
    check(
        "outbox_overflow_reported_when_room_returns",
        outbox::overflow_reported_when_room_returns,
    ),
    check(
        "session_connect_will_subscribe_presence_birth",
        session::connect_will_subscribe_presence_birth,
    ),
    check("session_resends_after_the_timeout", session::resends_after_the_timeout),
    check("session_backs_off_and_resets", session::backs_off_and_resets),
    check("session_acks_and_rejects", session::acks_and_rejects),
    check("node_loop_lift_fram_session", session::node_loop_lift_fram_session),
];

/// A check that always fails: run first when the image is started with the argument
/// `fail-on-purpose`, so the host test can see that a failure fails the run.
pub const FAIL_ON_PURPOSE: Check = check("fails_on_purpose", || {
    assert_eq!(1 + 1, 3, "this check fails on purpose");
});

const fn check(name: &'static str, run: fn()) -> Check {
    Check { name, run }
}

/// Runs the checks in order, one line each (`check NAME ... ok`), then a summary line
/// (`N checks passed`). A failing check panics after `check NAME ... ` was written, so
/// the panic message completes its line. `args` is the image's command line: the word
/// `fail-on-purpose` runs [`FAIL_ON_PURPOSE`] first.
pub fn run_all(out: &mut impl Write, args: &str) -> usize {
    let fail_first = args.split_whitespace().any(|a| a == "fail-on-purpose");
    let checks = fail_first.then_some(&FAIL_ON_PURPOSE).into_iter().chain(CHECKS);
    let mut passed = 0;
    for check in checks {
        let _ = write!(out, "check {} ... ", check.name);
        (check.run)();
        let _ = writeln!(out, "ok");
        passed += 1;
    }
    let _ = writeln!(out, "{passed} checks passed");
    passed
}
