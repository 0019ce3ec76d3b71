//! Messages the gateway refuses: counted by reason and appended to
//! `quarantine.jsonl` in the data directory, where an operator can read them.
use gridwatch_protocol::codec::json::Rejection;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub(crate) struct Quarantine {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

#[derive(Serialize)]
struct Entry<'a> {
    at_ms: u64,
    topic: &'a str,
    reason: &'a str,
    detail: &'a str,
    payload: std::borrow::Cow<'a, str>,
}

impl Quarantine {
    pub(crate) fn open(dir: &Path) -> Result<Self, crate::GatewayError> {
        let path = dir.join("quarantine.jsonl");
        let failed = |source| crate::GatewayError::Quarantine {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(failed)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(failed)?;
        Ok(Self {
            path,
            file: Mutex::new(file),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn keep(&self, topic: &str, payload: &[u8], why: &Rejection) {
        metrics::counter!("gridwatch_gateway_rejected_total", "reason" => why.reason).increment(1);
        tracing::warn!(topic, reason = why.reason, detail = %why.detail, "message quarantined");
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let entry = Entry {
            at_ms: at_ms as u64,
            topic,
            reason: why.reason,
            detail: &why.detail,
            payload: String::from_utf8_lossy(payload),
        };
        let mut line = serde_json::to_vec(&entry).expect("quarantine entries serialize");
        line.push(b'\n');
        if let Err(e) = self.file.lock().expect("quarantine lock").write_all(&line) {
            tracing::error!(path = %self.path.display(), error = %e, "cannot write quarantine");
        }
    }
}
