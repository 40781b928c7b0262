//! The schema, as an ordered list of migrations. `PRAGMA user_version` records how many have
//! been applied; opening a database applies the rest in one transaction, so a crash mid-way
//! leaves the previous version intact. Append new steps, never edit a released one.
//!
//! Times are fixed-width UTC text (see `codec`), enums their `as_str` names, structured values
//! JSON. There is no column for private keys, on purpose: they never leave `key_path`.

use rusqlite::{Connection, TransactionBehavior};

use super::codec::{Context as _, corrupt};
use crate::StoreError;

/// Migration `n` (from 0) takes the schema from version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[
    // Version 1. AUTOINCREMENT keeps ids from being reused after the newest row is deleted:
    // a renewal still holding a cleared journal id must never clear someone else's entry.
    "
    CREATE TABLE renewals (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        cert_id     TEXT NOT NULL,
        trigger     TEXT NOT NULL,
        status      TEXT NOT NULL,
        error       TEXT,
        started_at  TEXT NOT NULL,
        finished_at TEXT
    ) STRICT;
    -- A cert's history newest first, and each cert's newest status without visiting the table.
    CREATE INDEX renewals_by_cert ON renewals (cert_id, started_at DESC, id DESC, status);
    -- Start-up recovery looks only at open rows.
    CREATE INDEX renewals_running ON renewals (id) WHERE status = 'running';

    CREATE TABLE renewal_steps (
        renewal_id INTEGER NOT NULL REFERENCES renewals (id),
        seq        INTEGER NOT NULL,
        step       TEXT NOT NULL,
        status     TEXT NOT NULL,
        message    TEXT NOT NULL,
        at         TEXT NOT NULL,
        PRIMARY KEY (renewal_id, seq)
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE issued_certs (
        id         INTEGER PRIMARY KEY,
        cert_id    TEXT NOT NULL,
        renewal_id INTEGER NOT NULL,
        cert_pem   TEXT NOT NULL,
        chain_pem  TEXT NOT NULL,
        serial     TEXT NOT NULL,
        not_after  TEXT NOT NULL,
        issued_at  TEXT NOT NULL
    ) STRICT;
    CREATE INDEX issued_certs_by_cert ON issued_certs (cert_id, issued_at DESC, id DESC);

    -- One JSON array per cert: the set is always read and replaced whole.
    CREATE TABLE conditions (
        cert_id    TEXT PRIMARY KEY,
        conditions TEXT NOT NULL
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE backoffs (
        cert_id         TEXT PRIMARY KEY,
        failures        INTEGER NOT NULL,
        next_attempt_at TEXT NOT NULL,
        generation      INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE reconciled_generations (
        cert_id    TEXT PRIMARY KEY,
        generation INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;

    -- No foreign key to renewals: the journal entry must be written whatever else failed.
    CREATE TABLE dcv_journal (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        renewal_id    INTEGER NOT NULL,
        cert_id       TEXT NOT NULL,
        dcv           TEXT NOT NULL,
        challenge     TEXT NOT NULL,
        journalled_at TEXT NOT NULL
    ) STRICT;
    ",
    // Version 2. The serials rota revoked: a revoked cert still installed (its replacement
    // failed, or rotad restarted first) keeps being replaced.
    "
    CREATE TABLE revocations (
        cert_id    TEXT NOT NULL,
        serial     TEXT NOT NULL,
        reason     TEXT NOT NULL,
        revoked_at TEXT NOT NULL,
        PRIMARY KEY (cert_id, serial)
    ) STRICT, WITHOUT ROWID;
    ",
    // Version 3. A cert's generation counts its spec changes (1, 2, 3 …) as Kubernetes does;
    // the spec hash says whether the spec changed. Which generation was reconciled is no
    // longer kept: rotad observes every cert when it starts.
    "
    CREATE TABLE spec_generations (
        cert_id    TEXT PRIMARY KEY,
        spec_hash  INTEGER NOT NULL,
        generation INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    DROP TABLE reconciled_generations;
    ",
    // Version 4. Alerts: the open episode of each cert and kind (a failure, an expiry
    // warning) with when it was last sent, so an alert goes out on a change and then at most
    // daily, across restarts; and every delivery to every sink, the alerts' audit trail.
    "
    CREATE TABLE alert_episodes (
        cert_id      TEXT NOT NULL,
        kind         TEXT NOT NULL,
        since        TEXT NOT NULL,
        last_sent_at TEXT NOT NULL,
        PRIMARY KEY (cert_id, kind)
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE alert_deliveries (
        id         INTEGER PRIMARY KEY,
        cert_id    TEXT NOT NULL,
        sink       INTEGER NOT NULL,
        sink_label TEXT NOT NULL,
        kind       TEXT NOT NULL,
        at         TEXT NOT NULL,
        error      TEXT
    ) STRICT;
    -- `describe` reads the newest row of each sink for one cert.
    CREATE INDEX alert_deliveries_by_cert ON alert_deliveries (cert_id, sink, id);
    ",
    // Version 5. Dry runs (`rota renew --dry-run`) are audited beside live renewals, marked,
    // and left out of each cert's last renewal status: they change nothing live.
    "
    ALTER TABLE renewals ADD COLUMN dry_run INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX renewals_live_by_cert ON renewals (cert_id, started_at DESC, id DESC, status)
        WHERE dry_run = 0;
    ",
];

/// Brings the schema up to date, refusing a database written by a newer rota.
pub(super) fn run(conn: &mut Connection) -> Result<(), StoreError> {
    // IMMEDIATE takes the write lock before reading the version, so two processes opening
    // the same new file cannot both apply version 1.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context("starting the schema migration")?;
    let stored: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .context("reading the schema version")?;
    let applied = usize::try_from(stored).map_err(corrupt("schema version"))?;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Corrupt {
            what: "schema version",
            detail: format!(
                "the database has schema version {applied}, written by a newer rota; this \
                 build knows up to version {}: upgrade rota or use another database_path",
                MIGRATIONS.len()
            ),
        });
    }
    if applied == MIGRATIONS.len() {
        return Ok(());
    }
    for migration in &MIGRATIONS[applied..] {
        tx.execute_batch(migration)
            .context("applying a schema migration")?;
    }
    tx.pragma_update(None, "user_version", MIGRATIONS.len())
        .context("recording the schema version")?;
    tx.commit().context("committing the schema migration")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_version(conn: &Connection) -> i64 {
        conn.pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn applies_every_step_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        run(&mut conn).unwrap();
        assert_eq!(user_version(&conn), MIGRATIONS.len() as i64);
        run(&mut conn).unwrap();
        assert_eq!(
            user_version(&conn),
            MIGRATIONS.len() as i64,
            "a second run is a no-op, not a `table exists` error"
        );
    }

    #[test]
    fn a_failed_step_leaves_the_previous_version() {
        let mut conn = Connection::open_in_memory().unwrap();
        // A table in the way makes version 1 fail half-way through.
        conn.execute_batch("CREATE TABLE dcv_journal (x INTEGER)")
            .unwrap();
        assert!(matches!(run(&mut conn), Err(StoreError::Sqlite { .. })));
        assert_eq!(user_version(&conn), 0);
        let renewals: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'renewals'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(
            renewals, 0,
            "the tables created before the failure are rolled back"
        );
    }
}
