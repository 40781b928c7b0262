//! The SurrealDB schema: strict (`SCHEMAFULL`) tables with typed fields and the indexes the
//! reads use, defined on connect and versioned like the SQLite migrations. Every statement is
//! `IF NOT EXISTS`, so nodes that connect at the same moment define it once between them.

use super::{SurrealStore, fail};
use crate::StoreError;

/// Each migration, in order; the stored version is how many have run.
const MIGRATIONS: &[&str] = &[
    // Sequences start at 1, as SQLite's row ids do. 1: the audit trail, each node's per-cert state, the DCV journal, alerts, issued certs,
    // and the cluster's lease, nodes and forwarded renewal requests.
    "
    DEFINE SEQUENCE IF NOT EXISTS renewal_num START 1;
    DEFINE SEQUENCE IF NOT EXISTS dcv_num START 1;
    DEFINE SEQUENCE IF NOT EXISTS delivery_num START 1;
    DEFINE SEQUENCE IF NOT EXISTS issued_num START 1;

    DEFINE TABLE IF NOT EXISTS renewal SCHEMAFULL;
    DEFINE FIELD IF NOT EXISTS num ON renewal TYPE int;
    DEFINE FIELD IF NOT EXISTS cert_id ON renewal TYPE string;
    DEFINE FIELD IF NOT EXISTS node ON renewal TYPE string;
    DEFINE FIELD IF NOT EXISTS trigger ON renewal TYPE string;
    DEFINE FIELD IF NOT EXISTS status ON renewal TYPE string;
    DEFINE FIELD IF NOT EXISTS error ON renewal TYPE option<string>;
    DEFINE FIELD IF NOT EXISTS started_at ON renewal TYPE string;
    DEFINE FIELD IF NOT EXISTS finished_at ON renewal TYPE option<string>;
    DEFINE FIELD IF NOT EXISTS dry_run ON renewal TYPE bool;
    DEFINE INDEX IF NOT EXISTS renewal_by_cert ON renewal FIELDS cert_id, started_at;
    DEFINE INDEX IF NOT EXISTS renewal_by_status ON renewal FIELDS status, node;

    DEFINE TABLE IF NOT EXISTS renewal_step SCHEMAFULL;
    DEFINE FIELD IF NOT EXISTS renewal ON renewal_step TYPE int;
    DEFINE FIELD IF NOT EXISTS seq ON renewal_step TYPE int;
    DEFINE FIELD IF NOT EXISTS step ON renewal_step TYPE string;
    DEFINE FIELD IF NOT EXISTS status ON renewal_step TYPE string;
    DEFINE FIELD IF NOT EXISTS message ON renewal_step TYPE string;
    DEFINE FIELD IF NOT EXISTS at ON renewal_step TYPE string;
    DEFINE INDEX IF NOT EXISTS renewal_step_seq ON renewal_step FIELDS renewal, seq UNIQUE;

    DEFINE TABLE IF NOT EXISTS dcv_journal SCHEMAFULL;
    DEFINE FIELD IF NOT EXISTS num ON dcv_journal TYPE int;
    DEFINE FIELD IF NOT EXISTS renewal ON dcv_journal TYPE int;
    DEFINE FIELD IF NOT EXISTS cert_id ON dcv_journal TYPE string;
    DEFINE FIELD IF NOT EXISTS node ON dcv_journal TYPE string;
    DEFINE FIELD IF NOT EXISTS dcv ON dcv_journal TYPE string;
    DEFINE FIELD IF NOT EXISTS challenge ON dcv_journal TYPE string;
    DEFINE FIELD IF NOT EXISTS journalled_at ON dcv_journal TYPE string;

    DEFINE TABLE IF NOT EXISTS issued_cert SCHEMAFULL;
    DEFINE FIELD IF NOT EXISTS num ON issued_cert TYPE int;
    DEFINE FIELD IF NOT EXISTS cert_id ON issued_cert TYPE string;
    DEFINE FIELD IF NOT EXISTS renewal ON issued_cert TYPE int;
    DEFINE FIELD IF NOT EXISTS cert_pem ON issued_cert TYPE string;
    DEFINE FIELD IF NOT EXISTS chain_pem ON issued_cert TYPE string;
    DEFINE FIELD IF NOT EXISTS serial ON issued_cert TYPE string;
    DEFINE FIELD IF NOT EXISTS not_after ON issued_cert TYPE string;
    DEFINE FIELD IF NOT EXISTS issued_at ON issued_cert TYPE string;
    DEFINE FIELD IF NOT EXISTS node ON issued_cert TYPE string;
    DEFINE INDEX IF NOT EXISTS issued_cert_by_cert ON issued_cert FIELDS cert_id, issued_at;

    DEFINE TABLE IF NOT EXISTS cert_conditions SCHEMAFULL;
    DEFINE FIELD IF NOT EXISTS cert_id ON cert_conditions TYPE string;
    DEFINE FIELD IF NOT EXISTS node ON cert_conditions TYPE string;
    DEFINE FIELD IF NOT EXISTS conditions ON cert_conditions TYPE string;

    DEFINE TABLE IF NOT EXISTS backoff SCHEMAFULL;
    DEFINE FIELD IF NOT EXISTS cert_id ON backoff TYPE string;
    DEFINE FIELD IF NOT EXISTS node ON backoff TYPE string;
    DEFINE FIELD IF NOT EXISTS failures ON backoff TYPE int;
    DEFINE FIELD IF NOT EXISTS next_attempt_at ON backoff TYPE string;
    DEFINE FIELD IF NOT EXISTS generation ON backoff TYPE int;

    DEFINE TABLE IF NOT EXISTS spec_generation SCHEMAFULL;
    DEFINE FIELD IF NOT EXISTS cert_id ON spec_generation TYPE string;
    DEFINE FIELD IF NOT EXISTS node ON spec_generation TYPE string;
    DEFINE FIELD IF NOT EXISTS spec_hash ON spec_generation TYPE int;
    DEFINE FIELD IF NOT EXISTS generation ON spec_generation TYPE int;

    DEFINE TABLE IF NOT EXISTS revocation SCHEMAFULL;
    DEFINE FIELD IF NOT EXISTS cert_id ON revocation TYPE string;
    DEFINE FIELD IF NOT EXISTS serial ON revocation TYPE string;
    DEFINE FIELD IF NOT EXISTS reason ON revocation TYPE string;
    DEFINE FIELD IF NOT EXISTS revoked_at ON revocation TYPE string;

    DEFINE TABLE IF NOT EXISTS alert_episode SCHEMAFULL;
    DEFINE FIELD IF NOT EXISTS cert_id ON alert_episode TYPE string;
    DEFINE FIELD IF NOT EXISTS node ON alert_episode TYPE string;
    DEFINE FIELD IF NOT EXISTS kind ON alert_episode TYPE string;
    DEFINE FIELD IF NOT EXISTS since ON alert_episode TYPE string;
    DEFINE FIELD IF NOT EXISTS last_sent_at ON alert_episode TYPE string;

    DEFINE TABLE IF NOT EXISTS alert_delivery SCHEMAFULL;
    DEFINE FIELD IF NOT EXISTS num ON alert_delivery TYPE int;
    DEFINE FIELD IF NOT EXISTS cert_id ON alert_delivery TYPE string;
    DEFINE FIELD IF NOT EXISTS sink ON alert_delivery TYPE int;
    DEFINE FIELD IF NOT EXISTS sink_label ON alert_delivery TYPE string;
    DEFINE FIELD IF NOT EXISTS kind ON alert_delivery TYPE string;
    DEFINE FIELD IF NOT EXISTS at ON alert_delivery TYPE string;
    DEFINE FIELD IF NOT EXISTS error ON alert_delivery TYPE option<string>;
    DEFINE INDEX IF NOT EXISTS alert_delivery_by_cert ON alert_delivery FIELDS cert_id, sink;

    DEFINE SEQUENCE IF NOT EXISTS request_num START 1;

    DEFINE TABLE IF NOT EXISTS cluster_lock SCHEMAFULL;
    DEFINE FIELD IF NOT EXISTS holder ON cluster_lock TYPE string;
    DEFINE FIELD IF NOT EXISTS term ON cluster_lock TYPE int;
    DEFINE FIELD IF NOT EXISTS expires_at ON cluster_lock TYPE datetime;
    DEFINE FIELD IF NOT EXISTS acquired_at ON cluster_lock TYPE datetime;

    DEFINE TABLE IF NOT EXISTS cluster_node SCHEMAFULL;
    DEFINE FIELD IF NOT EXISTS node_id ON cluster_node TYPE string;
    DEFINE FIELD IF NOT EXISTS last_seen ON cluster_node TYPE string;
    DEFINE FIELD IF NOT EXISTS version ON cluster_node TYPE string;
    DEFINE FIELD IF NOT EXISTS leader_term ON cluster_node TYPE option<int>;

    DEFINE TABLE IF NOT EXISTS renewal_request SCHEMAFULL;
    DEFINE FIELD IF NOT EXISTS num ON renewal_request TYPE int;
    DEFINE FIELD IF NOT EXISTS cert_id ON renewal_request TYPE string;
    DEFINE FIELD IF NOT EXISTS requested_by ON renewal_request TYPE string;
    DEFINE FIELD IF NOT EXISTS requested_at ON renewal_request TYPE string;

    DEFINE TABLE IF NOT EXISTS rota_meta SCHEMAFULL;
    DEFINE FIELD IF NOT EXISTS version ON rota_meta TYPE int;
    ",
];

/// The schema version this build writes.
pub(crate) const VERSION: i64 = MIGRATIONS.len() as i64;

impl SurrealStore {
    /// Runs every migration above the stored version, each in one transaction with the new
    /// version; refuses a database a newer rota has migrated further. Nodes that connect at
    /// the same moment run the same transaction, and SurrealDB fails all but one of them on
    /// the conflict: a failed attempt reads the version again, and finds the work done.
    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        const ATTEMPTS: usize = 5;
        let mut attempt = 1;
        loop {
            match self.migrate_once().await {
                Err(StoreError::Surreal { .. } | StoreError::Conflict { .. })
                    if attempt < ATTEMPTS =>
                {
                    attempt += 1;
                }
                done => return done,
            }
        }
    }

    async fn migrate_once(&self) -> Result<(), StoreError> {
        const CONTEXT: &str = "migrating the schema";
        let mut found = self
            .db
            .query("SELECT VALUE version FROM ONLY rota_meta:schema")
            .await
            .map_err(fail(CONTEXT))?;
        let current: Option<i64> = found.take(0).unwrap_or(None);
        let current = current.unwrap_or(0);
        if current > VERSION {
            return Err(StoreError::Corrupt {
                what: "schema version",
                detail: format!(
                    "the database is at version {current}, this rota knows {VERSION}: \
                     upgrade rota on this node"
                ),
            });
        }
        for (done, migration) in
            (current..).zip(&MIGRATIONS[usize::try_from(current).unwrap_or(0)..])
        {
            let sql = format!(
                "BEGIN TRANSACTION; {migration} \
                 UPSERT rota_meta:schema SET version = {}; COMMIT TRANSACTION;",
                done + 1
            );
            self.db
                .query(sql)
                .await
                .and_then(surrealdb::IndexedResults::check)
                .map_err(fail(CONTEXT))?;
        }
        Ok(())
    }
}
