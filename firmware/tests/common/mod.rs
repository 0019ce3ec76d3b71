//! Test doubles shared by the integration tests: the same kind of thing a simulator
//! provides (inputs backed by a model, a transport that records what it was asked).
#![allow(dead_code)]
use gridwatch_firmware::position::PositionSensor;
use gridwatch_firmware::session::{ConnectRequest, Publish, Transport};
use gridwatch_firmware::storage::{RamStorage, storage_bytes};
use gridwatch_firmware::thermocouple::{TemperatureSensor, ThermocoupleFault};
use std::cell::Cell;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::rc::Rc;

pub(crate) const CAPACITY: usize = 8;
pub(crate) type Storage = RamStorage<{ storage_bytes(CAPACITY) }>;
pub(crate) const T0: u64 = 1_764_061_200_000;

/// A digital level a test (or a physics model) sets; reads as a GPIO would.
#[derive(Clone, Default)]
pub(crate) struct Level(Rc<Cell<bool>>);

impl Level {
    pub(crate) fn set(&self, high: bool) {
        self.0.set(high);
    }
}

impl embedded_hal::digital::ErrorType for Level {
    type Error = Infallible;
}

impl embedded_hal::digital::InputPin for Level {
    fn is_high(&mut self) -> Result<bool, Infallible> {
        Ok(self.0.get())
    }

    fn is_low(&mut self) -> Result<bool, Infallible> {
        Ok(!self.0.get())
    }
}

/// Car height for the position sensor; `None` makes the sensor fail.
#[derive(Clone, Default)]
pub(crate) struct Height(pub Rc<Cell<Option<u32>>>);

impl PositionSensor for Height {
    type Error = ();
    fn read_height_mm(&mut self) -> Result<u32, ()> {
        self.0.get().ok_or(())
    }
}

/// Cabinet temperature for the thermocouple; `Err` is a sensor fault.
#[derive(Clone)]
pub(crate) struct Thermometer(pub Rc<Cell<Result<f32, ThermocoupleFault>>>);

impl TemperatureSensor for Thermometer {
    fn read_celsius(&mut self) -> Result<f32, ThermocoupleFault> {
        self.0.get()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sent {
    Connect {
        client_id: String,
        will_topic: String,
        will_payload: String,
        will_retain: bool,
    },
    Subscribe(String),
    Publish {
        topic: String,
        payload: String,
        retain: bool,
    },
    Ping,
}

/// A broker connection that records every call and can be told to fail.
#[derive(Default)]
pub(crate) struct MockTransport {
    pub up: bool,
    pub refuse_connects: bool,
    /// Fail the publish after this many more succeed (then the link is down).
    pub publishes_before_failure: Option<usize>,
    pub sent: Vec<Sent>,
    pub incoming: VecDeque<(String, Vec<u8>)>,
}

impl MockTransport {
    pub(crate) fn take_sent(&mut self) -> Vec<Sent> {
        std::mem::take(&mut self.sent)
    }

    /// Seqs of the readings published so far (presence excluded), in order.
    pub(crate) fn published_seqs(&self) -> Vec<u64> {
        self.sent
            .iter()
            .filter_map(|s| match s {
                Sent::Publish { payload, .. } => seq_of(payload),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn ack(&mut self, gateway: &str, device: &str, seq: u64) {
        let payload = format!(r#"{{"v":1,"device":"{device}","seq":{seq}}}"#);
        self.incoming
            .push_back((format!("gw/{gateway}/ack/{device}"), payload.into_bytes()));
    }
}

pub(crate) fn seq_of(payload: &str) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_str(payload).ok()?;
    value.get("seq")?.as_u64()
}

#[derive(Debug)]
pub(crate) struct LinkDown;

impl Transport for MockTransport {
    type Error = LinkDown;

    fn connect(&mut self, request: &ConnectRequest<'_>) -> Result<(), LinkDown> {
        self.sent.push(Sent::Connect {
            client_id: request.client_id.into(),
            will_topic: request.will.topic.into(),
            will_payload: String::from_utf8(request.will.payload.to_vec()).unwrap(),
            will_retain: request.will.retain,
        });
        self.up = !self.refuse_connects;
        if self.up { Ok(()) } else { Err(LinkDown) }
    }

    fn subscribe(&mut self, topic: &str) -> Result<(), LinkDown> {
        self.sent.push(Sent::Subscribe(topic.into()));
        if self.up { Ok(()) } else { Err(LinkDown) }
    }

    fn publish(&mut self, message: &Publish<'_>) -> Result<(), LinkDown> {
        if let Some(left) = self.publishes_before_failure.as_mut() {
            if *left == 0 {
                self.up = false;
                self.publishes_before_failure = None;
                return Err(LinkDown);
            }
            *left -= 1;
        }
        if !self.up {
            return Err(LinkDown);
        }
        self.sent.push(Sent::Publish {
            topic: message.topic.into(),
            payload: String::from_utf8(message.payload.to_vec()).unwrap(),
            retain: message.retain,
        });
        Ok(())
    }

    fn ping(&mut self) -> Result<(), LinkDown> {
        self.sent.push(Sent::Ping);
        if self.up { Ok(()) } else { Err(LinkDown) }
    }

    fn poll_incoming(&mut self, on_message: &mut dyn FnMut(&str, &[u8])) -> Result<(), LinkDown> {
        if !self.up {
            return Err(LinkDown);
        }
        while let Some((topic, payload)) = self.incoming.pop_front() {
            on_message(&topic, &payload);
        }
        Ok(())
    }
}
