//! Readings in PostgreSQL's binary COPY format, the fastest way in: no text
//! escaping on our side, no text parsing of numbers and times on the server's.
//!
//! Format (PostgreSQL docs, "COPY", binary format): an 11-byte signature, a flags
//! word and a header-extension length, then per row a 16-bit field count and each
//! field as a 32-bit length followed by its bytes in the type's binary send
//! format, then a 16-bit -1 trailer. `bigint` is 8 bytes big-endian; `timestamptz`
//! is microseconds since 2000-01-01 UTC as 8 bytes; `text` is its UTF-8 bytes.
use crate::model::Accepted;

/// The columns [`CopyRows`] writes, in order. `received_at` is sent rather than
/// left to its default: the default's numeric arithmetic costs per row.
pub const READING_COLUMNS: &str = "device_id, seq, ts, kind, gateway, body, received_at";

const HEADER_LEN: usize = 19;
/// The start of a binary COPY stream: signature, no flags, no header extension.
pub const HEADER: [u8; HEADER_LEN] = *b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The end of a binary COPY stream.
pub const TRAILER: [u8; 2] = (-1i16).to_be_bytes();
/// 2000-01-01T00:00:00Z in ms since the Unix epoch: PostgreSQL's time origin.
const PG_EPOCH_MS: i64 = 946_684_800_000;

/// A COPY payload being built, one reading per row.
pub struct CopyRows {
    buf: Vec<u8>,
    rows: usize,
    /// Where each row's reading JSON is in `buf`.
    readings: Vec<(u32, u32)>,
}

impl CopyRows {
    /// An empty payload with room for about `rows` readings.
    pub fn with_capacity(rows: usize) -> Self {
        let mut buf = Vec::with_capacity(HEADER_LEN + rows * 320 + 2);
        buf.extend_from_slice(&HEADER);
        Self {
            buf,
            rows: 0,
            readings: Vec::with_capacity(rows),
        }
    }

    /// Appends one reading, received at `received_at` (ms, ingest's clock).
    /// Callers have checked it is storable (seq and ts fit in i64).
    pub fn push(&mut self, a: &Accepted, received_at: i64) {
        let r = &a.reading;
        self.buf.extend_from_slice(&7i16.to_be_bytes());
        self.text(r.device());
        self.int8(r.seq() as i64);
        self.int8((r.ts() as i64 - PG_EPOCH_MS) * 1000);
        self.text(r.kind().as_str());
        self.text(&a.gateway);
        // The body as JSON straight into the buffer, its length patched in after.
        let at = self.buf.len();
        self.buf.extend_from_slice(&0i32.to_be_bytes());
        serde_json::to_writer(&mut self.buf, r).expect("readings always serialize");
        let len = (self.buf.len() - at - 4) as i32;
        self.buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        self.readings.push(((at + 4) as u32, self.buf.len() as u32));
        self.int8(received_at);
        self.rows += 1;
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Where row `row`'s reading JSON is in the payload [`finish`](Self::finish) returns.
    pub fn reading_range(&self, row: usize) -> std::ops::Range<usize> {
        let (start, end) = self.readings[row];
        start as usize..end as usize
    }

    /// The complete payload, trailer included.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&TRAILER);
        self.buf
    }

    /// The rows alone, to send as one part of a longer COPY stream that starts
    /// with [`HEADER`] and ends with [`TRAILER`].
    pub fn into_rows(mut self) -> Vec<u8> {
        self.buf.drain(..HEADER_LEN);
        self.buf
    }

    fn text(&mut self, s: &str) {
        self.buf.extend_from_slice(&(s.len() as i32).to_be_bytes());
        self.buf.extend_from_slice(s.as_bytes());
    }

    fn int8(&mut self, v: i64) {
        self.buf.extend_from_slice(&8i32.to_be_bytes());
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridwatch_protocol::batch::Reading;
    use gridwatch_protocol::{DeviceId, Envelope, EventKind, NodeEvent};

    #[test]
    fn encodes_header_rows_and_trailer() {
        let reading = Reading::Event(Envelope::new(
            DeviceId::try_from("L-1").unwrap(),
            7,
            PG_EPOCH_MS as u64 + 1,
            NodeEvent {
                event: EventKind::AlarmButton,
                code: 0,
            },
        ));
        let mut rows = CopyRows::with_capacity(1);
        rows.push(
            &Accepted {
                gateway: "gw1".into(),
                reading,
            },
            42,
        );
        assert_eq!(rows.rows(), 1);
        let buf = rows.finish();
        assert_eq!(&buf[..11], b"PGCOPY\n\xff\r\n\0");
        assert_eq!(&buf[11..19], &[0; 8], "no flags, no header extension");
        let row = &buf[19..];
        assert_eq!(&row[..2], &7i16.to_be_bytes());
        assert_eq!(&row[2..6], &3i32.to_be_bytes());
        assert_eq!(&row[6..9], b"L-1");
        assert_eq!(&row[9..13], &8i32.to_be_bytes());
        assert_eq!(&row[13..21], &7i64.to_be_bytes());
        assert_eq!(&row[25..33], &1000i64.to_be_bytes(), "1 ms after 2000-01-01 is 1000 µs");
        assert_eq!(&buf[buf.len() - 2..], &(-1i16).to_be_bytes());
        let body_at = buf.windows(8).position(|w| w == b"{\"kind\":").unwrap();
        let len = i32::from_be_bytes(buf[body_at - 4..body_at].try_into().unwrap()) as usize;
        let body: serde_json::Value = serde_json::from_slice(&buf[body_at..body_at + len]).unwrap();
        assert_eq!(body["kind"], "event");
        assert_eq!(body["seq"], 7);
        assert_eq!(
            &buf[body_at + len + 4..body_at + len + 12],
            &42i64.to_be_bytes(),
            "received_at last"
        );
    }
}
