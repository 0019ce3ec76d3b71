//! Message types. Every reading is an [`Envelope`] around one body; the body's
//! kind is named by the topic (see [`crate::topic`]), so no tag is needed on the wire.
use serde::{Deserialize, Serialize};

/// Wire schema version carried in every message as `v`.
pub const SCHEMA_VERSION: u8 = 1;
/// Longest device id, in bytes.
pub const MAX_DEVICE_ID: usize = 32;
/// Largest single node message accepted, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 512;
/// Largest gateway batch accepted, in bytes.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

pub type DeviceId = heapless::String<MAX_DEVICE_ID>;

/// One reading from one device: who, which (`seq`), when (`ts`) and what (`body`).
///
/// `(device, seq, ts)` is the idempotency key everywhere. `seq` is per device,
/// starts at 1 and never goes back, not even across node resets. `ts` is the
/// device's own clock in milliseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<B> {
    pub v: u8,
    pub device: DeviceId,
    pub seq: u64,
    pub ts: u64,
    pub body: B,
}

impl<B> Envelope<B> {
    pub fn new(device: DeviceId, seq: u64, ts: u64, body: B) -> Self {
        Self {
            v: SCHEMA_VERSION,
            device,
            seq,
            ts,
            body,
        }
    }
}

/// The kind of a message, as the last segment of its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Lift,
    Sterilizer,
    Cycle,
    Event,
    Birth,
    /// Online/offline presence; the last will. Carries no `seq`: not a reading.
    Presence,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Lift,
        Kind::Sterilizer,
        Kind::Cycle,
        Kind::Event,
        Kind::Birth,
        Kind::Presence,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Lift => "lift",
            Kind::Sterilizer => "sterilizer",
            Kind::Cycle => "cycle",
            Kind::Event => "event",
            Kind::Birth => "birth",
            Kind::Presence => "presence",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether messages of this kind are sequenced readings that must be stored.
    pub const fn is_reading(self) -> bool {
        !matches!(self, Kind::Presence)
    }
}

/// A message body that travels inside an [`Envelope`] under a topic of kind `KIND`.
pub trait Body {
    const KIND: Kind;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum DeviceKind {
    Lift,
    Sterilizer,
}

/// Lift service mode (GB/T 24476): only `Normal` service can trap passengers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceMode {
    Normal,
    Inspection,
    Fire,
    OutOfService,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Motion {
    Stopped,
    Up,
    Down,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Door {
    Open,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Power {
    Mains,
    /// Running on the node's backup supply: mains is lost.
    Battery,
}

/// Real-time lift status, sent on every change and as a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiftStatus {
    pub mode: ServiceMode,
    pub motion: Motion,
    pub door: Door,
    /// Car is in the door (unlocking) zone of a landing.
    pub door_zone: bool,
    pub floor: i16,
    /// Passenger detected in the car.
    pub occupied: bool,
    /// In-car alarm button held.
    pub alarm: bool,
    /// Controller fault code, 0 when none (codes are a configurable table).
    pub fault: u16,
    pub power: Power,
    /// Wear counters since installation of the node: runs and door cycles.
    pub runs: u32,
    pub door_cycles: u32,
}

impl LiftStatus {
    /// A lift at rest in normal service: stopped at `floor` in the door zone with its
    /// doors closed, empty, no alarm or fault, on mains, wear counters at zero.
    pub const fn at_rest(floor: i16) -> Self {
        Self {
            mode: ServiceMode::Normal,
            motion: Motion::Stopped,
            door: Door::Closed,
            door_zone: true,
            floor,
            occupied: false,
            alarm: false,
            fault: 0,
            power: Power::Mains,
            runs: 0,
            door_cycles: 0,
        }
    }
}

impl Body for LiftStatus {
    const KIND: Kind = Kind::Lift;
}

/// Disinfection method; the cycle rules (temperature, hold time) are per method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Method {
    Steam,
    Infrared,
    Dishwasher,
}

/// Sterilizer cabinet status, sent on change and as a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SterilizerStatus {
    pub method: Method,
    /// Cabinet temperature in °C.
    pub temp_c: f32,
    pub door: Door,
    pub heating: bool,
    pub power: bool,
    /// A disinfection cycle is in progress.
    pub in_cycle: bool,
}

impl Body for SterilizerStatus {
    const KIND: Kind = Kind::Sterilizer;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CycleOutcome {
    /// Ran to its programmed end.
    Completed,
    /// Stopped early: door opened or power lost before the end.
    Aborted,
}

/// One finished (or aborted) disinfection cycle, as the node saw it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CycleReport {
    pub method: Method,
    /// Device time the cycle started, ms since the Unix epoch. The envelope's `ts` is its end.
    pub started: u64,
    /// Highest cabinet temperature reached, °C; `null` when the cycle had no valid
    /// reading (the temperature sensor was faulty throughout): nothing to judge it by.
    pub peak_c: Option<f32>,
    /// Seconds spent at or above the method's target temperature.
    pub hold_s: u32,
    pub outcome: CycleOutcome,
}

impl Body for CycleReport {
    const KIND: Kind = Kind::Cycle;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    FaultRaised,
    FaultCleared,
    AlarmButton,
    DoorOpenWhileRunning,
    StoppedOutsideDoorZone,
    PowerLost,
    PowerRestored,
    /// The node's buffer overflowed and it dropped `code` oldest readings.
    BufferOverflow,
}

/// An event the node detected at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEvent {
    pub event: EventKind,
    /// Fault code for fault events, a count for `BufferOverflow`, else 0.
    pub code: u16,
}

impl Body for NodeEvent {
    const KIND: Kind = Kind::Event;
}

/// Sent once after every (re)connect: what the node is and how often it restarted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Birth {
    pub device_kind: DeviceKind,
    pub fw: heapless::String<16>,
    pub boots: u32,
}

impl Body for Birth {
    const KIND: Kind = Kind::Birth;
}

/// Online/offline state; a node registers `online: false` as its MQTT last will.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub v: u8,
    pub device: DeviceId,
    pub online: bool,
}

/// Acknowledgement to a node: every reading up to and including `seq` is durable
/// upstream and may be dropped from the node's buffer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAck {
    pub v: u8,
    pub device: DeviceId,
    pub seq: u64,
}

/// A gateway's presence on `gw/{gateway}/presence`: `online: true` as its birth after
/// every connect and as its periodic heartbeat, `online: false` as its MQTT last will.
/// Not a reading (no `seq`): ingest keeps only the latest state and when it came.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayPresence {
    pub v: u8,
    pub gateway: DeviceId,
    pub online: bool,
}

impl GatewayPresence {
    pub fn new(gateway: DeviceId, online: bool) -> Self {
        Self {
            v: SCHEMA_VERSION,
            gateway,
            online,
        }
    }
}

impl crate::validate::Validate for GatewayPresence {
    fn validate(&self) -> Result<(), crate::validate::ValidationError> {
        use crate::validate::{ValidationError, valid_device_id};
        if self.v != SCHEMA_VERSION {
            return Err(ValidationError::UnsupportedVersion(self.v));
        }
        if valid_device_id(&self.gateway) {
            Ok(())
        } else {
            Err(ValidationError::BadDeviceId)
        }
    }
}
