//! Runs the checks of `gridwatch_firmware_qemu`.
//!
//! For `thumbv7em-none-eabihf` this is a bare-metal image for QEMU's `mps2-an386`
//! (Cortex-M4F): cortex-m-rt starts it (FPU on), every line goes to the host's stdout
//! through semihosting, and it ends with a semihosting exit, 0 when every check passed
//! and 1 at the first failure (a panic, a HardFault or an unexpected interrupt).
//! Arguments come from `-semihosting-config ...,arg=...`.
//!
//! ```sh
//! qemu-system-arm -machine mps2-an386 -cpu cortex-m4 -nographic \
//!   -semihosting-config enable=on,target=native -kernel IMAGE
//! ```
//!
//! On the host it is an ordinary program running the same checks natively.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod image {
    use core::fmt::{self, Write};
    use cortex_m_rt::{ExceptionFrame, entry, exception};
    use cortex_m_semihosting::{debug, hio, nr};

    /// The host's stdout through semihosting.
    struct Host(Option<hio::HostStream>);

    impl Host {
        fn stdout() -> Self {
            Self(hio::hstdout().ok())
        }
    }

    impl Write for Host {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0.as_mut().map_or(Err(fmt::Error), |out| out.write_str(s))
        }
    }

    /// The command line the debugger passes (`SYS_GET_CMDLINE`), empty if none.
    fn command_line(buf: &mut [u8]) -> &str {
        // The host writes the line into `buf` and its length into the block's second word.
        let mut block = [buf.as_mut_ptr() as usize, buf.len()];
        // SAFETY: GET_CMDLINE with a valid block: a writable buffer and its length.
        let failed = unsafe { cortex_m_semihosting::syscall1(nr::GET_CMDLINE, block.as_mut_ptr() as usize) } != 0;
        let len = if failed { 0 } else { block[1].min(buf.len()) };
        core::str::from_utf8(&buf[..len]).unwrap_or("")
    }

    /// The core QEMU emulates, from the System Control Block's CPUID register.
    fn core_name() -> (u32, &'static str) {
        // SAFETY: a read of a read-only register.
        let cpuid = unsafe { (*cortex_m::peripheral::CPUID::PTR).base.read() };
        let name = match (cpuid >> 4) & 0xFFF {
            0xC24 => "Cortex-M4",
            0xC23 => "Cortex-M3",
            0xC27 => "Cortex-M7",
            _ => "unknown core",
        };
        (cpuid, name)
    }

    fn fail() -> ! {
        debug::exit(debug::EXIT_FAILURE);
        // Only if the debugger let the program go on.
        loop {
            cortex_m::asm::bkpt();
        }
    }

    #[entry]
    fn main() -> ! {
        let mut out = Host::stdout();
        let (cpuid, core) = core_name();
        let _ = writeln!(
            out,
            "gridwatch firmware checks on {core} (CPUID {cpuid:#010x}), thumbv7em-none-eabihf"
        );
        let mut buf = [0u8; 256];
        let args = command_line(&mut buf);
        gridwatch_firmware_qemu::run_all(&mut out, args);
        debug::exit(debug::EXIT_SUCCESS);
        fail()
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        let _ = writeln!(Host::stdout(), "FAILED\n{info}");
        fail()
    }

    #[exception]
    unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
        let _ = writeln!(Host::stdout(), "FAILED\nHardFault: {frame:?}");
        fail()
    }

    #[exception]
    unsafe fn DefaultHandler(irqn: i16) {
        let _ = writeln!(Host::stdout(), "FAILED\nunexpected exception or interrupt {irqn}");
        fail()
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    use std::io::Write as _;
    struct Stdout;
    impl std::fmt::Write for Stdout {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let mut out = std::io::stdout().lock();
            out.write_all(s.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|_| std::fmt::Error)
        }
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    println!("gridwatch firmware checks on the host ({})", std::env::consts::ARCH);
    gridwatch_firmware_qemu::run_all(&mut Stdout, &args.join(" "));
}
