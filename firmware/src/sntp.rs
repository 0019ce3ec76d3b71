//! The two SNTP (RFC 4330) packets a node needs to set its clock to Unix time: a
//! client request and the server's transmit timestamp. Network I/O is the caller's.

/// Seconds from 1900-01-01 (NTP era 0) to 1970-01-01.
const NTP_TO_UNIX_S: u64 = 2_208_988_800;
pub const PACKET_BYTES: usize = 48;

/// A client request: LI 0, version 4, mode 3 (client); everything else zero.
pub const fn request() -> [u8; PACKET_BYTES] {
    let mut packet = [0u8; PACKET_BYTES];
    packet[0] = 0b00_100_011;
    packet
}

/// The server's transmit time in ms since the Unix epoch, if `reply` is a usable
/// server answer (mode 4, a synchronised stratum 1-15, non-zero timestamp).
pub fn unix_ms_from_reply(reply: &[u8]) -> Option<u64> {
    let reply: &[u8; PACKET_BYTES] = reply.get(..PACKET_BYTES)?.try_into().ok()?;
    let mode = reply[0] & 0b111;
    let leap_unsynchronised = reply[0] >> 6 == 3;
    let stratum = reply[1];
    if mode != 4 || leap_unsynchronised || !(1..=15).contains(&stratum) {
        return None;
    }
    let seconds = u64::from(u32::from_be_bytes([reply[40], reply[41], reply[42], reply[43]]));
    let fraction = u64::from(u32::from_be_bytes([reply[44], reply[45], reply[46], reply[47]]));
    // Era 0 ends in 2036; seconds below 2020 in era 0 therefore mean era 1.
    let seconds = if seconds < 3_786_825_600 {
        seconds + (1 << 32)
    } else {
        seconds
    };
    Some((seconds - NTP_TO_UNIX_S) * 1000 + ((fraction * 1000) >> 32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(seconds: u32, fraction: u32) -> [u8; PACKET_BYTES] {
        let mut r = [0u8; PACKET_BYTES];
        r[0] = 0b00_100_100;
        r[1] = 2;
        r[40..44].copy_from_slice(&seconds.to_be_bytes());
        r[44..48].copy_from_slice(&fraction.to_be_bytes());
        r
    }

    #[test]
    fn converts_the_transmit_timestamp() {
        // 2025-11-25T09:00:00Z = 1_764_061_200 s Unix.
        let ntp_s = (1_764_061_200 + NTP_TO_UNIX_S) as u32;
        assert_eq!(unix_ms_from_reply(&reply(ntp_s, 1 << 31)), Some(1_764_061_200_500));
        assert_eq!(request()[0], 0x23);
    }

    #[test]
    fn handles_the_2036_era_rollover() {
        // 2040-01-01T00:00:00Z = 2_208_988_800 s Unix, which is past 2^32 NTP seconds.
        let ntp_s = (2_208_988_800 + NTP_TO_UNIX_S - (1 << 32)) as u32;
        assert_eq!(unix_ms_from_reply(&reply(ntp_s, 0)), Some(2_208_988_800_000));
    }

    #[test]
    fn rejects_unsynchronised_or_short_replies() {
        let mut r = reply(3_900_000_000, 0);
        r[1] = 0; // kiss-of-death
        assert_eq!(unix_ms_from_reply(&r), None);
        assert_eq!(unix_ms_from_reply(&r[..40]), None);
        let mut r = reply(3_900_000_000, 0);
        r[0] = 0b11_100_100;
        assert_eq!(unix_ms_from_reply(&r), None);
    }
}
