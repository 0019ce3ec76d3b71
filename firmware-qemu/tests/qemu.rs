//! The firmware checks on an emulated Cortex-M4: builds the image for
//! `thumbv7em-none-eabihf` (through cargo, so a changed source is never tested stale),
//! runs it under `qemu-system-arm` (machine `mps2-an386`, semihosting) with a deadline,
//! and requires exit status 0 with an `ok` line for every check. A second run with a
//! check that fails on purpose must end with a non-zero status and the failure's message.
use gridwatch_firmware_qemu::CHECKS;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const TARGET: &str = "thumbv7em-none-eabihf";
/// The workspace profile the image is built with (Cargo.toml: release + overflow checks).
const PROFILE: &str = "firmware-checks";
const QEMU: &str = "qemu-system-arm";
/// The checks take well under a second of emulation; a hang is a failure, not a wait.
const DEADLINE: Duration = Duration::from_secs(60);

/// Builds the image once per test process and returns its path.
fn image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        // CARGO_TARGET_TMPDIR is `<target dir>/tmp`: the image goes where cargo builds the rest.
        let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("the target directory");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let output = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                env!("CARGO_PKG_NAME"),
                "--bin",
                env!("CARGO_PKG_NAME"),
            ])
            .args(["--target", TARGET, "--profile", PROFILE, "--target-dir"])
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("running cargo");
        assert!(
            output.status.success(),
            "building the image for {TARGET} failed (is the target installed? `rustup target add {TARGET}`):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        target_dir.join(TARGET).join(PROFILE).join(env!("CARGO_PKG_NAME"))
    })
}

/// Runs the image under QEMU with these semihosting arguments; returns its exit
/// status and everything it printed.
fn run_on_qemu(args: &[&str]) -> (ExitStatus, String) {
    if let Err(e) = Command::new(QEMU).arg("--version").output() {
        panic!(
            "{QEMU} could not be run ({e}): the firmware checks need it. Install it with \
             `apt-get install qemu-system-arm` (./scripts/test does so when it is missing)"
        );
    }
    let mut semihosting = String::from("enable=on,target=native");
    for arg in args {
        semihosting.push_str(",arg=");
        semihosting.push_str(arg);
    }
    let mut child = Command::new(QEMU)
        .args(["-machine", "mps2-an386", "-cpu", "cortex-m4", "-nographic"])
        .args(["-semihosting-config", &semihosting, "-kernel"])
        .arg(image())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting qemu-system-arm");
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = reader(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = reader(Box::new(child.stderr.take().expect("piped stderr")));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for qemu") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the image did not exit within {DEADLINE:?}: a check hangs or it never reached its \
                 semihosting exit. It printed:\n{}",
                stdout.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = stdout.join().expect("stdout") + &stderr.join().expect("stderr");
    (status, output)
}

#[test]
fn every_check_passes_on_an_emulated_cortex_m4() {
    let (status, output) = run_on_qemu(&[env!("CARGO_PKG_NAME")]);
    println!("{output}");
    assert!(status.success(), "{QEMU} exited with {status}:\n{output}");
    let banner = output.lines().next().unwrap_or_default();
    assert!(
        banner.contains("Cortex-M4") && banner.contains(TARGET),
        "ran on what? {banner}"
    );
    for check in CHECKS {
        let line = format!("check {} ... ok", check.name);
        assert!(output.lines().any(|l| l == line), "no `{line}` in:\n{output}");
    }
    let summary = format!("{} checks passed", CHECKS.len());
    assert_eq!(output.lines().last(), Some(summary.as_str()), "{output}");
}

#[test]
fn a_failing_check_fails_the_run_with_its_message() {
    let (status, output) = run_on_qemu(&[env!("CARGO_PKG_NAME"), "fail-on-purpose"]);
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains("check fails_on_purpose ... FAILED"), "{output}");
    assert!(output.contains("this check fails on purpose"), "{output}");
    assert!(output.contains("panicked at firmware-qemu/src/lib.rs"), "{output}");
    assert!(
        !output.contains("checks passed"),
        "the run stops at the first failure:\n{output}"
    );
}
