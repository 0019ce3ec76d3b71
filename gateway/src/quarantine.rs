//! Messages the gateway refuses: counted by reason and appended to
//! `quarantine.jsonl` in the data directory, where an operator can read them.
//!
//! Bounded: each entry keeps at most [`PAYLOAD_BYTES`] of its payload (with the whole
//! length), and the file rotates to `quarantine.jsonl.1` … `.N-1` within a [`Budget`],
//! the oldest file deleted and its entries counted in
//! `gridwatch_gateway_quarantine_dropped_total`. The log line per entry rate-limits itself.
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use gridwatch_protocol::codec::json::Rejection;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// Bytes of a refused payload an entry keeps.
const PAYLOAD_BYTES: usize = 4096;
/// Characters of a topic or detail an entry keeps (MQTT allows 64 KiB topics).
const TEXT_CHARS: usize = 512;

/// How much quarantine the gateway keeps on disk: `files` files (the one written and
/// `files - 1` rotated ones) of at most `file_bytes` each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Budget {
    pub(crate) files: usize,
    pub(crate) file_bytes: u64,
}

impl Default for Budget {
    /// 4 files of 16 MiB: 64 MiB, at least 2,500 of the largest entries.
    fn default() -> Self {
        Self {
            files: 4,
            file_bytes: 16 * 1024 * 1024,
        }
    }
}

pub(crate) struct Quarantine {
    path: PathBuf,
    budget: Budget,
    file: Mutex<Current>,
    log: DefaultDirectRateLimiter,
}

/// The file being written and its length.
struct Current {
    file: std::fs::File,
    bytes: u64,
    /// Entries not logged since the last log line.
    unlogged: u64,
}

#[derive(Serialize)]
struct Entry<'a> {
    at_ms: u64,
    topic: &'a str,
    reason: &'a str,
    detail: &'a str,
    /// The payload's head, lossy where it was not UTF-8.
    payload: std::borrow::Cow<'a, str>,
    payload_bytes: usize,
    payload_truncated: bool,
}

fn head(text: &str, chars: usize) -> &str {
    text.char_indices().nth(chars).map_or(text, |(at, _)| &text[..at])
}

impl Quarantine {
    pub(crate) fn open(dir: &Path) -> Result<Self, crate::GatewayError> {
        Self::open_with(dir, Budget::default())
    }

    pub(crate) fn open_with(dir: &Path, budget: Budget) -> Result<Self, crate::GatewayError> {
        metrics::describe_counter!(
            "gridwatch_gateway_quarantine_dropped_total",
            "Quarantine entries deleted with the oldest quarantine file to keep the gateway's budget"
        );
        let path = dir.join("quarantine.jsonl");
        let failed = |source| crate::GatewayError::Quarantine {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(failed)?;
        let file = open_append(&path).map_err(failed)?;
        let bytes = file.metadata().map_err(failed)?.len();
        Ok(Self {
            budget: Budget {
                files: budget.files.max(1),
                file_bytes: budget.file_bytes,
            },
            file: Mutex::new(Current {
                file,
                bytes,
                unlogged: 0,
            }),
            log: RateLimiter::direct(Quota::with_period(Duration::from_secs(1)).expect("non-zero")),
            path,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn keep(&self, topic: &str, payload: &[u8], why: &Rejection) {
        metrics::counter!("gridwatch_gateway_rejected_total", "reason" => why.reason).increment(1);
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let kept = &payload[..payload.len().min(PAYLOAD_BYTES)];
        let entry = Entry {
            at_ms: at_ms as u64,
            topic: head(topic, TEXT_CHARS),
            reason: why.reason,
            detail: head(&why.detail, TEXT_CHARS),
            payload: String::from_utf8_lossy(kept),
            payload_bytes: payload.len(),
            payload_truncated: kept.len() < payload.len(),
        };
        let mut line = serde_json::to_vec(&entry).expect("quarantine entries serialize");
        line.push(b'\n');
        let mut current = self.file.lock().expect("quarantine lock");
        current.unlogged += 1;
        if self.log.check().is_ok() {
            tracing::warn!(
                topic = entry.topic,
                reason = why.reason,
                detail = entry.detail,
                quarantined = current.unlogged,
                path = %self.path.display(),
                "message quarantined (count since the last such line)"
            );
            current.unlogged = 0;
        }
        if current.bytes > 0
            && current.bytes + line.len() as u64 > self.budget.file_bytes
            && let Err(e) = self.rotate(&mut current)
        {
            tracing::error!(path = %self.path.display(), error = %e, "cannot rotate quarantine");
        }
        match current.file.write_all(&line) {
            Ok(()) => current.bytes += line.len() as u64,
            Err(e) => tracing::error!(path = %self.path.display(), error = %e, "cannot write quarantine"),
        }
    }

    /// `quarantine.jsonl.{files-1}` is deleted (its entries counted as dropped), every
    /// other rotated file moves up one, the current file becomes `.1`, and a new one starts.
    fn rotate(&self, current: &mut Current) -> std::io::Result<()> {
        let rotated = |n: usize| PathBuf::from(format!("{}.{n}", self.path.display()));
        let last = self.budget.files - 1;
        let oldest = if last == 0 { self.path.clone() } else { rotated(last) };
        match std::fs::read(&oldest) {
            Ok(text) => {
                let dropped = text.iter().filter(|&&b| b == b'\n').count() as u64;
                metrics::counter!("gridwatch_gateway_quarantine_dropped_total").increment(dropped);
                std::fs::remove_file(&oldest)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        for n in (1..last).rev() {
            match std::fs::rename(rotated(n), rotated(n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        if last > 0 {
            std::fs::rename(&self.path, rotated(1))?;
        }
        current.file = open_append(&self.path)?;
        current.bytes = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().create(true).append(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_disk(dir: &Path) -> (Vec<String>, u64) {
        let mut names = Vec::new();
        let mut bytes = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            names.push(entry.file_name().to_string_lossy().into_owned());
            bytes += entry.metadata().unwrap().len();
        }
        names.sort();
        (names, bytes)
    }

    #[test]
    fn rotation_keeps_the_budget_and_the_newest_entries() {
        let dir = tempfile::tempdir().unwrap();
        let budget = Budget {
            files: 3,
            file_bytes: 20_000,
        };
        let q = Quarantine::open_with(dir.path(), budget).unwrap();
        let why = Rejection {
            reason: "malformed",
            detail: "x".repeat(100_000),
        };
        // 1 MiB payloads, as large as the broker lets through.
        let junk = vec![b'j'; 1024 * 1024];
        for i in 0..200 {
            q.keep(&format!("gw/g/dev/D-{i}/lift"), &junk, &why);
        }
        let (names, bytes) = on_disk(dir.path());
        assert_eq!(names, ["quarantine.jsonl", "quarantine.jsonl.1", "quarantine.jsonl.2"]);
        assert!(bytes <= 3 * 20_000, "{bytes} bytes on disk");
        // The newest entry is in the current file, bounded, with the payload's whole length.
        let text = std::fs::read_to_string(q.path()).unwrap();
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last["topic"], "gw/g/dev/D-199/lift");
        assert_eq!(last["payload_bytes"], 1024 * 1024);
        assert_eq!(last["payload_truncated"], true);
        assert_eq!(last["payload"].as_str().unwrap().len(), PAYLOAD_BYTES);
        assert_eq!(last["detail"].as_str().unwrap().len(), TEXT_CHARS);
    }

    #[test]
    fn one_file_budget_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let q = Quarantine::open_with(
            dir.path(),
            Budget {
                files: 1,
                file_bytes: 10_000,
            },
        )
        .unwrap();
        let why = Rejection {
            reason: "malformed",
            detail: String::new(),
        };
        for _ in 0..100 {
            q.keep("gw/g/dev/D/lift", &[b'{'; 2000], &why);
        }
        let (names, bytes) = on_disk(dir.path());
        assert_eq!(names, ["quarantine.jsonl"]);
        assert!(bytes <= 10_000, "{bytes}");
    }
}
