//! Per-device settings, fixed at build time from environment variables so one source
//! tree builds every node: `GRIDWATCH_GATEWAY`, `GRIDWATCH_DEVICE`,
//! `GRIDWATCH_BROKER` (a.b.c.d:port) and `GRIDWATCH_NTP` (a.b.c.d).

pub const GATEWAY: &str = match option_env!("GRIDWATCH_GATEWAY") {
    Some(id) => id,
    None => "gw-01",
};

pub const BROKER: ([u8; 4], u16) = match option_env!("GRIDWATCH_BROKER") {
    Some(endpoint) => parse_endpoint(endpoint),
    None => ([192, 168, 1, 10], 1884),
};

pub const NTP_SERVER: [u8; 4] = match option_env!("GRIDWATCH_NTP") {
    Some(address) => parse_endpoint(address).0,
    None => [192, 168, 1, 10],
};

/// The device id, or `fallback` (per node kind) when not set.
pub const fn device_id(fallback: &'static str) -> &'static str {
    match option_env!("GRIDWATCH_DEVICE") {
        Some(id) => id,
        None => fallback,
    }
}

/// Parses `a.b.c.d` or `a.b.c.d:port` at compile time (port 1884 when absent); a
/// malformed value fails the build.
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
            _ => panic!("GRIDWATCH_BROKER / GRIDWATCH_NTP must look like 192.168.1.10:1884"),
        }
        i += 1;
    }
    assert!(octet == 3 && value <= 255, "an IPv4 address has four octets");
    octets[3] = value as u8;
    let port = match port {
        Some(p) if p > 0 && p <= 65535 => p as u16,
        Some(_) => panic!("port out of range"),
        None => 1884,
    };
    (octets, port)
}
