//! Shared scaffolding for the SQLite store tests: a scratch database file that can be
//! reopened as a fresh store or inspected through a second, raw SQLite connection.

use std::path::PathBuf;

use rota_api::CertId;
use rota_store::SqliteStore;
use time::OffsetDateTime;

/// A database path inside a temporary directory that is removed on drop.
pub struct Scratch {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
}

impl Scratch {
    /// A fresh, empty directory.
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Where the database lives.
    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("state/rota.db")
    }

    /// Opens (or reopens) the store on the file.
    pub fn store(&self) -> SqliteStore {
        SqliteStore::open(&self.db_path()).unwrap()
    }

    /// A second connection, independent of any store, to see what is really in the file.
    pub fn raw(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.db_path()).unwrap()
    }

    /// A single integer from the file.
    pub fn count(&self, sql: &str) -> i64 {
        self.raw().query_row(sql, [], |row| row.get(0)).unwrap()
    }
}

/// A cert id known to be valid.
pub fn cert(id: &str) -> CertId {
    CertId::new(id).unwrap()
}

/// A time `secs` seconds and `nanos` nanoseconds after 2025-01-01T00:00:00Z.
pub fn at(secs: i64, nanos: i64) -> OffsetDateTime {
    time::macros::datetime!(2025-01-01 00:00 UTC)
        + time::Duration::seconds(secs)
        + time::Duration::nanoseconds(nanos)
}
