//! The users file (`gridwatch ingest --users FILE`), as `gridwatch users` edits it:
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
//! Tokens are made here, 256 random bits each, and only their SHA-256 is kept: as for the
//! MQTT secrets (`gridwatch-broker`'s credentials), a single fast hash is sound for
//! random tokens, which nobody can guess. Edits go through `toml_edit`, so the comments
//! and layout of a hand-written file survive `add` and `revoke`; the file is written
//! atomically (a temporary file beside it, synced, renamed over it) with mode 0600, so
//! ingest re-reading it never sees half a file.
use gridwatch_cases::{Assignment, GridScope, Role};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use toml_edit::{ArrayOfTables, DocumentMut, InlineTable, Item, Table};

/// One `[[user]]` of the users file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub id: String,
    pub name: String,
    /// SHA-256 of the bearer token, 64 hex digits.
    pub token_sha256: String,
    pub assignments: Vec<Assignment>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Parsed {
    #[serde(default)]
    user: Vec<UserEntry>,
}

/// A users file that could not be read, used or changed: which file, and what to fix.
#[derive(Debug, thiserror::Error)]
pub enum UsersFileError {
    #[error("users file {}: reading it: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("users file {}: {detail}", path.display())]
    Invalid { path: PathBuf, detail: String },
    #[error("users file {}: writing it: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("user {0:?} exists already (revoke it first, or pick another id)")]
    Exists(String),
    #[error("no user {0:?} (`gridwatch users list` shows the users)")]
    Unknown(String),
    #[error(
        "user {0:?} is the last user: ingest refuses a users file without users, so add another user first \
         (or run ingest with --open-api instead of --users)"
    )]
    LastUser(String),
    #[error("{0}")]
    Bad(String),
    #[error("no randomness from the operating system: {0}")]
    Random(String),
}

/// The longest user id, firm id and name the commands accept.
const MAX_ID_CHARS: usize = 64;
const MAX_NAME_CHARS: usize = 200;

/// A user id or firm id: 1-64 characters, no spaces or control characters.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.chars().count() <= MAX_ID_CHARS && !id.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn valid_digest(digest: &str) -> bool {
    digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The grid roles `--grid ROLE:SCOPE` takes (a firm's staff is `--firm FIRM`).
const GRID_ROLES: &str = "grid_head, grid_administrator, information_officer, supervisor, inspector";

/// Parses `ROLE:SCOPE` (`supervisor:0501`) into a grid assignment: a grid role of
/// `gridwatch-cases` and a scope of 2, 4 or 6 digits (area, unit, grid).
pub fn grid_assignment(text: &str) -> Result<Assignment, UsersFileError> {
    let bad = |detail: String| UsersFileError::Bad(format!("--grid {text:?}: {detail}"));
    let (role, scope) = text.split_once(':').ok_or_else(|| {
        bad(format!(
            "expected ROLE:SCOPE, e.g. supervisor:0501 (roles: {GRID_ROLES})"
        ))
    })?;
    let role = Role::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(
        role.trim(),
    ))
    .map_err(|_| bad(format!("unknown role {role:?}: expected one of {GRID_ROLES}")))?;
    if role == Role::MaintenanceFirm {
        return Err(bad(
            "maintenance_firm is not a grid role: give a firm's staff --firm FIRM".into(),
        ));
    }
    let scope = GridScope::parse(scope).map_err(|e| bad(format!("scope: {e}")))?;
    Ok(Assignment::Grid { role, scope })
}

/// A maintenance firm's staff: `--firm MF04`, the firm id of the register.
pub fn firm_assignment(firm: &str) -> Result<Assignment, UsersFileError> {
    if !valid_id(firm) {
        return Err(UsersFileError::Bad(format!(
            "--firm {firm:?}: a firm id (the register's 维保单位编码) is 1-{MAX_ID_CHARS} characters without spaces"
        )));
    }
    Ok(Assignment::Firm { firm: firm.to_string() })
}

/// How `gridwatch users list` shows an assignment: `supervisor:0501`, `firm:MF04`.
pub fn describe(assignment: &Assignment) -> String {
    match assignment {
        Assignment::Grid { role, scope } => format!("{}:{scope}", role_name(*role)),
        Assignment::Firm { firm } => format!("firm:{firm}"),
    }
}

/// A role as the file writes it: `supervisor`, `grid_head`.
fn role_name(role: Role) -> String {
    serde_json::to_value(role)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Lowercase hex SHA-256 of a token, as the users file keeps it.
pub use gridwatch_secrets::digest as token_digest;

/// A new bearer token: 256 bits from the operating system, as 64 hex digits.
pub fn new_token() -> Result<String, UsersFileError> {
    gridwatch_secrets::new_secret().map_err(|e| UsersFileError::Random(e.to_string()))
}

/// The users file as the commands edit it: its parsed users and the document they came
/// from (comments and all).
#[derive(Debug, Clone)]
pub struct UsersFile {
    users: Vec<UserEntry>,
    doc: DocumentMut,
}

/// The comment a new users file starts with.
const HEADER: &str = "# API users of gridwatch (docs/api.md). Managed with `gridwatch users add | revoke | list`;\n\
                      # only the SHA-256 of each token is kept.\n";

impl UsersFile {
    /// Reads `path`; a missing file is an empty one (the first `users add` creates it).
    pub fn load_or_empty(path: &Path) -> Result<Self, UsersFileError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self {
                users: Vec::new(),
                doc: DocumentMut::new(),
            }),
            Err(source) => Err(UsersFileError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Reads `path`, which must exist.
    pub fn load(path: &Path) -> Result<Self, UsersFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| UsersFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and checks a users file's text: every field, ids and tokens each once. A
    /// file without users parses (`users add` fills it); serving refuses it.
    pub fn parse(path: &Path, text: &str) -> Result<Self, UsersFileError> {
        let invalid = |detail: String| UsersFileError::Invalid {
            path: path.to_path_buf(),
            detail,
        };
        let parsed: Parsed = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let doc: DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| invalid(e.to_string()))?;
        let (mut ids, mut digests) = (HashSet::new(), HashSet::new());
        for (i, u) in parsed.user.iter().enumerate() {
            let at = format!("user[{i}] ({})", u.id);
            if !valid_id(&u.id) {
                return Err(invalid(format!(
                    "{at} field id: 1-{MAX_ID_CHARS} characters without spaces"
                )));
            }
            if !valid_digest(&u.token_sha256) {
                return Err(invalid(format!(
                    "{at} field token_sha256: expected 64 hex digits (sha256 of the token)"
                )));
            }
            if !ids.insert(u.id.as_str()) {
                return Err(invalid(format!("{at} field id: the id appears twice")));
            }
            if !digests.insert(u.token_sha256.to_ascii_lowercase()) {
                return Err(invalid(format!("{at} field token_sha256: two users share a token")));
            }
        }
        Ok(Self {
            users: parsed.user,
            doc,
        })
    }

    pub fn users(&self) -> &[UserEntry] {
        &self.users
    }

    /// Adds a user and returns their token, the only time it is ever shown.
    pub fn add(&mut self, id: &str, name: &str, assignments: Vec<Assignment>) -> Result<String, UsersFileError> {
        if !valid_id(id) {
            return Err(UsersFileError::Bad(format!(
                "--id {id:?}: 1-{MAX_ID_CHARS} characters without spaces"
            )));
        }
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
            return Err(UsersFileError::Bad(format!(
                "--name {name:?}: 1-{MAX_NAME_CHARS} characters, no control characters"
            )));
        }
        if assignments.is_empty() {
            return Err(UsersFileError::Bad(
                "a user needs at least one --grid ROLE:SCOPE or --firm FIRM: without one they see nothing".into(),
            ));
        }
        if self.users.iter().any(|u| u.id == id) {
            return Err(UsersFileError::Exists(id.to_string()));
        }
        let token = new_token()?;
        let entry = UserEntry {
            id: id.to_string(),
            name: name.to_string(),
            token_sha256: token_digest(&token),
            assignments,
        };
        self.push_table(&entry);
        self.users.push(entry);
        Ok(token)
    }

    /// Gives `id` a new token (adding the user if missing): the demo's users, made afresh
    /// on every start.
    pub fn replace(&mut self, id: &str, name: &str, assignments: Vec<Assignment>) -> Result<String, UsersFileError> {
        self.remove(id);
        self.add(id, name, assignments)
    }

    /// Removes a user; their token is refused from ingest's next look at the file. The
    /// last user cannot be removed: ingest refuses a file without users.
    pub fn revoke(&mut self, id: &str) -> Result<(), UsersFileError> {
        if !self.users.iter().any(|u| u.id == id) {
            return Err(UsersFileError::Unknown(id.to_string()));
        }
        if self.users.len() == 1 {
            return Err(UsersFileError::LastUser(id.to_string()));
        }
        self.remove(id);
        Ok(())
    }

    fn remove(&mut self, id: &str) {
        let before = self.users.len();
        self.users.retain(|u| u.id != id);
        if self.users.len() == before {
            return;
        }
        let tables = self.doc.get_mut("user").and_then(Item::as_array_of_tables_mut);
        let at = tables.as_ref().and_then(|t| {
            t.iter()
                .position(|table| table.get("id").and_then(Item::as_str) == Some(id))
        });
        let (Some(tables), Some(at)) = (tables, at) else {
            // Written some other way (`user = [{ ... }]`): written anew from the users.
            return self.rewrite();
        };
        // Comments directly above the user go with it; those a blank line above it (a
        // file's header) stay, on the next user or at the end.
        let prefix = tables
            .get(at)
            .and_then(|t| t.decor().prefix())
            .and_then(|p| p.as_str())
            .unwrap_or_default();
        let kept = prefix.rfind("\n\n").map_or("", |i| &prefix[..i + 2]).to_string();
        tables.remove(at);
        if kept.is_empty() {
            return;
        }
        if let Some(next) = tables.get_mut(at) {
            let rest = next.decor().prefix().and_then(|p| p.as_str()).unwrap_or_default();
            let joined = format!("{kept}{}", rest.trim_start_matches('\n'));
            next.decor_mut().set_prefix(joined);
        } else {
            let trailing = self.doc.trailing().as_str().unwrap_or_default().to_string();
            self.doc.set_trailing(format!("{kept}{trailing}"));
        }
    }

    /// The document anew from the users, for a file whose users are not `[[user]]` tables.
    fn rewrite(&mut self) {
        self.doc = DocumentMut::new();
        for u in self.users.clone() {
            self.push_table(&u);
        }
    }

    fn push_table(&mut self, entry: &UserEntry) {
        if self.doc.get("user").and_then(Item::as_array_of_tables).is_none() {
            if self.doc.contains_key("user") {
                // `user = [{ ... }]`: become `[[user]]` tables first.
                let pushed = self.users.clone();
                self.doc = DocumentMut::new();
                self.doc.insert("user", Item::ArrayOfTables(ArrayOfTables::new()));
                for u in &pushed {
                    self.push_table(u);
                }
            } else {
                self.doc.insert("user", Item::ArrayOfTables(ArrayOfTables::new()));
            }
        }
        // The first user goes below what the file says so far (comments, kept at the end
        // of a document without tables); a file made now starts with a header comment.
        let first = self
            .doc
            .get("user")
            .and_then(Item::as_array_of_tables)
            .is_none_or(|t| t.is_empty());
        let said = self.doc.trailing().as_str().unwrap_or_default().trim_end().to_string();
        if first {
            self.doc.set_trailing("");
        }
        let tables = self
            .doc
            .get_mut("user")
            .and_then(Item::as_array_of_tables_mut)
            .expect("made above");
        let mut table = Table::new();
        table.insert("id", toml_edit::value(entry.id.as_str()));
        table.insert("name", toml_edit::value(entry.name.as_str()));
        table.insert("token_sha256", toml_edit::value(entry.token_sha256.as_str()));
        let mut assignments = toml_edit::Array::new();
        for a in &entry.assignments {
            let mut inline = InlineTable::new();
            match a {
                Assignment::Grid { role, scope } => {
                    inline.insert("type", "grid".into());
                    inline.insert("role", role_name(*role).into());
                    inline.insert("scope", scope.to_string().into());
                }
                Assignment::Firm { firm } => {
                    inline.insert("type", "firm".into());
                    inline.insert("firm", firm.as_str().into());
                }
            }
            inline.fmt();
            assignments.push(inline);
        }
        assignments.fmt();
        table.insert("assignments", toml_edit::value(assignments));
        if first && said.is_empty() {
            table.decor_mut().set_prefix(HEADER);
        } else if first {
            table.decor_mut().set_prefix(format!("{said}\n\n"));
        } else {
            table.decor_mut().set_prefix("\n");
        }
        tables.push(table);
    }

    /// Writes the file atomically with mode 0600: a temporary file beside it (created
    /// 0600), synced, then renamed over it, so ingest never reads half a file. What is
    /// written is checked to read back as these users first.
    pub fn save(&self, path: &Path) -> Result<(), UsersFileError> {
        let write = |source| UsersFileError::Write {
            path: path.to_path_buf(),
            source,
        };
        let text = self.doc.to_string();
        let again = Self::parse(path, &text)?;
        if again.users != self.users {
            return Err(UsersFileError::Bad(format!(
                "users file {}: the edited file would not read back as the same users; nothing written",
                path.display()
            )));
        }
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(write)?;
        let mut temp = tempfile::Builder::new()
            .prefix(".users-")
            .permissions(owner_only())
            .tempfile_in(dir)
            .map_err(write)?;
        std::io::Write::write_all(&mut temp, text.as_bytes()).map_err(write)?;
        temp.as_file().sync_all().map_err(write)?;
        temp.persist(path).map_err(|e| write(e.error))?;
        // The rename is durable once the directory is.
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

/// Read and write for the owner only: the file names every user and what they may see.
fn owner_only() -> std::fs::Permissions {
    std::os::unix::fs::PermissionsExt::from_mode(0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(text: &str) -> Assignment {
        grid_assignment(text).unwrap()
    }

    #[test]
    fn grid_assignments_take_the_cases_roles_and_scopes_and_name_what_is_wrong() {
        assert_eq!(
            grid("supervisor:0501"),
            Assignment::Grid {
                role: Role::Supervisor,
                scope: GridScope::parse("0501").unwrap()
            }
        );
        assert_eq!(describe(&grid("grid_head:01")), "grid_head:01");
        assert_eq!(describe(&grid("inspector:010101")), "inspector:010101");
        for (text, says) in [
            ("supervisor", "expected ROLE:SCOPE"),
            ("boss:0501", "unknown role \"boss\""),
            ("maintenance_firm:0501", "--firm FIRM"),
            ("supervisor:050", "scope"),
            ("supervisor:0500", "scope"),
            ("supervisor:05a1", "scope"),
        ] {
            let e = grid_assignment(text).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains(text), "{text}: {e}");
        }
        assert!(firm_assignment("MF04").is_ok());
        assert!(firm_assignment("").is_err());
        assert!(firm_assignment("MF 04").is_err());
    }

    #[test]
    fn add_keeps_only_the_digest_and_the_file_reads_back_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("users.toml");
        let mut file = UsersFile::load_or_empty(&path).unwrap();
        let token = file
            .add(
                "li.na",
                "李娜",
                vec![grid("supervisor:0501"), firm_assignment("MF04").unwrap()],
            )
            .unwrap();
        assert_eq!(token.len(), 64);
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
        let other = file.add("wang", "王", vec![grid("inspector:050101")]).unwrap();
        assert_ne!(token, other);
        assert!(matches!(
            file.add("li.na", "again", vec![grid("inspector:05")]),
            Err(UsersFileError::Exists(_))
        ));
        assert!(matches!(
            file.add("x y", "X", vec![grid("inspector:05")]),
            Err(UsersFileError::Bad(_))
        ));
        assert!(matches!(
            file.add("z", " ", vec![grid("inspector:05")]),
            Err(UsersFileError::Bad(_))
        ));
        assert!(matches!(file.add("z", "Z", vec![]), Err(UsersFileError::Bad(_))));
        file.save(&path).unwrap();

        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains(&token) && !text.contains(&other),
            "a token itself is never stored"
        );
        assert!(text.contains(&token_digest(&token)));
        assert!(text.starts_with("# API users"), "{text}");
        assert!(
            text.contains(r#"assignments = [{ type = "grid", role = "supervisor", scope = "0501" }, { type = "firm", firm = "MF04" }]"#),
            "{text}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let again = UsersFile::load(&path).unwrap();
        assert_eq!(again.users(), file.users());
        let users = crate::Users::load(&path).unwrap();
        assert_eq!(users.by_token(&token).unwrap().name, "李娜");
        assert_eq!(users.by_token(&other).unwrap().id, "wang");
        // Nothing but the file itself is left in the directory (no temporary files).
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn revoke_removes_only_that_user_keeps_comments_and_refuses_the_last_and_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let digest = |t: &str| token_digest(t);
        std::fs::write(
            &path,
            format!(
                "# our users, kept by hand\n\n[[user]]\nid = \"a\"\nname = \"A\" # the first\ntoken_sha256 = \"{}\"\nassignments = [{{ type = \"grid\", role = \"grid_head\", scope = \"05\" }}]\n\n\
                 [[user]]\nid = \"b\"\nname = \"B\"\ntoken_sha256 = \"{}\"\nassignments = [{{ type = \"firm\", firm = \"MF01\" }}]\n",
                digest("ta"),
                digest("tb")
            ),
        )
        .unwrap();
        let mut file = UsersFile::load(&path).unwrap();
        let tc = file.add("c", "C", vec![grid("inspector:0501")]).unwrap();
        file.revoke("a").unwrap();
        assert!(matches!(file.revoke("a"), Err(UsersFileError::Unknown(_))));
        file.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# our users, kept by hand"), "{text}");
        assert!(!text.contains("the first") && !text.contains(&digest("ta")), "{text}");
        let users = crate::Users::load(&path).unwrap();
        assert!(users.by_token("ta").is_none());
        assert_eq!(users.by_token("tb").unwrap().id, "b");
        assert_eq!(users.by_token(&tc).unwrap().id, "c");

        let mut file = UsersFile::load(&path).unwrap();
        file.revoke("b").unwrap();
        let e = file.revoke("c").unwrap_err();
        assert!(matches!(e, UsersFileError::LastUser(_)), "{e}");
        assert!(e.to_string().contains("last user"), "{e}");
    }

    #[test]
    fn a_file_of_inline_users_is_rewritten_as_tables_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let d = token_digest("t1");
        std::fs::write(
            &path,
            format!("user = [{{ id = \"u1\", name = \"U\", token_sha256 = \"{d}\", assignments = [] }}]\n"),
        )
        .unwrap();
        let mut file = UsersFile::load(&path).unwrap();
        let t2 = file.add("u2", "V", vec![grid("supervisor:05")]).unwrap();
        file.save(&path).unwrap();
        let users = crate::Users::load(&path).unwrap();
        assert_eq!(users.by_token("t1").unwrap().id, "u1");
        assert_eq!(users.by_token(&t2).unwrap().id, "u2");
        let mut file = UsersFile::load(&path).unwrap();
        file.revoke("u1").unwrap();
        file.save(&path).unwrap();
        assert!(crate::Users::load(&path).unwrap().by_token("t1").is_none());
    }

    #[test]
    fn duplicate_ids_and_bad_fields_are_refused_naming_the_user_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let entry = |id: &str, token: &str| {
            format!(
                "[[user]]\nid = \"{id}\"\nname = \"N\"\ntoken_sha256 = \"{}\"\nassignments = []\n",
                token_digest(token)
            )
        };
        for (text, says) in [
            (format!("{}{}", entry("a", "t1"), entry("a", "t2")), "user[1] (a) field id: the id appears twice"),
            (format!("{}{}", entry("a", "t1"), entry("b", "t1")), "two users share a token"),
            (entry("a b", "t1"), "field id"),
            (
                "[[user]]\nid = \"a\"\nname = \"N\"\ntoken_sha256 = \"00\"\nassignments = []\n".into(),
                "token_sha256",
            ),
            (
                "[[user]]\nid = \"a\"\nname = \"N\"\ntoken_sha256 = \"00\"\nassignments = [{ type = \"grid\", role = \"boss\", scope = \"05\" }]\n".into(),
                "boss",
            ),
            (format!("{}extra = 1\n", entry("a", "t1")), "extra"),
        ] {
            let e = UsersFile::parse(&path, &text).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains("users.toml"), "{says}: {e}");
        }
    }

    #[test]
    fn the_first_user_of_a_file_of_comments_goes_below_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        std::fs::write(&path, "# our users\n# (none yet)\n").unwrap();
        let mut file = UsersFile::load(&path).unwrap();
        let token = file.add("a", "A", vec![grid("supervisor:05")]).unwrap();
        let t2 = file.add("b", "B", vec![grid("supervisor:05")]).unwrap();
        file.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# our users\n# (none yet)\n\n[[user]]"), "{text}");
        let users = crate::Users::load(&path).unwrap();
        assert_eq!(users.by_token(&token).unwrap().id, "a");
        assert_eq!(users.by_token(&t2).unwrap().id, "b");
    }
}
