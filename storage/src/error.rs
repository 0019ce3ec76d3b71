//! Storage errors: what failed, and what was being done when it did; and the
//! class of a database failure ([`ErrorClass`]), which decides whether an
//! operation is retried, its input quarantined, or the error reported.
use std::fmt::Display;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database refused a statement or could not be reached.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A value could not be encoded for the database.
    #[error("encoding for the database: {0}")]
    Encode(#[from] serde_json::Error),
    /// Stored data that no longer decodes.
    #[error("{what} is unreadable: {source}")]
    Corrupt {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A database URL of no known backend, or unusable as given.
    #[error("database URL {url:?}: {problem}")]
    Url { url: String, problem: String },
    /// The database is not laid out as gridwatch made it.
    #[error("{0}")]
    Layout(String),
    /// Any of the above, with what was being done.
    #[error("{doing}: {source}")]
    While {
        doing: String,
        #[source]
        source: Box<Error>,
    },
}

/// What kind of failure a storage error is (docs/storage.md, "Error classes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The disk or the database's space is full (SQLite `SQLITE_FULL`, PostgreSQL
    /// 53100, `ENOSPC`): passes once space is freed.
    Full,
    /// The connection was lost, refused or timed out, or is in a state it cannot
    /// be used in (PostgreSQL classes 08 and 57P0x, I/O errors, pool timeouts).
    Connection,
    /// Another writer holds a lock, or the database chose this transaction to
    /// abort (SQLite `BUSY`/`LOCKED`, PostgreSQL 40001, 40P01, 55P03).
    Busy,
    /// The database refuses the data itself: a constraint, a value too big or of
    /// the wrong type (SQLite 18-20, PostgreSQL classes 22, 23 and 54).
    Constraint,
    /// Anything else: a bug, a corrupt database, a schema that does not match.
    Other,
}

/// What to do about an error of a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Try again on a fresh transaction (and, after a connection error, a fresh connection).
    Retry,
    /// Trying again fails the same way: keep the input in quarantine instead.
    Quarantine,
    /// Report the error: retrying cannot be expected to help.
    Fail,
}

impl ErrorClass {
    pub fn verdict(self) -> Verdict {
        match self {
            ErrorClass::Full | ErrorClass::Connection | ErrorClass::Busy => Verdict::Retry,
            ErrorClass::Constraint => Verdict::Quarantine,
            ErrorClass::Other => Verdict::Fail,
        }
    }

    /// The label of the class in metrics and health reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Full => "full",
            ErrorClass::Connection => "connection",
            ErrorClass::Busy => "busy",
            ErrorClass::Constraint => "constraint",
            ErrorClass::Other => "other",
        }
    }
}

impl Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// The class of the failure underneath whatever was being done.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Database(e) => classify_sqlx(e),
            Error::Migrate(
                sqlx::migrate::MigrateError::Execute(e) | sqlx::migrate::MigrateError::ExecuteMigration(e, _),
            ) => classify_sqlx(e),
            Error::Migrate(_) => ErrorClass::Other,
            Error::Io(e) => classify_io(e),
            Error::While { source, .. } => source.class(),
            Error::Encode(_) | Error::Corrupt { .. } | Error::Url { .. } | Error::Layout(_) => ErrorClass::Other,
        }
    }
}

/// The class of an error sqlx returned.
pub fn classify_sqlx(e: &sqlx::Error) -> ErrorClass {
    match e {
        sqlx::Error::Database(db) => classify_code(db.code().as_deref()),
        sqlx::Error::Io(io) => classify_io(io),
        sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        // A connection whose transaction state is out of step with the database's.
        | sqlx::Error::InvalidSavePointStatement
        | sqlx::Error::BeginFailed => ErrorClass::Connection,
        _ => ErrorClass::Other,
    }
}

fn classify_io(e: &std::io::Error) -> ErrorClass {
    match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => ErrorClass::Full,
        _ => ErrorClass::Connection,
    }
}

/// The class of a database's error code: SQLite's numeric result codes (primary
/// codes are the low byte of extended ones) or PostgreSQL's five-character SQLSTATE.
fn classify_code(code: Option<&str>) -> ErrorClass {
    let Some(code) = code else { return ErrorClass::Other };
    if let Ok(n) = code.parse::<i32>()
        && code.len() != 5
    {
        return match n & 0xff {
            13 => ErrorClass::Full,
            5 | 6 => ErrorClass::Busy,
            18..=20 => ErrorClass::Constraint,
            // SQLITE_IOERR, SQLITE_CANTOPEN: the file could not be read or written.
            10 | 14 => ErrorClass::Connection,
            _ => ErrorClass::Other,
        };
    }
    match code {
        "53100" => ErrorClass::Full,
        "53300" | "57P01" | "57P02" | "57P03" => ErrorClass::Connection,
        "40001" | "40P01" | "55P03" => ErrorClass::Busy,
        _ if code.starts_with("08") => ErrorClass::Connection,
        _ if code.starts_with("22") || code.starts_with("23") || code.starts_with("54") => ErrorClass::Constraint,
        _ => ErrorClass::Other,
    }
}

/// Names what was being done when an operation failed.
pub(crate) trait Doing<T> {
    fn doing(self, what: impl Display) -> Result<T>;
    fn doing_with<D: Display>(self, what: impl FnOnce() -> D) -> Result<T>;
}

impl<T, E: Into<Error>> Doing<T> for std::result::Result<T, E> {
    fn doing(self, what: impl Display) -> Result<T> {
        self.map_err(|e| Error::While {
            doing: what.to_string(),
            source: Box::new(e.into()),
        })
    }

    fn doing_with<D: Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| Error::While {
            doing: what().to_string(),
            source: Box::new(e.into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_of_both_backends_are_classified() {
        // SQLite: primary and extended result codes.
        assert_eq!(classify_code(Some("13")), ErrorClass::Full);
        assert_eq!(classify_code(Some("5")), ErrorClass::Busy);
        assert_eq!(classify_code(Some("517")), ErrorClass::Busy, "SQLITE_BUSY_SNAPSHOT");
        assert_eq!(
            classify_code(Some("2067")),
            ErrorClass::Constraint,
            "SQLITE_CONSTRAINT_UNIQUE"
        );
        assert_eq!(classify_code(Some("778")), ErrorClass::Connection, "SQLITE_IOERR_WRITE");
        assert_eq!(classify_code(Some("11")), ErrorClass::Other, "SQLITE_CORRUPT");
        // PostgreSQL SQLSTATEs.
        assert_eq!(classify_code(Some("53100")), ErrorClass::Full);
        assert_eq!(classify_code(Some("08006")), ErrorClass::Connection);
        assert_eq!(classify_code(Some("57P01")), ErrorClass::Connection);
        assert_eq!(classify_code(Some("40P01")), ErrorClass::Busy);
        assert_eq!(classify_code(Some("23505")), ErrorClass::Constraint);
        assert_eq!(classify_code(Some("22021")), ErrorClass::Constraint);
        assert_eq!(classify_code(Some("42P01")), ErrorClass::Other);
        assert_eq!(classify_code(None), ErrorClass::Other);
    }

    #[test]
    fn the_class_survives_what_was_being_done() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e: Result<()> = Err(sqlx::Error::Io(refused)).doing("committing a batch");
        assert_eq!(e.unwrap_err().class(), ErrorClass::Connection);
        let full: Result<()> = Err(std::io::Error::from(std::io::ErrorKind::StorageFull)).doing("writing");
        assert_eq!(full.unwrap_err().class(), ErrorClass::Full);
        assert_eq!(ErrorClass::Full.verdict(), Verdict::Retry);
        assert_eq!(ErrorClass::Constraint.verdict(), Verdict::Quarantine);
        assert_eq!(ErrorClass::Other.verdict(), Verdict::Fail);
    }
}
