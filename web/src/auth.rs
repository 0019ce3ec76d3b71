//! API users and their tokens. Users come from a TOML file (`--users FILE`):
//!
//! ```toml
//! [[user]]
//! id = "zhang.wei"
//! name = "张伟"
//! token_sha256 = "…64 hex digits…"   # sha256 of the bearer token; the token itself is never stored
//! assignments = [{ type = "grid", role = "supervisor", scope = "0501" },
//!                { type = "firm", firm = "MF04" }]
//! ```
//!
//! Requests carry `Authorization: Bearer TOKEN`. Without a users file ingest runs
//! open: anyone who reaches it may read, nobody may write.
use gridwatch_cases::{Assignment, User};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    user: Vec<UserEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    id: String,
    name: String,
    token_sha256: String,
    assignments: Vec<Assignment>,
}

/// A users file that could not be used: which file, and what is wrong in it.
#[derive(Debug, thiserror::Error)]
#[error("users file {}: {problem}", path.display())]
pub struct UsersFileError {
    path: std::path::PathBuf,
    problem: String,
}

#[derive(Debug, Clone, Default)]
pub struct Users {
    by_digest: HashMap<String, User>,
}

pub fn token_digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Users {
    /// No users: the API is read-only and open.
    pub fn open() -> Self {
        Self::default()
    }

    pub fn is_open(&self) -> bool {
        self.by_digest.is_empty()
    }

    pub fn load(path: &Path) -> Result<Self, UsersFileError> {
        let problem = |problem: String| UsersFileError {
            path: path.to_path_buf(),
            problem,
        };
        let text = std::fs::read_to_string(path).map_err(|e| problem(format!("reading it: {e}")))?;
        let file: UsersFile = toml::from_str(&text).map_err(|e| problem(e.to_string()))?;
        let mut users = Users::default();
        for (i, u) in file.user.into_iter().enumerate() {
            let digest = u.token_sha256.to_ascii_lowercase();
            if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(problem(format!(
                    "user[{i}] ({}) field token_sha256: expected 64 hex digits (sha256 of the token)",
                    u.id
                )));
            }
            let user = User {
                id: u.id,
                name: u.name,
                assignments: u.assignments,
            };
            if users.by_digest.insert(digest, user).is_some() {
                return Err(problem(format!(
                    "user[{i}] field token_sha256: two users share a token"
                )));
            }
        }
        Ok(users)
    }

    /// Adds a user with `token` (for tests and the demo).
    pub fn add(&mut self, token: &str, user: User) {
        self.by_digest.insert(token_digest(token), user);
    }

    pub fn by_token(&self, token: &str) -> Option<&User> {
        self.by_digest.get(&token_digest(token))
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
}
