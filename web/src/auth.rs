//! API users and their tokens, as the HTTP side serves them. Users come from a TOML
//! file (`--users FILE`, format and editing in [`crate::users_file`], managed with
//! `gridwatch users add | revoke | list`).
//!
//! Requests carry `Authorization: Bearer TOKEN`. A users file without a single user is
//! refused. Open mode (anyone who reaches the API may read, nobody may write) is only
//! ever chosen explicitly, with [`Users::open`] (`gridwatch ingest --open-api`).
//!
//! A set loaded from a file follows it: [`watch`] re-reads the file when it changes
//! (its modification time, length or inode: an atomic save makes a new inode), so a
//! revoked token is refused and a new user signs in without a restart. A version of the
//! file that cannot be read or is invalid is not applied: the users read before stay,
//! and the error is logged and counted once per version.
use crate::users_file::{UsersFile, UsersFileError, token_digest};
use gridwatch_cases::User;
use gridwatch_secrets::FileStamp;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// The API's users. [`Users::new`] has none and lets nobody in until users are added;
/// [`Users::open`] is the explicit open mode; [`Users::load`] reads a users file and
/// [`Users::refresh`] follows its changes. A clone is a copy: it no longer shares
/// changes with the original.
#[derive(Debug, Default)]
pub struct Users {
    by_digest: RwLock<HashMap<String, User>>,
    open: bool,
    file: Option<Source>,
}

/// The file a set of users came from, and the version of it last looked at.
#[derive(Debug)]
struct Source {
    path: PathBuf,
    /// The stamp of the version last read, applied or refused; `None` after a failed look.
    seen: Mutex<Option<FileStamp>>,
}

impl Clone for Users {
    fn clone(&self) -> Self {
        Self {
            by_digest: RwLock::new(self.by_digest.read().expect("users lock").clone()),
            open: self.open,
            file: self.file.as_ref().map(|f| Source {
                path: f.path.clone(),
                seen: Mutex::new(*f.seen.lock().expect("users lock")),
            }),
        }
    }
}

impl Users {
    /// No users yet: every request is refused until [`Users::add`] adds one.
    pub fn new() -> Self {
        Self::default()
    }

    /// Open mode: anyone who reaches the API may read, nobody may write. The caller that
    /// chooses it says so in its log (`gridwatch ingest --open-api` warns).
    pub fn open() -> Self {
        Self {
            open: true,
            ..Self::default()
        }
    }

    /// Whether the API runs in open mode (chosen with [`Users::open`], no user added since).
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Reads the users file at `path`; [`Users::refresh`] follows its changes.
    pub fn load(path: &Path) -> Result<Self, UsersFileError> {
        let before = FileStamp::of(path).map_err(|source| UsersFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            by_digest: RwLock::new(Self::read(path)?),
            open: false,
            file: Some(Source {
                path: path.to_path_buf(),
                seen: Mutex::new(Some(before)),
            }),
        })
    }

    fn read(path: &Path) -> Result<HashMap<String, User>, UsersFileError> {
        let file = UsersFile::load(path)?;
        // An empty file must not turn into an API without walls.
        if file.users().is_empty() {
            return Err(UsersFileError::Invalid {
                path: path.to_path_buf(),
                detail: "no [[user]] in it: a users file needs at least one user (`gridwatch users add`; \
                         open mode is a separate, explicit choice)"
                    .to_string(),
            });
        }
        Ok(file
            .users()
            .iter()
            .map(|u| {
                let user = User {
                    id: u.id.clone(),
                    name: u.name.clone(),
                    assignments: u.assignments.clone(),
                };
                (u.token_sha256.to_ascii_lowercase(), user)
            })
            .collect())
    }

    /// The file these users follow, if they came from one.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|f| f.path.as_path())
    }

    /// How many users there are.
    pub fn len(&self) -> usize {
        self.by_digest.read().expect("users lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads the users file again if it changed since the last look; `Ok(true)` when a
    /// new version was applied. A version that cannot be read or is invalid keeps the
    /// users read before and is an error once (for the caller to log), not again until
    /// the file changes: a half-edited file must not lock everyone out or let anyone in.
    pub fn refresh(&self) -> Result<bool, UsersFileError> {
        let Some(file) = &self.file else {
            return Ok(false);
        };
        let now = FileStamp::of(&file.path);
        let mut seen = file.seen.lock().expect("users lock");
        let now = match now {
            Ok(now) if *seen == Some(now) => return Ok(false),
            Ok(now) => now,
            Err(_) if seen.is_none() => return Ok(false),
            Err(source) => {
                *seen = None;
                return Err(UsersFileError::Read {
                    path: file.path.clone(),
                    source,
                });
            }
        };
        // Stamped before reading: a change during the read makes a new stamp, read next time.
        *seen = Some(now);
        let fresh = Self::read(&file.path)?;
        *self.by_digest.write().expect("users lock") = fresh;
        Ok(true)
    }

    /// Adds a user with `token` (for tests and the demo); a set with a user is never open.
    pub fn add(&mut self, token: &str, user: User) {
        self.open = false;
        self.by_digest
            .get_mut()
            .expect("users lock")
            .insert(token_digest(token), user);
    }

    pub fn by_token(&self, token: &str) -> Option<User> {
        self.by_digest(&token_digest(token))
    }

    /// The user whose token has this SHA-256 digest (a dashboard session keeps the
    /// digest, never the token).
    pub(crate) fn by_digest(&self, digest: &str) -> Option<User> {
        self.by_digest.read().expect("users lock").get(digest).cloned()
    }
}

const USERS_GAUGE: &str = "gridwatch_api_users";
const FILE_ERRORS: &str = "gridwatch_api_users_file_errors_total";
const FILE_APPLIED: &str = "gridwatch_api_users_file_reloads_total";

/// Follows the users file of `users` (if any), looking at it every `every`: applies a
/// new valid version, logs and counts one that is not.
pub async fn watch(users: Arc<Users>, every: Duration) {
    let Some(path) = users.path().map(Path::to_path_buf) else {
        return;
    };
    metrics::describe_gauge!(USERS_GAUGE, "API users in force (from the users file)");
    metrics::describe_counter!(
        FILE_ERRORS,
        "Versions of the users file that could not be read or were invalid and were not applied: the users before stay"
    );
    metrics::describe_counter!(
        FILE_APPLIED,
        "Changed versions of the users file applied without a restart"
    );
    metrics::gauge!(USERS_GAUGE).set(users.len() as f64);
    metrics::counter!(FILE_ERRORS).increment(0);
    metrics::counter!(FILE_APPLIED).increment(0);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match users.refresh() {
            Ok(false) => {}
            Ok(true) => {
                tracing::info!(path = %path.display(), users = users.len(), "users file changed: applied");
                metrics::counter!(FILE_APPLIED).increment(1);
                metrics::gauge!(USERS_GAUGE).set(users.len() as f64);
            }
            Err(e) => {
                tracing::error!(error = %e, "users file not applied; the users read before stay");
                metrics::counter!(FILE_ERRORS).increment(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_users_and_names_the_bad_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let digest = token_digest("s3cret");
        std::fs::write(
            &path,
            format!("[[user]]\nid = \"u1\"\nname = \"U One\"\ntoken_sha256 = \"{digest}\"\nassignments = [{{ type = \"grid\", role = \"supervisor\", scope = \"0501\" }}]\n"),
        )
        .unwrap();
        let users = Users::load(&path).unwrap();
        assert_eq!(users.by_token("s3cret").unwrap().id, "u1");
        assert!(users.by_token("wrong").is_none());

        std::fs::write(
            &path,
            "[[user]]\nid = \"u1\"\nname = \"x\"\ntoken_sha256 = \"abc\"\nassignments = []\n",
        )
        .unwrap();
        let e = Users::load(&path).unwrap_err().to_string();
        assert!(e.contains("token_sha256") && e.contains("users.toml"), "{e}");
    }

    #[test]
    fn an_empty_or_all_comments_users_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        for text in ["", "# users\n# [[user]]\n\n"] {
            std::fs::write(&path, text).unwrap();
            let e = Users::load(&path).unwrap_err().to_string();
            assert!(e.contains("no [[user]]") && e.contains("users.toml"), "{text:?}: {e}");
        }
        assert!(Users::open().is_open());
        assert!(!Users::new().is_open());
    }

    fn grid(text: &str) -> gridwatch_cases::Assignment {
        crate::users_file::grid_assignment(text).unwrap()
    }

    #[test]
    fn refresh_applies_a_changed_file_and_keeps_the_last_good_users_over_a_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let mut file = UsersFile::load_or_empty(&path).unwrap();
        let a = file.add("a", "A", vec![grid("supervisor:05")]).unwrap();
        let b = file.add("b", "B", vec![grid("inspector:0501")]).unwrap();
        file.save(&path).unwrap();
        let users = Users::load(&path).unwrap();
        assert_eq!(users.path(), Some(path.as_path()));
        assert!(!users.refresh().unwrap(), "unchanged since the load");

        // A copy no longer follows the original.
        let copy = users.clone();
        let mut file = UsersFile::load(&path).unwrap();
        file.revoke("a").unwrap();
        let c = file.add("c", "C", vec![grid("grid_head:05")]).unwrap();
        file.save(&path).unwrap();
        assert!(users.refresh().unwrap());
        assert!(users.by_token(&a).is_none(), "revoked");
        assert_eq!(users.by_token(&b).unwrap().id, "b");
        assert_eq!(users.by_token(&c).unwrap().id, "c");
        assert_eq!(copy.by_token(&a).unwrap().id, "a");

        // A broken version is an error once, and the users before it stay.
        std::fs::write(&path, "[[user]]\nid = ").unwrap();
        let e = users.refresh().unwrap_err().to_string();
        assert!(e.contains("users.toml"), "{e}");
        assert!(!users.refresh().unwrap(), "the same broken version is reported once");
        assert_eq!(users.by_token(&b).unwrap().id, "b");
        // So is an emptied one, and a file that is gone.
        std::fs::write(&path, "# nobody\n").unwrap();
        assert!(users.refresh().unwrap_err().to_string().contains("no [[user]]"));
        std::fs::remove_file(&path).unwrap();
        assert!(users.refresh().is_err());
        assert!(!users.refresh().unwrap());
        assert_eq!(users.len(), 2);
        assert_eq!(users.by_token(&c).unwrap().id, "c");

        // A good version applies again.
        let mut file = UsersFile::load_or_empty(&path).unwrap();
        let d = file.add("d", "D", vec![grid("supervisor:0501")]).unwrap();
        file.save(&path).unwrap();
        assert!(users.refresh().unwrap());
        assert_eq!(users.len(), 1);
        assert_eq!(users.by_token(&d).unwrap().id, "d");
        assert!(users.by_token(&b).is_none());
    }

    #[test]
    fn users_made_in_code_follow_no_file() {
        let mut users = Users::new();
        users.add(
            "t",
            gridwatch_cases::User {
                id: "u".into(),
                name: "U".into(),
                assignments: vec![],
            },
        );
        assert!(users.path().is_none());
        assert!(!users.refresh().unwrap());
        assert_eq!(users.by_token("t").unwrap().id, "u");
    }
}
