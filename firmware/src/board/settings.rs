//! Per-device settings, fixed at build time from environment variables so one source
//! tree builds every node: `GRIDWATCH_GATEWAY`, `GRIDWATCH_DEVICE`,
//! `GRIDWATCH_BROKER` (a.b.c.d:port), `GRIDWATCH_NTP` (a.b.c.d) and
//! `GRIDWATCH_MQTT_SECRET`. The identity (gateway, device, secret) is only the factory
//! value: the first boot stores it in the FRAM and every later boot uses what is stored
//! there ([`crate::identity`]).
use crate::identity::NodeIdentity;

pub const GATEWAY: &str = match option_env!("GRIDWATCH_GATEWAY") {
    Some(id) => id,
    None => "gw-01",
};

pub const BROKER: ([u8; 4], u16) = match option_env!("GRIDWATCH_BROKER") {
    Some(endpoint) => parse_endpoint(endpoint),
    None => ([192, 168, 1, 10], 1883),
};

pub const NTP_SERVER: [u8; 4] = match option_env!("GRIDWATCH_NTP") {
    Some(address) => parse_endpoint(address).0,
    None => [192, 168, 1, 10],
};

/// The node's MQTT secret (`gridwatch devices add ID --role node --gateway GW` prints it);
/// the node logs in with its device id as username and this as password on every
/// connect. Without it the node connects anonymously, which only an open broker accepts.
pub const MQTT_SECRET: Option<&str> = option_env!("GRIDWATCH_MQTT_SECRET");

/// Where the identity block lives in the FRAM: after an outbox of `outbox_capacity` records.
pub const fn identity_offset(outbox_capacity: usize) -> u32 {
    crate::storage::storage_bytes(outbox_capacity) as u32
}

/// The identity a node is provisioned with at its first boot.
pub fn factory_identity(fallback_device: &'static str) -> NodeIdentity {
    let id = |s: &str| {
        s.try_into()
            .expect("GRIDWATCH_GATEWAY and GRIDWATCH_DEVICE are valid ids")
    };
    NodeIdentity {
        gateway: id(GATEWAY),
        device: id(device_id(fallback_device)),
        secret: MQTT_SECRET.map(|s| s.try_into().expect("GRIDWATCH_MQTT_SECRET is at most 64 characters")),
    }
}

/// The device id, or `fallback` (per node kind) when not set.
pub const fn device_id(fallback: &'static str) -> &'static str {
    match option_env!("GRIDWATCH_DEVICE") {
        Some(id) => id,
        None => fallback,
    }
}

/// Parses `a.b.c.d` or `a.b.c.d:port` at compile time (port 1883, the gateway's node
/// listener, when absent); a malformed value fails the build.
const fn parse_endpoint(s: &str) -> ([u8; 4], u16) {
    let bytes = s.as_bytes();
    let (mut octets, mut octet, mut i, mut value) = ([0u8; 4], 0, 0, 0u32);
    let mut port: Option<u32> = None;
    while i < bytes.len() {
        let b = bytes[i];
        match (b, port) {
            (b'0'..=b'9', Some(p)) => port = Some(p * 10 + (b - b'0') as u32),
            (b'0'..=b'9', None) => value = value * 10 + (b - b'0') as u32,
            (b'.', None) if octet < 3 && value <= 255 => {
                octets[octet] = value as u8;
                octet += 1;
                value = 0;
            }
            (b':', None) if octet == 3 && value <= 255 => port = Some(0),
            _ => panic!("GRIDWATCH_BROKER / GRIDWATCH_NTP must look like 192.168.1.10:1883"),
        }
        i += 1;
    }
    assert!(octet == 3 && value <= 255, "an IPv4 address has four octets");
    octets[3] = value as u8;
    let port = match port {
        Some(p) if p > 0 && p <= 65535 => p as u16,
        Some(_) => panic!("port out of range"),
        None => 1883,
    };
    (octets, port)
}
