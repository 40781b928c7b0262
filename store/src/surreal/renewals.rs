//! Renewal rows, their step events and the DCV journal on SurrealDB. Rows are keyed by the
//! number the reconciler knows them by (`renewal:42`), drawn from a database sequence so that
//! nodes sharing the database never hand out the same one.

use std::collections::HashMap;

use surrealdb::types::{SurrealValue, Value};
use time::OffsetDateTime;

use rota_api::config::DcvSpec;
use rota_api::status::{Reason, RenewalRecord, RenewalStatus, Step, StepEvent, StepStatus};
use rota_api::{CertId, DcvChallenge};

use super::{SurrealStore, Vars, time_field};
use crate::codec::{corrupt, decode_cert_id, decode_enum, decode_int, decode_time};
use crate::{DcvJournalEntry, RenewalOutcome, StoreError};

/// The error recorded on rows that were still running when their node's rotad stopped.
const INTERRUPTED_ERROR: &str = "rotad stopped before this renewal finished";

/// The fields [`RenewalRow`] reads.
const RENEWAL_FIELDS: &str =
    "num, cert_id, trigger, status, error, started_at, finished_at, dry_run";

/// A `renewal` row as stored.
#[derive(SurrealValue)]
#[surreal(crate = "surrealdb::types")]
struct RenewalRow {
    num: i64,
    cert_id: String,
    trigger: String,
    status: String,
    error: Option<String>,
    started_at: String,
    finished_at: Option<String>,
    dry_run: bool,
}

impl RenewalRow {
    fn decode(self) -> Result<RenewalRecord, StoreError> {
        Ok(RenewalRecord {
            id: self.num,
            cert_id: decode_cert_id(&self.cert_id)?,
            trigger: decode_enum(&self.trigger, Reason::parse, "renewal.trigger")?,
            status: decode_enum(&self.status, RenewalStatus::parse, "renewal.status")?,
            error: self.error,
            started_at: decode_time(&self.started_at, "renewal.started_at")?,
            finished_at: self
                .finished_at
                .map(|t| decode_time(&t, "renewal.finished_at"))
                .transpose()?,
            dry_run: self.dry_run,
        })
    }
}

fn decode_all(rows: Vec<RenewalRow>) -> Result<Vec<RenewalRecord>, StoreError> {
    rows.into_iter().map(RenewalRow::decode).collect()
}

/// A `renewal_step` row as stored.
#[derive(SurrealValue)]
#[surreal(crate = "surrealdb::types")]
struct StepRow {
    seq: i64,
    step: String,
    status: String,
    message: String,
    at: String,
}

/// A `dcv_journal` row as stored.
#[derive(SurrealValue)]
#[surreal(crate = "surrealdb::types")]
struct JournalRow {
    num: i64,
    renewal: i64,
    cert_id: String,
    dcv: String,
    challenge: String,
    journalled_at: String,
}

impl SurrealStore {
    /// Creates a `running` row numbered from the sequence, marked as a dry run when it is one.
    pub(super) async fn open(
        &self,
        cert_id: &CertId,
        trigger: Reason,
        at: OffsetDateTime,
        dry_run: bool,
    ) -> Result<RenewalRecord, StoreError> {
        let vars = Vars::new()
            .with("cert", cert_id.as_str())
            .with("trigger", trigger.as_str())
            .with("status", RenewalStatus::Running.as_str())
            .with("at", time_field(at)?)
            .with("dry_run", dry_run);
        // Dry runs change nothing live, and a cluster sync installs what the leader issued:
        // a follower may audit both.
        let guard = if dry_run || trigger == Reason::ClusterSync {
            String::new()
        } else {
            self.fence_guard()
        };
        let created: Option<RenewalRow> = self
            .last(
                "opening a renewal",
                &format!(
                    "BEGIN TRANSACTION; {guard} \
                     LET $num = sequence::nextval('renewal_num'); \
                     LET $created = (CREATE ONLY type::record('renewal', $num) CONTENT {{ \
                       num: $num, cert_id: $cert, node: $node, trigger: $trigger, \
                       status: $status, started_at: $at, dry_run: $dry_run \
                     }} RETURN {RENEWAL_FIELDS}); \
                     COMMIT TRANSACTION; \
                     RETURN $created;"
                ),
                vars,
            )
            .await
            .map_err(|e| self.fenced(e))?;
        created
            .ok_or_else(|| corrupt("renewal")("CREATE returned nothing"))?
            .decode()
    }

    /// Appends a step event with the next `seq` of its renewal (1 for the first).
    pub(super) async fn step(
        &self,
        renewal_id: i64,
        step: Step,
        status: StepStatus,
        message: &str,
        at: OffsetDateTime,
    ) -> Result<StepEvent, StoreError> {
        let _numbering = self.steps.lock().await;
        let vars = Vars::new()
            .with("renewal", renewal_id)
            .with("step", step.as_str())
            .with("status", status.as_str())
            .with("message", message)
            .with("at", time_field(at)?);
        // Steps are never deleted, so the count is the last seq; the unique index on
        // (renewal, seq) refuses a duplicate should another node race this one.
        let seq: Option<i64> = self
            .last(
                "recording a renewal step",
                "IF record::exists(type::record('renewal', $renewal)) = false { \
                   THROW 'there is no renewal ' + <string> $renewal; \
                 }; \
                 LET $seq = count(SELECT seq FROM renewal_step WHERE renewal = $renewal) + 1; \
                 CREATE renewal_step CONTENT { \
                   renewal: $renewal, seq: $seq, step: $step, status: $status, \
                   message: $message, at: $at \
                 }; \
                 RETURN $seq;",
                vars,
            )
            .await?;
        Ok(StepEvent {
            renewal_id,
            seq: decode_int(seq.unwrap_or_default(), "renewal_step.seq")?,
            step,
            status,
            message: message.to_owned(),
            at,
        })
    }

    /// Sets a renewal's final status; fails if there is no such renewal.
    pub(super) async fn close(
        &self,
        renewal_id: i64,
        status: RenewalStatus,
        error: Option<&str>,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let vars = Vars::new()
            .with("num", renewal_id)
            .with("status", status.as_str())
            .with("error", error.map(str::to_owned))
            .with("at", time_field(at)?);
        let changed: Vec<Value> = self
            .last(
                "closing a renewal",
                "UPDATE type::record('renewal', $num) \
                 SET status = $status, error = $error, finished_at = $at RETURN num;",
                vars,
            )
            .await?;
        if changed.is_empty() {
            return Err(StoreError::Surreal {
                context: "closing a renewal",
                detail: format!("there is no renewal {renewal_id}"),
            });
        }
        Ok(())
    }

    /// Closes this node's `running` rows as `interrupted` and returns them, by number.
    pub(super) async fn interrupt_running(
        &self,
        at: OffsetDateTime,
    ) -> Result<Vec<RenewalRecord>, StoreError> {
        let vars = Vars::new()
            .with("running", RenewalStatus::Running.as_str())
            .with("interrupted", RenewalStatus::Interrupted.as_str())
            .with("error", INTERRUPTED_ERROR)
            .with("at", time_field(at)?);
        let rows: Vec<RenewalRow> = self
            .last(
                "interrupting open renewals",
                &format!(
                    "UPDATE renewal SET status = $interrupted, error = $error, finished_at = $at \
                     WHERE status = $running AND node = $node RETURN {RENEWAL_FIELDS};"
                ),
                vars,
            )
            .await?;
        let mut interrupted = decode_all(rows)?;
        interrupted.sort_by_key(|r| r.id);
        Ok(interrupted)
    }

    /// One renewal by number.
    pub(super) async fn renewal_by_num(
        &self,
        renewal_id: i64,
    ) -> Result<Option<RenewalRecord>, StoreError> {
        let rows: Vec<RenewalRow> = self
            .last(
                "reading a renewal",
                &format!("SELECT {RENEWAL_FIELDS} FROM type::record('renewal', $num);"),
                Vars::new().with("num", renewal_id),
            )
            .await?;
        rows.into_iter().next().map(RenewalRow::decode).transpose()
    }

    /// A cert's `limit` newest renewals, newest first.
    pub(super) async fn newest_first(
        &self,
        cert_id: &CertId,
        limit: usize,
    ) -> Result<Vec<RenewalRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<RenewalRow> = self
            .last(
                "listing renewals",
                &format!(
                    "SELECT {RENEWAL_FIELDS} FROM renewal WHERE cert_id = $cert \
                     ORDER BY started_at DESC, num DESC LIMIT $limit;"
                ),
                Vars::new()
                    .with("cert", cert_id.as_str())
                    .with("limit", limit),
            )
            .await?;
        decode_all(rows)
    }

    /// Each cert's newest renewal; with `live_only`, dry runs are left out.
    pub(super) async fn newest_per_cert(
        &self,
        live_only: bool,
    ) -> Result<HashMap<CertId, RenewalRecord>, StoreError> {
        let filter = if live_only {
            "WHERE dry_run = false"
        } else {
            ""
        };
        let rows: Vec<RenewalRow> = self
            .last(
                "reading the last renewals",
                &format!(
                    "SELECT {RENEWAL_FIELDS} FROM renewal {filter} \
                     ORDER BY started_at DESC, num DESC;"
                ),
                Vars::new(),
            )
            .await?;
        let mut newest = HashMap::new();
        for record in decode_all(rows)? {
            newest.entry(record.cert_id.clone()).or_insert(record);
        }
        Ok(newest)
    }

    /// Every finished renewal: its cert, status and running time.
    pub(super) async fn outcomes(&self) -> Result<Vec<RenewalOutcome>, StoreError> {
        let rows: Vec<RenewalRow> = self
            .last(
                "reading renewal outcomes",
                &format!("SELECT {RENEWAL_FIELDS} FROM renewal WHERE finished_at != NONE;"),
                Vars::new(),
            )
            .await?;
        decode_all(rows)?
            .into_iter()
            .map(|r| {
                let finished = r.finished_at.unwrap_or(r.started_at);
                Ok(RenewalOutcome {
                    seconds: (finished - r.started_at).as_seconds_f64().max(0.0),
                    cert_id: r.cert_id,
                    status: r.status,
                })
            })
            .collect()
    }

    /// A renewal's step events by `seq`.
    pub(super) async fn steps_of(&self, renewal_id: i64) -> Result<Vec<StepEvent>, StoreError> {
        let rows: Vec<StepRow> = self
            .last(
                "reading renewal steps",
                "SELECT seq, step, status, message, at FROM renewal_step \
                 WHERE renewal = $renewal ORDER BY seq;",
                Vars::new().with("renewal", renewal_id),
            )
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok(StepEvent {
                    renewal_id,
                    seq: decode_int(row.seq, "renewal_step.seq")?,
                    step: decode_enum(&row.step, Step::parse, "renewal_step.step")?,
                    status: decode_enum(&row.status, StepStatus::parse, "renewal_step.status")?,
                    message: row.message,
                    at: decode_time(&row.at, "renewal_step.at")?,
                })
            })
            .collect()
    }

    /// Journals a DCV publish before it is made; returns the journal number.
    pub(super) async fn journal(
        &self,
        renewal_id: i64,
        cert_id: &CertId,
        dcv: &DcvSpec,
        challenge: &DcvChallenge,
        at: OffsetDateTime,
    ) -> Result<i64, StoreError> {
        let encode = |what: &'static str, e: serde_json::Error| StoreError::Surreal {
            context: what,
            detail: e.to_string(),
        };
        let vars = Vars::new()
            .with("renewal", renewal_id)
            .with("cert", cert_id.as_str())
            .with(
                "dcv",
                serde_json::to_string(dcv)
                    .map_err(|e| encode("encoding the DCV solver spec", e))?,
            )
            .with(
                "challenge",
                serde_json::to_string(challenge)
                    .map_err(|e| encode("encoding the DCV challenge", e))?,
            )
            .with("at", time_field(at)?);
        let num: Option<i64> = self
            .last(
                "journalling a DCV publish",
                "LET $num = sequence::nextval('dcv_num'); \
                 CREATE type::record('dcv_journal', $num) CONTENT { \
                   num: $num, renewal: $renewal, cert_id: $cert, node: $node, dcv: $dcv, \
                   challenge: $challenge, journalled_at: $at \
                 }; \
                 RETURN $num;",
                vars,
            )
            .await?;
        num.ok_or_else(|| corrupt("dcv_journal")("CREATE returned nothing"))
    }

    /// Drops a journal entry.
    pub(super) async fn clear_journal(&self, journal_id: i64) -> Result<(), StoreError> {
        let _: Vec<Value> = self
            .last(
                "clearing a DCV journal entry",
                "DELETE type::record('dcv_journal', $num);",
                Vars::new().with("num", journal_id),
            )
            .await?;
        Ok(())
    }

    /// This node's journal entries not yet cleared, oldest first: another node's entries
    /// are that node's to remove, with its own solver credentials.
    pub(super) async fn pending_journal(&self) -> Result<Vec<DcvJournalEntry>, StoreError> {
        let rows: Vec<JournalRow> = self
            .last(
                "reading the DCV journal",
                "SELECT num, renewal, cert_id, dcv, challenge, journalled_at FROM dcv_journal \
                 WHERE node = $node ORDER BY journalled_at, num;",
                Vars::new(),
            )
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok(DcvJournalEntry {
                    id: row.num,
                    renewal_id: row.renewal,
                    cert_id: decode_cert_id(&row.cert_id)?,
                    dcv: serde_json::from_str(&row.dcv).map_err(corrupt("dcv_journal.dcv"))?,
                    challenge: serde_json::from_str(&row.challenge)
                        .map_err(corrupt("dcv_journal.challenge"))?,
                    journalled_at: decode_time(&row.journalled_at, "dcv_journal.journalled_at")?,
                })
            })
            .collect()
    }
}
