//! Shared scaffolding for the store tests: a scratch store of either kind — a SQLite file
//! that can be reopened or inspected through a raw connection, or an embedded SurrealDB
//! engine — and [`both_stores!`], which runs one scenario against each.

#![allow(dead_code, unused_macros)]

use std::path::PathBuf;
use std::sync::Arc;

use rota_api::CertId;
use rota_store::{AuditStore, SqliteStore, SurrealOptions, SurrealStore};
use time::OffsetDateTime;
use tokio::sync::OnceCell;

/// Which store a scenario runs on.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// SurrealDB's embedded in-memory engine.
    Surreal,
}

/// A scratch store in a temporary directory that is removed on drop.
pub struct Scratch {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
    backend: Backend,
    surreal: OnceCell<SurrealStore>,
}

impl Scratch {
    /// A fresh SQLite scratch.
    pub fn new() -> Self {
        Self::on(Backend::Sqlite)
    }

    /// A fresh scratch of `backend`.
    pub fn on(backend: Backend) -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            backend,
            surreal: OnceCell::new(),
        }
    }

    /// Where the SQLite database lives.
    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("state/rota.db")
    }

    /// Opens (or reopens) the SQLite store on the file.
    pub fn sqlite(&self) -> SqliteStore {
        SqliteStore::open(&self.db_path()).unwrap()
    }

    /// The store: a reopened SQLite file, or another handle on the one SurrealDB engine
    /// (an in-memory engine lives as long as its first handle).
    pub async fn store(&self) -> Arc<dyn AuditStore> {
        match self.backend {
            Backend::Sqlite => Arc::new(self.sqlite()),
            Backend::Surreal => {
                let store = self
                    .surreal
                    .get_or_init(|| async {
                        SurrealStore::connect(&SurrealOptions {
                            endpoint: "mem://".to_owned(),
                            namespace: "rota".to_owned(),
                            database: "test".to_owned(),
                            credentials: None,
                            node: "node-a".to_owned(),
                        })
                        .await
                        .unwrap()
                    })
                    .await;
                Arc::new(store.clone())
            }
        }
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

/// Runs each named scenario (an `async fn(Backend)`) once per store, as `<name>::sqlite`
/// and `<name>::surreal`.
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    super::$name(crate::support::Backend::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn surreal() {
                    super::$name(crate::support::Backend::Surreal).await;
                }
            }
        )*
    };
}
#[allow(unused_imports)]
pub(crate) use both_stores;

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
