//! A simulated node: a physics model wired to the **real firmware** — the
//! firmware's `LiftNode` / `SterilizerNode` reading simulated hardware through
//! embedded-hal, its `Outbox` (seq numbering, un-acked ring, persistence) on RAM
//! storage, and its MQTT `Session` (will, birth, replay, resend, back-off) driven over
//! a rumqttc `Link` (`link.rs`).
//!
//! Nothing here sleeps: [`SimNode::advance_to`] runs physics and firmware up to a
//! device time, [`SimNode::deliver`] performs what the session asks at that time,
//! [`SimNode::take_incoming`] hands acks to the session. A runner decides how device
//! time relates to wall time (the fleet: scaled wall time; scenarios: lock-step
//! virtual time).
use crate::hal::{Max31855Chip, SimPin, TfLunaChip};
use crate::lift::{LiftEvent, LiftModel, LiftParams};
use crate::link::{Incoming, Link};
use crate::sterilizer::{SterilizerEvent, SterilizerModel, SterilizerParams};
use crate::{Error, Result};
use embedded_storage::{ReadStorage, Storage};
use gridwatch_firmware::identity::{IDENTITY_BYTES, MAX_SECRET, NodeIdentity};
use gridwatch_firmware::lift::{LiftConfig, LiftInputs, LiftNode, WearCounters};
use gridwatch_firmware::outbox::{Outbox, OutboxError, OutboxStats};
use gridwatch_firmware::position::LandingTable;
use gridwatch_firmware::rangefinder::TfLuna;
use gridwatch_firmware::record::NodeMessage;
use gridwatch_firmware::report::Node;
use gridwatch_firmware::session::{Action, ConfigError, Session, SessionConfig, SessionStats};
use gridwatch_firmware::sterilizer::{SterilizerConfig, SterilizerInputs, SterilizerNode};
use gridwatch_firmware::thermocouple::Max31855;
use gridwatch_protocol::{DeviceId, DeviceKind};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::Notify;

/// Records a simulated node buffers (a real board keeps 64 in 8 KiB of FRAM; the host
/// has room for a longer outage).
pub const OUTBOX_CAPACITY: usize = 512;

/// Readings a node remembers having published ([`SimNode::published`]), newest kept.
pub const PUBLISHED_KEPT: usize = 50_000;

/// A reading as the node published it: seq, device time, topic and payload bytes, to be
/// sent again as it was (redelivery of what was already acknowledged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedReading {
    pub seq: u64,
    pub ts_ms: u64,
    pub topic: String,
    pub payload: Vec<u8>,
}

/// The envelope fields a published reading is recognised by.
#[derive(serde::Deserialize)]
struct SeqTs {
    seq: u64,
    ts: u64,
}

/// Keeps a copy of a published reading (births and presence carry no seq), each seq
/// once: a resend repeats seqs already kept.
fn remember(published: &mut VecDeque<PublishedReading>, topic: &str, payload: &[u8]) {
    let Ok(SeqTs { seq, ts }) = serde_json::from_slice::<SeqTs>(payload) else {
        return;
    };
    if published.back().is_some_and(|last| last.seq >= seq) {
        return;
    }
    if published.len() == PUBLISHED_KEPT {
        published.pop_front();
    }
    published.push_back(PublishedReading {
        seq,
        ts_ms: ts,
        topic: topic.to_string(),
        payload: payload.to_vec(),
    });
}

/// Byte-addressable RAM standing in for the node's FRAM (`embedded_storage::Storage`),
/// on the heap. It survives a simulated reset ([`SimNode::reset`]).
#[derive(Debug, Clone)]
pub struct RamStorage(Box<[u8]>);

impl RamStorage {
    /// Fresh memory, all 0xFF.
    pub fn new(bytes: usize) -> Self {
        Self(vec![0xFF; bytes].into_boxed_slice())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfBounds;

impl ReadStorage for RamStorage {
    type Error = OutOfBounds;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), OutOfBounds> {
        let start = offset as usize;
        let source = self.0.get(start..start + bytes.len()).ok_or(OutOfBounds)?;
        bytes.copy_from_slice(source);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.0.len()
    }
}

impl Storage for RamStorage {
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), OutOfBounds> {
        let start = offset as usize;
        self.0
            .get_mut(start..start + bytes.len())
            .ok_or(OutOfBounds)?
            .copy_from_slice(bytes);
        Ok(())
    }
}

pub type NodeOutbox = Outbox<RamStorage, OUTBOX_CAPACITY>;

fn open_outbox(storage: RamStorage, device: &str) -> Result<Box<NodeOutbox>> {
    NodeOutbox::open(storage, 0)
        .map(Box::new)
        .map_err(|problem| Error::Outbox {
            device: device.to_string(),
            problem,
        })
}

/// The node's persistent memory: the outbox, then its identity block.
fn erased_storage() -> RamStorage {
    RamStorage::new(NodeOutbox::STORAGE_BYTES + IDENTITY_BYTES)
}

const IDENTITY_OFFSET: u32 = NodeOutbox::STORAGE_BYTES as u32;

/// The equipment a node watches.
#[derive(Debug, Clone)]
pub enum Equipment {
    Lift(LiftModel),
    Sterilizer(SterilizerModel),
}

impl Equipment {
    pub fn kind(&self) -> DeviceKind {
        match self {
            Equipment::Lift(_) => DeviceKind::Lift,
            Equipment::Sterilizer(_) => DeviceKind::Sterilizer,
        }
    }

    fn now_ms(&self) -> u64 {
        match self {
            Equipment::Lift(m) => m.now_ms(),
            Equipment::Sterilizer(m) => m.now_ms(),
        }
    }

    fn advance_to(&mut self, t_ms: u64) {
        match self {
            Equipment::Lift(m) => m.advance_to(t_ms),
            Equipment::Sterilizer(m) => m.advance_to(t_ms),
        }
    }
}

/// Something scheduled for the equipment of one node.
#[derive(Debug, Clone, PartialEq)]
pub enum EquipmentEvent {
    Lift(LiftEvent),
    Sterilizer(SterilizerEvent),
}

type LiftFirmware = LiftNode<SimPin, TfLuna<TfLunaChip>>;
type SterilizerFirmware = SterilizerNode<SimPin, Max31855<Max31855Chip>>;

enum Firmware {
    Lift(Box<LiftFirmware>),
    Sterilizer(Box<SterilizerFirmware>),
}

impl Firmware {
    /// Boots the firmware on the equipment's hardware (what a reset does).
    fn boot(equipment: &Equipment, heartbeat_ms: u32) -> Firmware {
        match equipment {
            Equipment::Lift(model) => {
                let p = model.params();
                let landings = LandingTable::uniform(p.lowest_floor, usize::from(p.floors), p.floor_height_mm)
                    .expect("validated lift parameters make a landing table");
                let mut config = LiftConfig::new(landings);
                config.heartbeat_ms = heartbeat_ms;
                let hw = model.hardware();
                let inputs = LiftInputs {
                    door_closed: hw.door_closed.firmware_input(),
                    door_zone: hw.door_zone.firmware_input(),
                    occupied: hw.occupied.firmware_input(),
                    alarm: hw.alarm.firmware_input(),
                    mains: hw.mains.firmware_input(),
                    inspection: hw.inspection.firmware_input(),
                };
                let position = TfLuna::new(hw.rangefinder.bus(), TfLunaChip::ADDRESS, -(p.pit_mm as i32));
                let node =
                    LiftNode::new(config, inputs, position).with_safety_circuit(hw.safety_circuit.firmware_input());
                Firmware::Lift(Box::new(node))
            }
            Equipment::Sterilizer(model) => {
                let mut config = SterilizerConfig::new(model.params().method);
                config.heartbeat_ms = heartbeat_ms;
                let hw = model.hardware();
                let inputs = SterilizerInputs {
                    door_closed: hw.door_closed.firmware_input(),
                    power: hw.power.firmware_input(),
                    heater: hw.heater.firmware_input(),
                };
                let node = SterilizerNode::new(config, inputs, Max31855::new(hw.probe.device()));
                Firmware::Sterilizer(Box::new(node))
            }
        }
    }

    fn node(&mut self) -> &mut dyn Node {
        match self {
            Firmware::Lift(n) => n.as_mut(),
            Firmware::Sterilizer(n) => n.as_mut(),
        }
    }

    fn next_poll_ms(&self) -> u64 {
        match self {
            Firmware::Lift(n) => n.next_poll_ms(),
            Firmware::Sterilizer(n) => n.next_poll_ms(),
        }
    }
}

/// How the node is set up.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub device: String,
    pub gateway: String,
    /// The gateway's broker.
    pub broker: SocketAddr,
    /// Status heartbeat of the firmware (its default is 10 s).
    pub heartbeat_ms: u32,
    /// The session sends every unacknowledged reading again after this long without an
    /// ack. A lock-step runner delivers a whole step at once, so this must exceed its step.
    pub resend_after_ms: u32,
    /// The node's secret: it logs in as its device id with it (`None`: anonymously).
    pub secret: Option<String>,
}

impl NodeConfig {
    pub fn new(device: &str, gateway: &str, broker: SocketAddr) -> Self {
        Self {
            device: device.to_string(),
            gateway: gateway.to_string(),
            broker,
            heartbeat_ms: 10_000,
            resend_after_ms: 30_000,
            secret: None,
        }
    }
}

/// Counters for summaries and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeStats {
    pub outbox: OutboxStats,
    pub session: SessionStats,
    /// Readings the firmware produced (status, events, cycles; births not included).
    pub produced: u64,
}

pub struct SimNode {
    config: NodeConfig,
    equipment: Equipment,
    firmware: Firmware,
    outbox: Box<NodeOutbox>,
    session: Session,
    link: Link,
    network_up: bool,
    schedule: VecDeque<(u64, EquipmentEvent)>,
    produced: u64,
    /// Readings published, each seq once, oldest first (at most [`PUBLISHED_KEPT`]).
    published: VecDeque<PublishedReading>,
}

impl SimNode {
    /// A node with a fresh (erased) outbox on `equipment`, not yet connected.
    pub fn new(config: NodeConfig, equipment: Equipment, wake: Arc<Notify>) -> Result<Self> {
        let (outbox, session) = Self::boot(erased_storage(), &config, equipment.kind())?;
        Ok(Self {
            firmware: Firmware::boot(&equipment, config.heartbeat_ms),
            outbox,
            session: Session::new(session),
            link: Link::new(config.broker, wake),
            network_up: true,
            schedule: VecDeque::new(),
            produced: 0,
            published: VecDeque::new(),
            equipment,
            config,
        })
    }

    /// A lift node on a new lift model.
    pub fn lift(config: NodeConfig, params: LiftParams, now_ms: u64, wake: Arc<Notify>) -> Result<Self> {
        params.validate().map_err(|problem| Error::LiftParams {
            device: config.device.clone(),
            problem,
        })?;
        Self::new(config, Equipment::Lift(LiftModel::new(params, now_ms)), wake)
    }

    /// A sterilizer node on a new cabinet model.
    pub fn sterilizer(config: NodeConfig, params: SterilizerParams, now_ms: u64, wake: Arc<Notify>) -> Result<Self> {
        params.validate().map_err(|problem| Error::SterilizerParams {
            device: config.device.clone(),
            problem,
        })?;
        Self::new(
            config,
            Equipment::Sterilizer(SterilizerModel::new(params, now_ms)),
            wake,
        )
    }

    /// What the firmware does at boot: reads its identity from its persistent memory (the
    /// first boot provisions it from `config`, as a board's from its build settings), then
    /// opens its outbox; its session logs in with that identity.
    fn boot(
        mut storage: RamStorage,
        config: &NodeConfig,
        kind: DeviceKind,
    ) -> Result<(Box<NodeOutbox>, SessionConfig)> {
        let ids_error = |problem| Error::NodeIds {
            device: config.device.clone(),
            gateway: config.gateway.clone(),
            problem,
        };
        let id = |s: &str| DeviceId::try_from(s).map_err(|_| ids_error(ConfigError::BadId));
        let factory = NodeIdentity {
            gateway: id(&config.gateway)?,
            device: id(&config.device)?,
            secret: match &config.secret {
                Some(secret) => Some(secret.as_str().try_into().map_err(|_| Error::SecretTooLong {
                    device: config.device.clone(),
                    max: MAX_SECRET,
                })?),
                None => None,
            },
        };
        let identity =
            NodeIdentity::load_or_provision(&mut storage, IDENTITY_OFFSET, || factory).map_err(|e| Error::Outbox {
                device: config.device.clone(),
                problem: OutboxError::Storage(e),
            })?;
        let mut session = SessionConfig::for_identity(&identity, kind).map_err(ids_error)?;
        session.resend_after_ms = config.resend_after_ms;
        Ok((open_outbox(storage, &config.device)?, session))
    }

    pub fn id(&self) -> &str {
        &self.config.device
    }

    pub fn gateway(&self) -> &str {
        &self.config.gateway
    }

    pub fn equipment(&self) -> &Equipment {
        &self.equipment
    }

    pub fn now_ms(&self) -> u64 {
        self.equipment.now_ms()
    }

    pub fn stats(&self) -> NodeStats {
        NodeStats {
            outbox: self.outbox.stats(),
            session: self.session.stats(),
            produced: self.produced,
        }
    }

    /// Schedules `event` for the equipment at device time `at_ms` (events at the same
    /// time keep their order).
    pub fn schedule(&mut self, at_ms: u64, event: EquipmentEvent) {
        let index = self.schedule.partition_point(|(t, _)| *t <= at_ms);
        self.schedule.insert(index, (at_ms, event));
    }

    /// Applies `event` to the equipment now.
    pub fn apply(&mut self, event: &EquipmentEvent) -> Result<()> {
        match (&mut self.equipment, event) {
            (Equipment::Lift(m), EquipmentEvent::Lift(e)) => m.apply(e),
            (Equipment::Sterilizer(m), EquipmentEvent::Sterilizer(e)) => m.apply(e),
            (_, e) => {
                return Err(Error::WrongEquipment {
                    device: self.config.device.clone(),
                    event: e.clone(),
                });
            }
        }
        Ok(())
    }

    /// Runs physics and firmware up to device time `t_ms`: scheduled events at their
    /// times, a firmware sample whenever one is due; what the firmware reports goes into
    /// the outbox with its seq.
    pub fn advance_to(&mut self, t_ms: u64) -> Result<()> {
        loop {
            let poll_at = self.firmware.next_poll_ms().max(self.now_ms());
            let event_at = self.schedule.front().map_or(u64::MAX, |(at, _)| *at);
            if poll_at.min(event_at) > t_ms {
                break;
            }
            if event_at <= poll_at {
                let (at, event) = self.schedule.pop_front().expect("an event is due");
                self.equipment.advance_to(at.max(self.now_ms()));
                self.apply(&event)?;
                continue;
            }
            self.equipment.advance_to(poll_at);
            for message in self.firmware.node().poll(poll_at) {
                if !matches!(message, NodeMessage::Birth(_)) {
                    self.produced += 1;
                }
                self.outbox.push(poll_at, message);
            }
        }
        self.equipment.advance_to(t_ms);
        Ok(())
    }

    /// Does what the session asks at device time `now_ms` until it has nothing more to
    /// do: connect (if the network is up), subscribe, publish the buffer oldest first.
    /// Returns when the session wants to be asked again at the latest.
    pub async fn deliver(&mut self, now_ms: u64) -> u64 {
        self.take_incoming(now_ms);
        loop {
            let outcome = match self.session.next_action(now_ms, &self.outbox) {
                Action::Wait { until_ms } => return until_ms,
                Action::Connect(request) => {
                    if !self.network_up {
                        self.session.disconnected(now_ms);
                        continue;
                    }
                    match self.link.connect(&request).await {
                        Ok(()) => {
                            self.session.connected(now_ms, &mut self.outbox);
                            continue;
                        }
                        Err(e) => Err(e),
                    }
                }
                Action::Subscribe { topic } => self.link.subscribe(topic).await,
                Action::Publish(message) => {
                    let outcome = self.link.publish(&message).await;
                    if outcome.is_ok() {
                        remember(&mut self.published, message.topic, message.payload);
                    }
                    outcome
                }
                // rumqttc keeps the connection alive on its own (wall time).
                Action::Ping => Ok(()),
            };
            match outcome {
                Ok(()) => self.session.sent(now_ms),
                Err(e) => {
                    tracing::debug!(device = %self.config.device, error = %e, "node connection failed");
                    self.link.close();
                    self.session.disconnected(now_ms);
                }
            }
        }
    }

    /// Readings the node published and its gateway acknowledged, oldest first: what a
    /// redelivery sends again.
    pub fn acknowledged_readings(&self) -> impl Iterator<Item = &PublishedReading> {
        let acked = self.acked_seq();
        self.published.iter().filter(move |r| r.seq <= acked)
    }

    /// Hands what arrived (acks) to the session; notices a dropped connection.
    pub fn take_incoming(&mut self, now_ms: u64) {
        for item in self.link.drain() {
            match item {
                Incoming::Message { topic, payload } => {
                    self.session.received(&topic, &payload, now_ms, &mut self.outbox);
                }
                Incoming::Closed => self.session.disconnected(now_ms),
            }
        }
    }

    /// The firmware's outbox: what the node buffered and not yet got acknowledged.
    pub fn outbox(&self) -> &NodeOutbox {
        &self.outbox
    }

    /// Readings waiting for an ack.
    pub fn unacknowledged(&self) -> usize {
        self.outbox.len()
    }

    /// Connected, with readings still waiting for their ack.
    pub fn awaiting_acks(&self) -> bool {
        self.session.is_connected() && !self.outbox.is_empty()
    }

    pub fn is_connected(&self) -> bool {
        self.session.is_connected()
    }

    /// Highest seq the gateway acknowledged.
    pub fn acked_seq(&self) -> u64 {
        self.outbox.stats().acked
    }

    pub fn network_up(&self) -> bool {
        self.network_up
    }

    /// Cuts (or restores) the node's network: an open connection drops at once.
    pub fn set_network(&mut self, up: bool, now_ms: u64) {
        self.network_up = up;
        if !up && self.link.is_open() {
            self.link.close();
            self.session.disconnected(now_ms);
        }
    }

    /// A reset of the node's MCU (watchdog, brown-out): the firmware boots again and
    /// recovers its outbox from storage; the connection drops and is made again.
    pub fn reset(&mut self) -> Result<()> {
        self.link.close();
        let erased = open_outbox(erased_storage(), &self.config.device)?;
        let storage = std::mem::replace(&mut self.outbox, erased).into_storage();
        let (outbox, session) = Self::boot(storage, &self.config, self.equipment.kind())?;
        self.outbox = outbox;
        self.firmware = Firmware::boot(&self.equipment, self.config.heartbeat_ms);
        if let Firmware::Lift(node) = &mut self.firmware
            && let Some(record) = self.outbox.newest_stored(|m| matches!(m, NodeMessage::Lift(_)))
            && let NodeMessage::Lift(status) = record.message
        {
            node.resume_counters(WearCounters::from(&status));
        }
        self.session = Session::new(session);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridwatch_protocol::{EventKind, Motion, NodeEvent};

    const T0: u64 = 1_764_061_200_000;

    fn lift_node() -> SimNode {
        let config = NodeConfig::new("L-1", "gw-1", SocketAddr::from(([127, 0, 0, 1], 9)));
        SimNode::lift(config, LiftParams::default(), T0, Arc::new(Notify::new())).unwrap()
    }

    fn statuses(node: &SimNode) -> Vec<gridwatch_protocol::LiftStatus> {
        node.outbox()
            .records()
            .filter_map(|r| match r.message {
                NodeMessage::Lift(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_firmware_reports_what_the_simulated_lift_does() {
        let mut node = lift_node();
        node.schedule(T0 + 5_000, EquipmentEvent::Lift(LiftEvent::Call { from: 1, to: 6 }));
        node.advance_to(T0 + 60_000).unwrap();
        let seen = statuses(&node);
        assert!(seen.iter().any(|s| s.motion == Motion::Up && !s.door_zone));
        assert!(seen.iter().any(|s| s.occupied), "the passenger was seen in the car");
        let last = seen.last().unwrap();
        assert_eq!((last.floor, last.runs, last.motion), (6, 1, Motion::Stopped));
        assert!(last.door_zone && !last.occupied);
        let seqs: Vec<u64> = node.outbox().records().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "seq from 1, no gaps");
    }

    #[test]
    fn a_reset_keeps_the_buffer_the_seq_and_the_wear_counters() {
        let mut node = lift_node();
        node.schedule(T0 + 5_000, EquipmentEvent::Lift(LiftEvent::Call { from: 1, to: 3 }));
        node.advance_to(T0 + 40_000).unwrap();
        let before = node.stats().outbox;
        node.reset().unwrap();
        assert_eq!(node.stats().outbox.boots, before.boots + 1);
        assert_eq!(node.unacknowledged(), before.len, "the buffer survives in storage");
        node.schedule(T0 + 41_000, EquipmentEvent::Lift(LiftEvent::PowerOff));
        node.advance_to(T0 + 45_000).unwrap();
        let after: Vec<_> = node.outbox().records().filter(|r| r.seq >= before.next_seq).collect();
        assert_eq!(after[0].seq, before.next_seq, "no seq is reused");
        assert!(after.iter().any(|r| r.message
            == NodeMessage::Event(NodeEvent {
                event: EventKind::PowerLost,
                code: 0
            })));
        assert_eq!(statuses(&node).last().unwrap().runs, 1, "wear counters restored");
    }
}
