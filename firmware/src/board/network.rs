//! W5500 in MACRAW mode under embassy-net (DHCP), its background tasks, and the SNTP
//! query that sets the node's clock to Unix time.
use crate::sntp;
use embassy_executor::Spawner;
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{Ipv4Address, Stack, StackResources};
use embassy_net_wiznet::chip::W5500;
use embassy_net_wiznet::{Device, Runner, State};
use embassy_stm32::exti::{self, ExtiInput};
use embassy_stm32::gpio::{Level, Output, Pull, Speed};
use embassy_stm32::mode::Async;
use embassy_stm32::peripherals::{DMA2_CH0, DMA2_CH3, EXTI4, PA4, PA5, PA6, PA7, PC4, PC5, SPI1};
use embassy_stm32::rng::{self, Rng};
use embassy_stm32::spi::{self, Spi};
use embassy_stm32::time::Hertz;
use embassy_stm32::{Peri, bind_interrupts, dma, interrupt};
use embassy_time::{Delay, Duration, with_timeout};
use embedded_hal_bus::spi::ExclusiveDevice;
use static_cell::StaticCell;

bind_interrupts!(struct Irqs {
    EXTI4 => exti::InterruptHandler<interrupt::typelevel::EXTI4>;
    DMA2_STREAM0 => dma::InterruptHandler<DMA2_CH0>;
    DMA2_STREAM3 => dma::InterruptHandler<DMA2_CH3>;
    RNG => rng::InterruptHandler<embassy_stm32::peripherals::RNG>;
});

type W5500Spi = ExclusiveDevice<Spi<'static, Async, spi::mode::Master>, Output<'static>, Delay>;
type W5500Runner = Runner<'static, W5500, W5500Spi, ExtiInput<'static, Async>, Output<'static>>;

pub struct Pins {
    pub spi: Peri<'static, SPI1>,
    pub sck: Peri<'static, PA5>,
    pub miso: Peri<'static, PA6>,
    pub mosi: Peri<'static, PA7>,
    pub cs: Peri<'static, PA4>,
    pub int: Peri<'static, PC4>,
    pub int_exti: Peri<'static, EXTI4>,
    pub reset: Peri<'static, PC5>,
    pub tx_dma: Peri<'static, DMA2_CH3>,
    pub rx_dma: Peri<'static, DMA2_CH0>,
    pub rng: Peri<'static, embassy_stm32::peripherals::RNG>,
}

/// The running network stack.
#[derive(Clone, Copy)]
pub struct Network {
    pub stack: Stack<'static>,
}

#[embassy_executor::task]
async fn ethernet_task(runner: W5500Runner) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn stack_task(mut runner: embassy_net::Runner<'static, Device<'static>>) -> ! {
    runner.run().await
}

/// Resets and configures the W5500, starts DHCP and spawns the driver tasks. A W5500
/// that does not answer is a hardware fault: the node panics and the watchdog-less
/// panic handler resets it to try again.
pub async fn start(spawner: Spawner, pins: Pins) -> Network {
    let mut rng = Rng::new(pins.rng, Irqs);
    let seed = rng.next_u64();

    let mut config = spi::Config::default();
    config.frequency = Hertz(21_000_000);
    let bus = Spi::new(
        pins.spi,
        pins.sck,
        pins.mosi,
        pins.miso,
        pins.tx_dma,
        pins.rx_dma,
        Irqs,
        config,
    );
    let cs = Output::new(pins.cs, Level::High, Speed::VeryHigh);
    let spi = ExclusiveDevice::new(bus, cs, Delay).unwrap_or_else(|e| match e {});
    let int = ExtiInput::new(pins.int, pins.int_exti, Pull::Up, Irqs);
    let reset = Output::new(pins.reset, Level::High, Speed::Medium);

    static STATE: StaticCell<State<2, 2>> = StaticCell::new();
    let (device, runner) = embassy_net_wiznet::new(mac_address(), STATE.init(State::new()), spi, int, reset)
        .await
        .expect("W5500 answers on SPI1");
    spawner.spawn(ethernet_task(runner).expect("one ethernet task"));

    static RESOURCES: StaticCell<StackResources<3>> = StaticCell::new();
    let config = embassy_net::Config::dhcpv4(Default::default());
    let (stack, runner) = embassy_net::new(device, config, RESOURCES.init(StackResources::new()), seed);
    spawner.spawn(stack_task(runner).expect("one stack task"));
    Network { stack }
}

/// A locally administered MAC derived from the MCU's unique id, so every node differs
/// without provisioning.
fn mac_address() -> [u8; 6] {
    let uid = embassy_stm32::uid::uid();
    [
        0x02,
        uid[0] ^ uid[6],
        uid[1] ^ uid[7],
        uid[2] ^ uid[8],
        uid[3] ^ uid[9],
        uid[4] ^ uid[10] ^ uid[11],
    ]
}

impl Network {
    /// Asks the NTP server for the time; `None` when it does not answer in 2 s.
    pub async fn unix_time_ms(&self, server: [u8; 4]) -> Option<u64> {
        let (mut rx_meta, mut tx_meta) = ([PacketMetadata::EMPTY; 1], [PacketMetadata::EMPTY; 1]);
        let (mut rx, mut tx) = ([0u8; sntp::PACKET_BYTES], [0u8; sntp::PACKET_BYTES]);
        let mut socket = UdpSocket::new(self.stack, &mut rx_meta, &mut rx, &mut tx_meta, &mut tx);
        socket.bind(0).ok()?;
        let server = (Ipv4Address::from(server), 123);
        socket.send_to(&sntp::request(), server).await.ok()?;
        let mut reply = [0u8; sntp::PACKET_BYTES];
        let (len, _) = with_timeout(Duration::from_secs(2), socket.recv_from(&mut reply))
            .await
            .ok()?
            .ok()?;
        sntp::unix_ms_from_reply(&reply[..len])
    }
}
