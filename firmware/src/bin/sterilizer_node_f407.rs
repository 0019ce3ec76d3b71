//! Sterilizer node image for the STM32F407 + W5500 board (see `gridwatch_firmware::board`).
//!
//! Inputs (opto-isolated, active low): PE0 door closed, PE1 cabinet mains present,
//! PE2 heater on. Cabinet temperature: K-type thermocouple on a MAX31855 (SPI3).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod image {
    use embassy_executor::Spawner;
    use gridwatch_firmware::board::{self, settings};
    use gridwatch_firmware::identity::NodeIdentity;
    use gridwatch_firmware::input::Contact;
    use gridwatch_firmware::outbox::Outbox;
    use gridwatch_firmware::session::{Session, SessionConfig};
    use gridwatch_firmware::sterilizer::{SterilizerConfig, SterilizerInputs, SterilizerNode};
    use gridwatch_firmware::thermocouple::Max31855;
    use gridwatch_protocol::{DeviceKind, Method};
    use panic_reset as _;

    /// Readings the node holds while the uplink is down (64-byte FRAM slot each).
    const OUTBOX_CAPACITY: usize = 64;

    #[embassy_executor::main]
    async fn main(spawner: Spawner) -> ! {
        let board = board::start(spawner).await;
        let [door_closed, power, heater, ..] = board.inputs;
        let inputs = SterilizerInputs {
            door_closed: Contact::active_low(door_closed),
            power: Contact::active_low(power),
            heater: Contact::active_low(heater),
        };
        let thermocouple = Max31855::new(board.thermocouple_spi);
        let node = SterilizerNode::new(SterilizerConfig::new(Method::Infrared), inputs, thermocouple);

        let mut fram = board.fram;
        let identity = NodeIdentity::load_or_provision(&mut fram, settings::identity_offset(OUTBOX_CAPACITY), || {
            settings::factory_identity("S-0001")
        })
        .expect("the FRAM answers");
        let outbox = Outbox::<_, OUTBOX_CAPACITY>::open(fram, 0).expect("the FRAM answers");
        let config =
            SessionConfig::for_identity(&identity, DeviceKind::Sterilizer).expect("a stored identity is valid");
        board::node_loop::run(node, outbox, Session::new(config), board.network).await
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("sterilizer-node-f407 is a firmware image: build it with --target thumbv7em-none-eabihf");
    std::process::exit(2);
}
