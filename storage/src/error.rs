//! Storage errors: what failed, and what was being done when it did.
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
