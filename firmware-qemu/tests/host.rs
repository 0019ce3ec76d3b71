//! The same checks natively on the host: a check that fails here as well as on the
//! emulated Cortex-M4 is a logic bug; one that fails only there is about the target
//! (32-bit `usize`, overflow checks, float ABI, alignment).
use gridwatch_firmware_qemu::{CHECKS, run_all};

#[test]
fn every_check_passes_on_the_host() {
    let mut output = String::new();
    assert_eq!(run_all(&mut output, ""), CHECKS.len(), "{output}");
    let summary = format!("{} checks passed", CHECKS.len());
    assert_eq!(output.lines().last(), Some(summary.as_str()));
}

#[test]
fn check_names_are_unique() {
    for (i, check) in CHECKS.iter().enumerate() {
        assert!(CHECKS[..i].iter().all(|c| c.name != check.name), "{} twice", check.name);
    }
}
