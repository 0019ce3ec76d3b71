//! Lift node image for the STM32F407 + W5500 board (see `gridwatch_firmware::board`).
//!
//! Inputs (opto-isolated, active low): PE0 door closed, PE1 door zone, PE2 passenger
//! present, PE3 alarm button, PE4 mains present, PE5 inspection switch. Car position:
//! TF-Luna on I2C1 in the pit, 0.2 m below the lowest sill.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod image {
    use embassy_executor::Spawner;
    use gridwatch_firmware::board::{self, settings};
    use gridwatch_firmware::identity::NodeIdentity;
    use gridwatch_firmware::input::Contact;
    use gridwatch_firmware::lift::{LiftConfig, LiftInputs, LiftNode, WearCounters};
    use gridwatch_firmware::outbox::Outbox;
    use gridwatch_firmware::position::LandingTable;
    use gridwatch_firmware::rangefinder::{DEFAULT_ADDRESS, TfLuna};
    use gridwatch_firmware::record::NodeMessage;
    use gridwatch_firmware::session::{Session, SessionConfig};
    use gridwatch_protocol::DeviceKind;
    use panic_reset as _;

    /// Readings the node holds while the uplink is down (64-byte FRAM slot each).
    const OUTBOX_CAPACITY: usize = 64;

    #[embassy_executor::main]
    async fn main(spawner: Spawner) -> ! {
        let board = board::start(spawner).await;
        let [door_closed, door_zone, occupied, alarm, mains, inspection] = board.inputs;
        let inputs = LiftInputs {
            door_closed: Contact::active_low(door_closed),
            door_zone: Contact::active_low(door_zone),
            occupied: Contact::active_low(occupied),
            alarm: Contact::active_low(alarm),
            mains: Contact::active_low(mains),
            inspection: Contact::active_low(inspection),
        };
        // The installation's survey; six landings 3 m apart until provisioning exists.
        let landings = LandingTable::uniform(1, 6, 3_000).expect("a valid landing table");
        let position = TfLuna::new(board.i2c, DEFAULT_ADDRESS, -200);
        let mut node = LiftNode::new(LiftConfig::new(landings), inputs, position);

        let mut fram = board.fram;
        let identity = NodeIdentity::load_or_provision(&mut fram, settings::identity_offset(OUTBOX_CAPACITY), || {
            settings::factory_identity("L-0001")
        })
        .expect("the FRAM answers");
        let mut outbox = Outbox::<_, OUTBOX_CAPACITY>::open(fram, 0).expect("the FRAM answers");
        let last_status = outbox.newest_stored(|m| matches!(m, NodeMessage::Lift(_)));
        if let Some(NodeMessage::Lift(status)) = last_status.map(|r| r.message) {
            node.resume_counters(WearCounters::from(&status));
        }
        let config = SessionConfig::for_identity(&identity, DeviceKind::Lift).expect("a stored identity is valid");
        board::node_loop::run(node, outbox, Session::new(config), board.network).await
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("lift-node-f407 is a firmware image: build it with --target thumbv7em-none-eabihf");
    std::process::exit(2);
}
