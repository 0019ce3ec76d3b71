//! Links the board binaries with cortex-m-rt's `link.x` (embassy-stm32's `memory-x`
//! feature provides the chip's `memory.x`). Host builds are left alone.
fn main() {
    let bare_metal = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "none");
    if bare_metal && std::env::var_os("CARGO_FEATURE_BOARD_STM32F407").is_some() {
        println!("cargo:rustc-link-arg-bins=--nmagic");
        println!("cargo:rustc-link-arg-bins=-Tlink.x");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
