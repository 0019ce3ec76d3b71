//! Board support for the node images: an STM32F407VG with a WIZnet W5500 Ethernet
//! module, an MB85RS64V FRAM for the outbox, and one sensor port of each kind, so the
//! lift and the sterilizer image run on the same PCB.
//!
//! | function | pins | peripheral |
//! |---|---|---|
//! | W5500 Ethernet | PA5 SCK, PA6 MISO, PA7 MOSI, PA4 CS, PC4 INT, PC5 RESET | SPI1 + DMA2 streams 3/0 |
//! | FRAM MB85RS64V (8 KiB) | PB13 SCK, PB14 MISO, PB15 MOSI, PB12 CS | SPI2, blocking |
//! | thermocouple MAX31855 | PC10 SCK, PC11 MISO, PD2 CS | SPI3 receive-only, blocking |
//! | rangefinder TF-Luna | PB6 SCL, PB7 SDA | I2C1, 100 kHz, blocking |
//! | 6 opto-isolated digital inputs | PE0-PE5, active low, pull-ups | GPIO |
//!
//! Per-device settings (ids, broker, NTP server) are build-time environment variables
//! read by [`settings`]; provisioning them at run time is future work.
pub mod mqtt;
pub mod network;
pub mod node_loop;
pub mod settings;

use crate::fram::Mb85rs;
use embassy_executor::Spawner;
use embassy_stm32::gpio::{Input, Level, Output, Pull, Speed};
use embassy_stm32::i2c::{self, I2c};
use embassy_stm32::mode::Blocking;
use embassy_stm32::spi::{self, Spi};
use embassy_stm32::time::Hertz;
use embedded_hal_bus::spi::{ExclusiveDevice, NoDelay};

pub type BlockingSpiDevice = ExclusiveDevice<Spi<'static, Blocking, spi::mode::Master>, Output<'static>, NoDelay>;
pub type Fram = Mb85rs<BlockingSpiDevice>;
pub type SensorI2c = I2c<'static, Blocking, i2c::Master>;
/// FRAM capacity of the MB85RS64V.
pub const FRAM_BYTES: usize = 8 * 1024;

/// Everything a node image needs, brought up.
pub struct Board {
    /// PE0-PE5, in that order.
    pub inputs: [Input<'static>; 6],
    pub i2c: SensorI2c,
    pub thermocouple_spi: BlockingSpiDevice,
    pub fram: Fram,
    pub network: network::Network,
}

/// Clocks the MCU at 168 MHz from an 8 MHz crystal and brings up every peripheral and
/// the network stack (its tasks are spawned on `spawner`).
pub async fn start(spawner: Spawner) -> Board {
    let p = embassy_stm32::init(clock_config());

    let inputs = [
        Input::new(p.PE0, Pull::Up),
        Input::new(p.PE1, Pull::Up),
        Input::new(p.PE2, Pull::Up),
        Input::new(p.PE3, Pull::Up),
        Input::new(p.PE4, Pull::Up),
        Input::new(p.PE5, Pull::Up),
    ];

    let mut i2c_config = i2c::Config::default();
    i2c_config.frequency = Hertz(100_000);
    let i2c = I2c::new_blocking(p.I2C1, p.PB6, p.PB7, i2c_config);

    let mut slow_spi = spi::Config::default();
    slow_spi.frequency = Hertz(4_000_000);
    let thermocouple_bus = Spi::new_blocking_rxonly(p.SPI3, p.PC10, p.PC11, slow_spi);
    let thermocouple_spi = exclusive(thermocouple_bus, Output::new(p.PD2, Level::High, Speed::Medium));

    let mut fram_spi = spi::Config::default();
    fram_spi.frequency = Hertz(20_000_000);
    let fram_bus = Spi::new_blocking(p.SPI2, p.PB13, p.PB15, p.PB14, fram_spi);
    let fram = Mb85rs::new(
        exclusive(fram_bus, Output::new(p.PB12, Level::High, Speed::High)),
        FRAM_BYTES,
    );

    let network = network::start(
        spawner,
        network::Pins {
            spi: p.SPI1,
            sck: p.PA5,
            miso: p.PA6,
            mosi: p.PA7,
            cs: p.PA4,
            int: p.PC4,
            int_exti: p.EXTI4,
            reset: p.PC5,
            tx_dma: p.DMA2_CH3,
            rx_dma: p.DMA2_CH0,
            rng: p.RNG,
        },
    )
    .await;

    Board {
        inputs,
        i2c,
        thermocouple_spi,
        fram,
        network,
    }
}

fn exclusive(bus: Spi<'static, Blocking, spi::mode::Master>, cs: Output<'static>) -> BlockingSpiDevice {
    // Cannot fail: setting an STM32 GPIO high is infallible.
    ExclusiveDevice::new_no_delay(bus, cs).unwrap_or_else(|e| match e {})
}

fn clock_config() -> embassy_stm32::Config {
    use embassy_stm32::rcc::*;
    let mut config = embassy_stm32::Config::default();
    config.rcc.hse = Some(Hse {
        freq: Hertz(8_000_000),
        mode: HseMode::Oscillator,
    });
    config.rcc.pll_src = PllSource::HSE;
    config.rcc.pll = Some(Pll {
        prediv: PllPreDiv::DIV4,
        mul: PllMul::MUL168,
        divp: Some(PllPDiv::DIV2), // 8 MHz / 4 * 168 / 2 = 168 MHz
        divq: Some(PllQDiv::DIV7), // 48 MHz for the RNG
        divr: None,
    });
    config.rcc.ahb_pre = AHBPrescaler::DIV1;
    config.rcc.apb1_pre = APBPrescaler::DIV4;
    config.rcc.apb2_pre = APBPrescaler::DIV2;
    config.rcc.sys = Sysclk::PLL1_P;
    config
}
