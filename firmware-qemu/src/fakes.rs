//! Test doubles without std or heap: what a board's HAL, its chips and its broker
//! connection look like to the firmware, over embedded-hal 1.0 and [`Transport`].
//! (embedded-hal-mock, which the host tests use, needs std.)
use core::cell::Cell;
use core::convert::Infallible;
use core::fmt::Write;
use embedded_hal::digital::{self, InputPin};
use embedded_hal::i2c::{self, I2c, NoAcknowledgeSource};
use embedded_hal::spi::{self, SpiDevice};
use gridwatch_firmware::clock::Clock;
use gridwatch_firmware::record::{NodeMessage, Record};
use gridwatch_firmware::report::Outgoing;
use gridwatch_firmware::session::{ConnectRequest, Publish, Transport};
use gridwatch_protocol::{
    Birth, CycleReport, DeviceId, Envelope, Kind, LiftStatus, MAX_MESSAGE_BYTES, NodeEvent, Presence, SterilizerStatus,
    decode,
};

/// Device time the checks start at (2025-11-25T09:00:00Z).
pub(crate) const T0: u64 = 1_764_061_200_000;

/// A topic or short text.
pub(crate) type Text = heapless::String<64>;

/// A digital level a check sets; reads as a GPIO would.
#[derive(Clone, Copy)]
pub(crate) struct Pin<'a>(pub(crate) &'a Cell<bool>);

impl digital::ErrorType for Pin<'_> {
    type Error = Infallible;
}

impl InputPin for Pin<'_> {
    fn is_high(&mut self) -> Result<bool, Infallible> {
        Ok(self.0.get())
    }

    fn is_low(&mut self) -> Result<bool, Infallible> {
        Ok(!self.0.get())
    }
}

/// A pin that plays back a script of reads; `None` is a failed read.
pub(crate) struct ScriptedPin {
    script: &'static [Option<bool>],
    next: usize,
}

impl ScriptedPin {
    pub(crate) const fn new(script: &'static [Option<bool>]) -> Self {
        Self { script, next: 0 }
    }

    pub(crate) fn played_all(&self) -> bool {
        self.next == self.script.len()
    }
}

impl digital::ErrorType for ScriptedPin {
    type Error = digital::ErrorKind;
}

impl InputPin for ScriptedPin {
    fn is_high(&mut self) -> Result<bool, digital::ErrorKind> {
        let read = *self
            .script
            .get(self.next)
            .expect("the pin was read more often than scripted");
        self.next += 1;
        read.ok_or(digital::ErrorKind::Other)
    }

    fn is_low(&mut self) -> Result<bool, digital::ErrorKind> {
        self.is_high().map(|high| !high)
    }
}

/// Device time that moves only when a check moves it, as a simulator's does.
pub(crate) struct VirtualClock {
    now_ms: u64,
}

impl VirtualClock {
    pub(crate) const fn new(now_ms: u64) -> Self {
        Self { now_ms }
    }

    /// Sleeps (virtually) until `until_ms`; a wake-up in the past is a bug in the caller.
    pub(crate) fn sleep_until(&mut self, until_ms: u64) {
        assert!(
            until_ms > self.now_ms,
            "asked to wake at {until_ms}, not after now ({})",
            self.now_ms
        );
        self.now_ms = until_ms;
    }
}

impl Clock for VirtualClock {
    fn now_ms(&mut self) -> u64 {
        self.now_ms
    }
}

/// A Benewake TF-Luna at I2C address 0x10, as its manual describes the burst read:
/// write register 0x00, read 6 bytes (distance cm, amplitude, chip temperature, LE).
pub(crate) struct TfLunaBus<'a> {
    pub(crate) distance_cm: &'a Cell<u16>,
    pub(crate) amplitude: &'a Cell<u16>,
    /// The chip does not acknowledge its address (unplugged, bus stuck).
    pub(crate) nack: &'a Cell<bool>,
    pub(crate) reads: u32,
}

impl i2c::ErrorType for TfLunaBus<'_> {
    type Error = i2c::ErrorKind;
}

impl I2c for TfLunaBus<'_> {
    fn transaction(&mut self, address: u8, operations: &mut [i2c::Operation<'_>]) -> Result<(), i2c::ErrorKind> {
        if address != 0x10 || self.nack.get() {
            return Err(i2c::ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address));
        }
        let [i2c::Operation::Write(register), i2c::Operation::Read(frame)] = operations else {
            panic!(
                "a TF-Luna measurement is one write-read, not {} operations",
                operations.len()
            );
        };
        assert_eq!(*register, [0x00], "the burst starts at the distance register");
        assert_eq!(frame.len(), 6, "distance, amplitude and temperature: 6 bytes");
        frame[..2].copy_from_slice(&self.distance_cm.get().to_le_bytes());
        frame[2..4].copy_from_slice(&self.amplitude.get().to_le_bytes());
        frame[4..].copy_from_slice(&4_150i16.to_le_bytes());
        self.reads += 1;
        Ok(())
    }
}

/// A MAX31855 on its (read-only) SPI device: every read clocks out the frame a check set.
pub(crate) struct Max31855Chip<'a> {
    pub(crate) frame: &'a Cell<u32>,
}

impl spi::ErrorType for Max31855Chip<'_> {
    type Error = spi::ErrorKind;
}

impl SpiDevice for Max31855Chip<'_> {
    fn transaction(&mut self, operations: &mut [spi::Operation<'_, u8>]) -> Result<(), spi::ErrorKind> {
        let [spi::Operation::Read(frame)] = operations else {
            panic!(
                "a MAX31855 frame is one 4-byte read, not {} operations",
                operations.len()
            );
        };
        assert_eq!(frame.len(), 4, "a MAX31855 frame is 32 bits");
        frame.copy_from_slice(&self.frame.get().to_be_bytes());
        Ok(())
    }
}

/// The MAX31855 frame for a thermocouple temperature (0.25 °C steps) with the cold
/// junction at 25 °C (datasheet: bits 31-18 and 15-4, two's complement).
pub(crate) fn max31855_frame(celsius: f32) -> u32 {
    let quarters = (celsius * 4.0) as i32;
    ((quarters as u32 & 0x3FFF) << 18) | (400 << 4)
}

/// An MB85RS64V FRAM (8 KiB) behind its SPI device, per the datasheet: WREN (0x06)
/// sets the write-enable latch; WRITE (0x02) and READ (0x03) take a 16-bit address
/// that auto-increments and wraps; a WRITE frame clears the latch when chip select
/// rises, and without the latch a WRITE changes nothing.
pub(crate) struct FramChip {
    memory: [u8; FRAM_BYTES],
    latch: bool,
    /// Chip-select frames seen.
    pub(crate) frames: u32,
    /// Data bytes of WRITE frames sent without the latch set (and so not stored).
    pub(crate) refused_bytes: u32,
}

pub(crate) const FRAM_BYTES: usize = 8 * 1024;
const WREN: u8 = 0x06;
const WRITE: u8 = 0x02;
const READ: u8 = 0x03;

/// Where one chip-select frame is.
struct Frame {
    opcode: Option<u8>,
    address: usize,
    address_bytes: u8,
}

impl FramChip {
    /// A new part: FRAM holds whatever it held; zeroes here.
    pub(crate) const fn new() -> Self {
        Self {
            memory: [0; FRAM_BYTES],
            latch: false,
            frames: 0,
            refused_bytes: 0,
        }
    }

    /// Power off and on: the memory stays, the latch is cleared.
    pub(crate) fn power_cycle(&mut self) {
        self.latch = false;
    }

    pub(crate) const fn latch(&self) -> bool {
        self.latch
    }

    pub(crate) fn memory(&self) -> &[u8; FRAM_BYTES] {
        &self.memory
    }

    fn clock_in(&mut self, frame: &mut Frame, byte: u8) {
        match frame.opcode {
            None => {
                frame.opcode = Some(byte);
                if byte == WREN {
                    self.latch = true;
                }
            }
            Some(WRITE | READ) if frame.address_bytes < 2 => {
                frame.address = (frame.address << 8 | usize::from(byte)) % FRAM_BYTES;
                frame.address_bytes += 1;
            }
            Some(WRITE) => {
                if self.latch {
                    self.memory[frame.address] = byte;
                } else {
                    self.refused_bytes += 1;
                }
                frame.address = (frame.address + 1) % FRAM_BYTES;
            }
            Some(opcode) => panic!("byte {byte:#04x} clocked in after opcode {opcode:#04x}"),
        }
    }

    fn clock_out(&mut self, frame: &mut Frame) -> u8 {
        assert!(
            frame.opcode == Some(READ) && frame.address_bytes == 2,
            "data clocked out without a READ command and its address"
        );
        let byte = self.memory[frame.address];
        frame.address = (frame.address + 1) % FRAM_BYTES;
        byte
    }
}

impl spi::ErrorType for FramChip {
    type Error = spi::ErrorKind;
}

impl SpiDevice for FramChip {
    fn transaction(&mut self, operations: &mut [spi::Operation<'_, u8>]) -> Result<(), spi::ErrorKind> {
        self.frames += 1;
        let mut frame = Frame {
            opcode: None,
            address: 0,
            address_bytes: 0,
        };
        for operation in operations.iter_mut() {
            match operation {
                spi::Operation::Write(bytes) => bytes.iter().for_each(|&b| self.clock_in(&mut frame, b)),
                spi::Operation::Read(bytes) => bytes.iter_mut().for_each(|b| *b = self.clock_out(&mut frame)),
                spi::Operation::DelayNs(_) => {}
                _ => panic!("the MB85RS driver only writes and reads"),
            }
        }
        // Chip select rises.
        if frame.opcode == Some(WRITE) {
            self.latch = false;
        }
        Ok(())
    }
}

/// What a node sent, as the broker saw it (payloads decoded with the protocol's decoder).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Sent {
    Connect,
    Subscribe(Text),
    Presence { online: bool },
    Reading { kind: Kind, seq: u64, ts: u64 },
    Ping,
}

/// The broker connection of one node: checks every CONNECT, topic and payload against
/// the protocol as it goes out, and can refuse connects, drop the link and deliver acks.
pub(crate) struct FakeBroker {
    gateway: &'static str,
    device: &'static str,
    pub(crate) up: bool,
    pub(crate) refuse_connects: bool,
    pub(crate) sent: heapless::Vec<Sent, 256>,
    incoming: heapless::Deque<(Text, heapless::Vec<u8, 96>), 4>,
    pub(crate) last_birth: Option<Birth>,
}

impl FakeBroker {
    pub(crate) const fn new(gateway: &'static str, device: &'static str) -> Self {
        Self {
            gateway,
            device,
            up: false,
            refuse_connects: false,
            sent: heapless::Vec::new(),
            incoming: heapless::Deque::new(),
            last_birth: None,
        }
    }

    /// Seqs of the readings published so far, in order.
    pub(crate) fn readings(&self) -> heapless::Vec<u64, 256> {
        self.sent
            .iter()
            .filter_map(|s| match s {
                Sent::Reading { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn take_sent(&mut self) -> heapless::Vec<Sent, 256> {
        core::mem::take(&mut self.sent)
    }

    /// Queues the gateway's `NodeAck { seq }` for the node.
    pub(crate) fn ack(&mut self, seq: u64) {
        let device = self.device;
        self.deliver(self.ack_topic(), |p| {
            write!(p, r#"{{"v":1,"device":"{device}","seq":{seq}}}"#)
        });
    }

    /// Queues any payload on any topic for the node.
    pub(crate) fn deliver(
        &mut self,
        topic: Text,
        payload: impl FnOnce(&mut heapless::String<96>) -> core::fmt::Result,
    ) {
        let mut text = heapless::String::new();
        payload(&mut text).expect("an incoming payload fits 96 bytes");
        let bytes = heapless::Vec::from_slice(text.as_bytes()).expect("96 bytes");
        self.incoming
            .push_back((topic, bytes))
            .expect("at most 4 undelivered messages");
    }

    pub(crate) fn ack_topic(&self) -> Text {
        let mut topic = Text::new();
        write!(topic, "gw/{}/ack/{}", self.gateway, self.device).expect("a topic fits 64 bytes");
        topic
    }

    fn record(&mut self, sent: Sent) {
        self.sent.push(sent).expect("the broker's log holds 256 messages");
    }

    /// The message kind of a topic of this node, `gw/{gw}/dev/{id}/{kind}`.
    fn kind_of(&self, topic: &str) -> Kind {
        let kind = topic
            .strip_prefix("gw/")
            .and_then(|t| t.strip_prefix(self.gateway))
            .and_then(|t| t.strip_prefix("/dev/"))
            .and_then(|t| t.strip_prefix(self.device))
            .and_then(|t| t.strip_prefix('/'))
            .and_then(Kind::parse);
        kind.unwrap_or_else(|| panic!("{topic} is not a topic of {}", self.device))
    }
}

impl Transport for FakeBroker {
    type Error = ();

    fn connect(&mut self, request: &ConnectRequest<'_>) -> Result<(), ()> {
        assert_eq!(request.client_id, self.device, "the client id is the device id");
        assert_eq!(
            self.kind_of(request.will.topic),
            Kind::Presence,
            "the will is the presence"
        );
        let will: Presence = decode(request.will.payload).expect("the will decodes");
        assert!(
            request.will.retain && !will.online && will.device == self.device,
            "the will is a retained offline presence of this device"
        );
        self.record(Sent::Connect);
        self.up = !self.refuse_connects;
        if self.up { Ok(()) } else { Err(()) }
    }

    fn subscribe(&mut self, topic: &str) -> Result<(), ()> {
        self.record(Sent::Subscribe(topic.try_into().expect("a topic fits 64 bytes")));
        if self.up { Ok(()) } else { Err(()) }
    }

    fn publish(&mut self, message: &Publish<'_>) -> Result<(), ()> {
        if !self.up {
            return Err(());
        }
        let kind = self.kind_of(message.topic);
        let sent = if kind == Kind::Presence {
            let presence: Presence = decode(message.payload).expect("a presence decodes");
            assert!(message.retain && presence.device == self.device);
            Sent::Presence {
                online: presence.online,
            }
        } else {
            assert!(!message.retain, "readings are not retained");
            let record = decode_reading(kind, message.payload);
            if let NodeMessage::Birth(birth) = &record.message {
                self.last_birth = Some(birth.clone());
            }
            Sent::Reading {
                kind,
                seq: record.seq,
                ts: record.ts,
            }
        };
        self.record(sent);
        Ok(())
    }

    fn ping(&mut self) -> Result<(), ()> {
        self.record(Sent::Ping);
        if self.up { Ok(()) } else { Err(()) }
    }

    fn poll_incoming(&mut self, on_message: &mut dyn FnMut(&str, &[u8])) -> Result<(), ()> {
        if !self.up {
            return Err(());
        }
        while let Some((topic, payload)) = self.incoming.pop_front() {
            on_message(&topic, &payload);
        }
        Ok(())
    }
}

/// Decodes a reading's envelope of `kind` with the protocol's (no_std) decoder, which
/// validates it as the gateway does.
pub(crate) fn decode_reading(kind: Kind, payload: &[u8]) -> Record {
    fn envelope<B: serde::de::DeserializeOwned + gridwatch_protocol::Validate>(payload: &[u8]) -> Envelope<B> {
        decode(payload).unwrap_or_else(|e| panic!("{e}: {}", core::str::from_utf8(payload).unwrap_or("(not UTF-8)")))
    }
    let (seq, ts, message) = match kind {
        Kind::Lift => {
            let e: Envelope<LiftStatus> = envelope(payload);
            (e.seq, e.ts, NodeMessage::Lift(e.body))
        }
        Kind::Sterilizer => {
            let e: Envelope<SterilizerStatus> = envelope(payload);
            (e.seq, e.ts, NodeMessage::Sterilizer(e.body))
        }
        Kind::Cycle => {
            let e: Envelope<CycleReport> = envelope(payload);
            (e.seq, e.ts, NodeMessage::Cycle(e.body))
        }
        Kind::Event => {
            let e: Envelope<NodeEvent> = envelope(payload);
            (e.seq, e.ts, NodeMessage::Event(e.body))
        }
        Kind::Birth => {
            let e: Envelope<Birth> = envelope(payload);
            (e.seq, e.ts, NodeMessage::Birth(e.body))
        }
        Kind::Presence => panic!("a presence is not a reading"),
    };
    Record { seq, ts, message }
}

/// Encodes `message` as the node would publish it, decodes it as the gateway would,
/// and requires the same message back (floats included).
pub(crate) fn assert_wire_form(device: &str, message: &NodeMessage) {
    let record = Record {
        seq: 7,
        ts: T0,
        message: message.clone(),
    };
    let device = DeviceId::try_from(device).expect("a valid device id");
    let mut buf = [0u8; MAX_MESSAGE_BYTES];
    let len = record
        .encode_envelope(&device, &mut buf)
        .expect("every message encodes");
    assert_eq!(decode_reading(message.kind(), &buf[..len]), record);
}

/// What a node produced over a stretch of polls, with the time of each poll.
pub(crate) type Produced = heapless::Vec<(u64, NodeMessage), 512>;

pub(crate) fn keep(produced: &mut Produced, now_ms: u64, out: Outgoing) {
    for message in out {
        produced
            .push((now_ms, message))
            .expect("a stretch produces at most 512 messages");
    }
}

pub(crate) fn events(produced: &Produced) -> heapless::Vec<(u64, NodeEvent), 16> {
    produced
        .iter()
        .filter_map(|(t, m)| match m {
            NodeMessage::Event(e) => Some((*t, *e)),
            _ => None,
        })
        .collect()
}
