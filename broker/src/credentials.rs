//! Who may connect: the credentials file and the identities it holds.
//!
//! The file is TOML, like the project's other operator files (users, alert
//! config): readable and diffable by hand, one `[[identity]]` table per device,
//! gateway or service:
//!
//! ```toml
//! [[identity]]
//! id = "L-0001"
//! role = "node"              # node | gateway | service | load
//! gateway = "gw-01"          # nodes and load; absent for a node that talks to ingest directly
//! prefix = "ld"              # load only: the device and gateway ids it speaks for
//! secret_sha256 = "…64 hex digits…"
//! created_ms = 1764061200000 # unix ms
//! revoked = false
//! ```
//!
//! Only the SHA-256 of each secret is stored. Secrets are generated here, 256
//! random bits each, so a single fast hash is sound: nobody can guess or
//! brute-force a preimage of 2^256. Slow password hashes (argon2) exist for
//! human-chosen passwords, which these are not, and would cost a slow hash on
//! every connect. For the same reason the digests are compared with `==`: the
//! time it takes leaks (at most) a prefix of the digest, never the secret.
use gridwatch_secrets::FileStamp;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// What an identity is; its topics follow from it ([`crate::acl`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A sensor node: publishes its own readings, reads its own acks.
    Node,
    /// An edge gateway: publishes its own batches, reads its own batch acks.
    Gateway,
    /// A trusted reader: may subscribe under `gw/`, publishes nothing.
    Service,
    /// A load generator or simulated fleet (`gridwatch sim load`, the benchmark, the
    /// fault suite): one connection speaking for every node and gateway whose id starts
    /// with its `prefix`, so that thousands of simulated devices need no identity each.
    Load,
    /// A maintenance firm's system: reads its own firm's feed topic, publishes nothing.
    Firm,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Gateway => "gateway",
            Role::Service => "service",
            Role::Load => "load",
            Role::Firm => "firm",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "node" => Ok(Role::Node),
            "gateway" => Ok(Role::Gateway),
            "service" => Ok(Role::Service),
            "load" => Ok(Role::Load),
            "firm" => Ok(Role::Firm),
            other => Err(format!("role {other:?}: expected node, gateway, service, load or firm")),
        }
    }
}

/// One identity of the credentials file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub id: String,
    pub role: Role,
    /// The gateway a node (or a load's simulated nodes) belongs to; none for a direct node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Load only: the start of every device and gateway id it may speak for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Firm only: the firm (the register's 维保单位编码) whose feed topic it reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firm: Option<String>,
    /// SHA-256 of the secret, 64 lowercase hex digits.
    pub secret_sha256: String,
    /// When it was provisioned, unix ms.
    pub created_ms: u64,
    #[serde(default)]
    pub revoked: bool,
}

impl Identity {
    fn accepts(&self, secret: &str) -> bool {
        !self.revoked && digest(secret) == self.secret_sha256
    }

    /// Whether a load identity speaks for the device or gateway `id`.
    pub fn covers(&self, id: &str) -> bool {
        self.role == Role::Load && self.prefix.as_deref().is_some_and(|p| id.starts_with(p))
    }

    /// Whether a load identity may send readings of its devices through `gateway`:
    /// its own gateway, or a gateway it plays itself.
    pub fn load_through(&self, gateway: &str) -> bool {
        self.role == Role::Load && (self.gateway.as_deref() == Some(gateway) || self.covers(gateway))
    }
}

/// The credentials file's contents, for the commands that provision identities.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsFile {
    #[serde(default)]
    pub identity: Vec<Identity>,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("reading credentials file {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("credentials file {}: {detail}", path.display())]
    Invalid { path: PathBuf, detail: String },
    #[error("writing credentials file {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("identity {0:?} already exists (revoke it, or pick another id)")]
    Exists(String),
    #[error("no identity {0:?}")]
    Unknown(String),
    #[error("{0}")]
    Bad(String),
    #[error("no randomness from the operating system: {0}")]
    Random(String),
}

/// Ids are topic segments: 1-32 of A-Z a-z 0-9 - _ . (as device and gateway ids).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Which roles carry a gateway and a prefix.
fn check_role_fields(role: Role, gateway: Option<&str>, prefix: Option<&str>) -> Result<(), String> {
    if let Some(gw) = gateway {
        if !matches!(role, Role::Node | Role::Load) {
            return Err("only nodes and load identities belong to a gateway".into());
        }
        if !valid_id(gw) {
            return Err(format!("gateway {gw:?} is not a valid id"));
        }
    }
    match (role, prefix) {
        (Role::Load, Some(p)) if valid_id(p) => Ok(()),
        (Role::Load, Some(p)) => Err(format!("prefix {p:?} must be 1-32 of A-Z a-z 0-9 - _ .")),
        (Role::Load, None) => Err("a load identity needs a prefix (the ids it speaks for)".into()),
        (_, Some(_)) => Err("only load identities have a prefix".into()),
        (_, None) => Ok(()),
    }
}

/// A firm identity names its firm, a topic segment; no other role has one.
fn check_firm(role: Role, firm: Option<&str>) -> Result<(), String> {
    match (role, firm) {
        (Role::Firm, Some(f)) if valid_id(f) => Ok(()),
        (Role::Firm, Some(f)) => Err(format!("firm {f:?} must be 1-32 of A-Z a-z 0-9 - _ .")),
        (Role::Firm, None) => Err("a firm identity needs its firm (--firm CODE)".into()),
        (_, Some(_)) => Err("only firm identities have a firm".into()),
        (_, None) => Ok(()),
    }
}

pub use gridwatch_secrets::digest;

/// A new secret: 256 bits from the operating system, as 64 hex digits (safe in URLs).
pub fn new_secret() -> Result<String, CredentialsError> {
    gridwatch_secrets::new_secret().map_err(|e| CredentialsError::Random(e.to_string()))
}

impl CredentialsFile {
    /// Reads `path`; a missing file is an empty one (the first `devices add` creates it).
    pub fn load_or_empty(path: &Path) -> Result<Self, CredentialsError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(CredentialsError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    fn parse(path: &Path, text: &str) -> Result<Self, CredentialsError> {
        let invalid = |detail: String| CredentialsError::Invalid {
            path: path.to_path_buf(),
            detail,
        };
        let file: CredentialsFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut seen = std::collections::HashSet::new();
        for (i, identity) in file.identity.iter().enumerate() {
            let at = format!("identity[{i}] ({})", identity.id);
            if !valid_id(&identity.id) {
                return Err(invalid(format!("{at}: id must be 1-32 of A-Z a-z 0-9 - _ .")));
            }
            if !seen.insert(identity.id.as_str()) {
                return Err(invalid(format!("{at}: the id appears twice")));
            }
            let hex = identity.secret_sha256.len() == 64
                && identity
                    .secret_sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !hex {
                return Err(invalid(format!("{at}: secret_sha256 must be 64 lowercase hex digits")));
            }
            check_role_fields(identity.role, identity.gateway.as_deref(), identity.prefix.as_deref())
                .and_then(|()| check_firm(identity.role, identity.firm.as_deref()))
                .map_err(|detail| invalid(format!("{at}: {detail}")))?;
        }
        Ok(file)
    }

    /// Writes the file atomically: a temporary file beside it, synced, then renamed
    /// over it, so a broker reading it never sees half a file.
    pub fn save(&self, path: &Path) -> Result<(), CredentialsError> {
        let write = |source| CredentialsError::Write {
            path: path.to_path_buf(),
            source,
        };
        let text = toml::to_string(self).map_err(|e| CredentialsError::Bad(e.to_string()))?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(write)?;
        let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(write)?;
        std::io::Write::write_all(&mut temp, text.as_bytes()).map_err(write)?;
        temp.as_file().sync_all().map_err(write)?;
        temp.persist(path).map_err(|e| write(e.error))?;
        Ok(())
    }

    /// Adds an identity and returns its secret, the only time it is ever shown.
    pub fn add(
        &mut self,
        id: &str,
        role: Role,
        gateway: Option<&str>,
        now_ms: u64,
    ) -> Result<String, CredentialsError> {
        self.add_with_prefix(id, role, gateway, None, now_ms)
    }

    /// [`CredentialsFile::add`] for any role, a load identity with its `prefix`.
    pub fn add_with_prefix(
        &mut self,
        id: &str,
        role: Role,
        gateway: Option<&str>,
        prefix: Option<&str>,
        now_ms: u64,
    ) -> Result<String, CredentialsError> {
        self.add_full(id, role, gateway, prefix, None, now_ms)
    }

    /// [`CredentialsFile::add`] for a firm identity: it reads `feed/firm/{firm}` only.
    pub fn add_firm(&mut self, id: &str, firm: &str, now_ms: u64) -> Result<String, CredentialsError> {
        self.add_full(id, Role::Firm, None, None, Some(firm), now_ms)
    }

    fn add_full(
        &mut self,
        id: &str,
        role: Role,
        gateway: Option<&str>,
        prefix: Option<&str>,
        firm: Option<&str>,
        now_ms: u64,
    ) -> Result<String, CredentialsError> {
        if !valid_id(id) {
            return Err(CredentialsError::Bad(format!(
                "id {id:?} must be 1-32 of A-Z a-z 0-9 - _ ."
            )));
        }
        check_role_fields(role, gateway, prefix).map_err(CredentialsError::Bad)?;
        check_firm(role, firm).map_err(CredentialsError::Bad)?;
        if self.identity.iter().any(|i| i.id == id) {
            return Err(CredentialsError::Exists(id.to_string()));
        }
        let secret = new_secret()?;
        self.identity.push(Identity {
            id: id.to_string(),
            role,
            gateway: gateway.map(str::to_string),
            prefix: prefix.map(str::to_string),
            firm: firm.map(str::to_string),
            secret_sha256: digest(&secret),
            created_ms: now_ms,
            revoked: false,
        });
        Ok(secret)
    }

    /// Marks an identity revoked: brokers refuse it from their next look at the file
    /// and close its open connections.
    pub fn revoke(&mut self, id: &str) -> Result<(), CredentialsError> {
        let identity = self
            .identity
            .iter_mut()
            .find(|i| i.id == id)
            .ok_or_else(|| CredentialsError::Unknown(id.to_string()))?;
        identity.revoked = true;
        Ok(())
    }
}

/// Why a login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown id, wrong secret, revoked, or no credentials at all.
    BadCredentials,
    /// A valid identity that may not use this broker.
    NotAuthorized,
}

/// A credentials file as the brokers and ingest use it: read at start, read again
/// whenever it changes ([`Credentials::refresh`]), so provisioning and revocation
/// need no restart.
#[derive(Debug)]
pub struct Credentials {
    path: PathBuf,
    state: RwLock<State>,
}

#[derive(Debug)]
struct State {
    stamp: FileStamp,
    by_id: HashMap<String, Identity>,
    /// The unrevoked load identities, for devices that have no identity of their own.
    loads: Vec<Identity>,
}

impl Credentials {
    /// Reads `path`, which must exist and be valid.
    pub fn open(path: &Path) -> Result<Self, CredentialsError> {
        Ok(Self {
            path: path.to_path_buf(),
            state: RwLock::new(Self::read(path)?),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(path: &Path) -> Result<State, CredentialsError> {
        let read = |source| CredentialsError::Read {
            path: path.to_path_buf(),
            source,
        };
        let before = FileStamp::of(path).map_err(read)?;
        let text = std::fs::read_to_string(path).map_err(read)?;
        let file = CredentialsFile::parse(path, &text)?;
        let loads = file
            .identity
            .iter()
            .filter(|i| i.role == Role::Load && !i.revoked)
            .cloned()
            .collect();
        let by_id = file.identity.into_iter().map(|i| (i.id.clone(), i)).collect();
        Ok(State {
            stamp: before,
            by_id,
            loads,
        })
    }

    /// Reads the file again if it changed since the last read; `Ok(true)` when it did.
    /// A file that became unreadable or invalid keeps the identities last read (and
    /// is an error, for the caller to log): a half-edited file must not lock
    /// everyone out or let anyone in.
    pub fn refresh(&self) -> Result<bool, CredentialsError> {
        let now = FileStamp::of(&self.path).map_err(|source| CredentialsError::Read {
            path: self.path.clone(),
            source,
        })?;
        if now == self.state.read().expect("credentials lock").stamp {
            return Ok(false);
        }
        let fresh = Self::read(&self.path)?;
        *self.state.write().expect("credentials lock") = fresh;
        Ok(true)
    }

    /// The identity `id` if `secret` is its secret and it is not revoked.
    pub fn authenticate(&self, id: &str, secret: &str) -> Result<Identity, Refusal> {
        let state = self.state.read().expect("credentials lock");
        match state.by_id.get(id) {
            Some(identity) if identity.accepts(secret) => Ok(identity.clone()),
            _ => Err(Refusal::BadCredentials),
        }
    }

    /// The identity `id` as currently provisioned (revoked ones included).
    pub fn identity(&self, id: &str) -> Option<Identity> {
        self.state.read().expect("credentials lock").by_id.get(id).cloned()
    }

    /// Whether `id` is still a valid, unrevoked identity with the same secret as
    /// `was` (a re-provisioned identity counts as a different one).
    pub fn still_valid(&self, was: &Identity) -> bool {
        self.state
            .read()
            .expect("credentials lock")
            .by_id
            .get(&was.id)
            .is_some_and(|now| !now.revoked && now.secret_sha256 == was.secret_sha256 && now.role == was.role)
    }

    /// Where `device` may send readings from, for the membership check of batches.
    pub fn membership(&self, device: &str, gateway: &str) -> Membership {
        let state = self.state.read().expect("credentials lock");
        match state.by_id.get(device) {
            Some(i) if i.role == Role::Node && !i.revoked => {
                if i.gateway.as_deref() == Some(gateway) {
                    Membership::Member
                } else {
                    Membership::WrongGateway
                }
            }
            _ => {
                let loads = state.loads.iter().filter(|l| l.covers(device));
                match loads.map(|l| l.load_through(gateway)).reduce(|a, b| a || b) {
                    Some(true) => Membership::Member,
                    Some(false) => Membership::WrongGateway,
                    None => Membership::UnknownDevice,
                }
            }
        }
    }
}

/// Whether a device belongs to a gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    Member,
    /// A provisioned node of another gateway (or a direct node).
    WrongGateway,
    /// Not a provisioned, unrevoked node.
    UnknownDevice,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provisioned_secrets_authenticate_and_revoked_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.toml");
        let mut file = CredentialsFile::load_or_empty(&path).unwrap();
        let gw = file.add("gw-1", Role::Gateway, None, 1).unwrap();
        let node = file.add("L-1", Role::Node, Some("gw-1"), 2).unwrap();
        assert_eq!(gw.len(), 64);
        assert_ne!(gw, node);
        assert!(matches!(
            file.add("L-1", Role::Node, None, 3),
            Err(CredentialsError::Exists(_))
        ));
        file.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&gw), "the secret itself is never stored");

        let credentials = Credentials::open(&path).unwrap();
        assert_eq!(
            credentials.authenticate("L-1", &node).unwrap().gateway.as_deref(),
            Some("gw-1")
        );
        assert_eq!(credentials.authenticate("L-1", &gw), Err(Refusal::BadCredentials));
        assert_eq!(credentials.authenticate("nobody", &gw), Err(Refusal::BadCredentials));
        assert_eq!(credentials.membership("L-1", "gw-1"), Membership::Member);
        assert_eq!(credentials.membership("L-1", "gw-2"), Membership::WrongGateway);
        assert_eq!(credentials.membership("L-2", "gw-1"), Membership::UnknownDevice);

        let mut file = CredentialsFile::load_or_empty(&path).unwrap();
        file.revoke("L-1").unwrap();
        file.save(&path).unwrap();
        assert!(credentials.refresh().unwrap());
        assert_eq!(credentials.authenticate("L-1", &node), Err(Refusal::BadCredentials));
        assert!(!credentials.refresh().unwrap(), "unchanged since the last read");
    }

    #[test]
    fn a_load_identity_speaks_for_its_prefix_through_its_gateways_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.toml");
        let mut file = CredentialsFile::default();
        file.add_with_prefix("bench", Role::Load, Some("gw-1"), Some("ld"), 1)
            .unwrap();
        file.add("ld-real", Role::Node, Some("gw-2"), 1).unwrap();
        for (role, gateway, prefix) in [
            (Role::Load, None, None),
            (Role::Node, None, Some("ld")),
            (Role::Load, None, Some("l/#")),
            (Role::Service, Some("gw-1"), None),
        ] {
            assert!(matches!(
                file.add_with_prefix("x", role, gateway, prefix, 1),
                Err(CredentialsError::Bad(_))
            ));
        }
        file.save(&path).unwrap();
        let credentials = Credentials::open(&path).unwrap();
        assert_eq!(credentials.membership("ld000001", "gw-1"), Membership::Member);
        assert_eq!(credentials.membership("ld000001", "ld-gw0001"), Membership::Member);
        assert_eq!(credentials.membership("ld000001", "gw-3"), Membership::WrongGateway);
        assert_eq!(credentials.membership("L-1", "gw-1"), Membership::UnknownDevice);
        // A device's own identity decides over any load prefix that covers it.
        assert_eq!(credentials.membership("ld-real", "gw-1"), Membership::WrongGateway);
    }

    #[test]
    fn a_broken_file_keeps_the_identities_last_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.toml");
        let mut file = CredentialsFile::default();
        let secret = file.add("gw-1", Role::Gateway, None, 1).unwrap();
        file.save(&path).unwrap();
        let credentials = Credentials::open(&path).unwrap();
        std::fs::write(&path, "[[identity]]\nid = ").unwrap();
        assert!(credentials.refresh().is_err());
        assert!(credentials.authenticate("gw-1", &secret).is_ok());
    }
}
