//! Node logic for gridwatch's lift and kitchen-sterilizer sensor nodes: `no_std`, no
//! heap, written against `embedded-hal` 1.0 so the same code runs on a board and inside
//! the host simulators (which implement the traits over physics models).
//!
//! # The API a board or a simulator drives
//!
//! Time is always a parameter: `now_ms` is device time in ms since the Unix epoch.
//! Nothing here sleeps or busy-waits; every call returns at once and says when it
//! wants to be called again.
//!
//! ```ignore
//! // Sensing: any InputPin for contacts, a PositionSensor / TemperatureSensor driver.
//! let mut node = LiftNode::new(LiftConfig::new(landings), LiftInputs { door_closed: Contact::active_low(pin0), .. }, TfLuna::new(i2c, 0x10, -200));
//! // Delivery: a persistent ring of N records over any embedded_storage::Storage.
//! let mut outbox = Outbox::<_, 64>::open(storage, 0)?;
//! // MQTT policy, independent of the client library.
//! let mut session = Session::new(SessionConfig::new("gw-01", "L-0001", DeviceKind::Lift)?);
//!
//! loop {
//!     let now = clock.now_ms();
//!     for message in node.poll(now) {          // samples when due; status on change, heartbeat, events
//!         outbox.push(now, message);           // next seq, persisted before it can be sent
//!     }
//!     let wake = session.service(&mut transport, &mut outbox, now); // or match session.next_action(..)
//!     sleep_until(wake.min(node.next_poll_ms()));                    // or until a packet arrives
//! }
//! ```
//!
//! | piece | module | role |
//! |---|---|---|
//! | [`lift::LiftNode`], [`sterilizer::SterilizerNode`] | `lift`, `sterilizer` | implement [`report::Node`]: `poll(now_ms) -> Outgoing`, `next_poll_ms()` |
//! | [`outbox::Outbox`] | `outbox`, `storage` | seq numbering, un-acked ring, overflow policy, persistence |
//! | [`session::Session`] | `session`, `backoff` | will, birth, subscribe to acks, replay, resend, back-off, keep-alive |
//! | drivers | `thermocouple` (MAX31855), `rangefinder` (TF-Luna), `fram` (MB85RS) | datasheet-level drivers over `SpiDevice` / `I2c` |
//! | helpers | `input`, `debounce`, `clock`, `position`, `cycle`, `sntp`, `record` | one concern each |
//!
//! `mqtt_client` (feature `mqtt-client`) carries out the session's actions with rust-mqtt
//! (MQTT 5) over any `embedded-io-async` transport. `board` (feature `board-stm32f407`,
//! bare-metal targets only) wires all of it to an STM32F407 + W5500 board; see
//! `docs/firmware.md`.
#![cfg_attr(not(test), no_std)]
pub mod backoff;
pub mod clock;
pub mod cycle;
pub mod debounce;
pub mod fram;
pub mod identity;
pub mod input;
pub mod lift;
#[cfg(feature = "mqtt-client")]
pub mod mqtt_client;
pub mod outbox;
pub mod position;
pub mod rangefinder;
pub mod record;
pub mod report;
pub mod session;
pub mod sntp;
pub mod sterilizer;
pub mod storage;
pub mod thermocouple;

#[cfg(all(feature = "board-stm32f407", target_os = "none"))]
pub mod board;
