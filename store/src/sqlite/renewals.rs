//! Renewal rows and their step events: the audit trail proper. "Newest" means latest
//! `started_at`, with the id breaking ties between renewals opened in the same instant.

use std::collections::HashMap;

use rusqlite::{Connection, Row, params};
use time::OffsetDateTime;

use rota_api::CertId;
use rota_api::status::{Reason, RenewalRecord, RenewalStatus, Step, StepEvent, StepStatus};

use super::codec::{
    Context as _, decode_cert_id, decode_enum, decode_int, decode_time, encode_time,
};
use crate::{RenewalOutcome, StoreError};

/// The error recorded on rows that were still running when rotad stopped.
const INTERRUPTED_ERROR: &str = "rotad stopped before this renewal finished";

/// The columns [`decode_renewal`] reads, in its order.
macro_rules! renewal_columns {
    () => {
        "id, cert_id, trigger, status, error, started_at, finished_at, dry_run"
    };
}

/// Inserts a `running` row, marked as a dry run when it is one.
pub(super) fn open(
    conn: &Connection,
    cert_id: &CertId,
    trigger: Reason,
    at: OffsetDateTime,
    dry_run: bool,
) -> Result<RenewalRecord, StoreError> {
    const CONTEXT: &str = "opening a renewal";
    let mut stmt = conn
        .prepare_cached(concat!(
            "INSERT INTO renewals (cert_id, trigger, status, started_at, dry_run) \
             VALUES (?1, ?2, ?3, ?4, ?5) RETURNING ",
            renewal_columns!()
        ))
        .context(CONTEXT)?;
    let rows = stmt
        .query(params![
            cert_id.as_str(),
            trigger.as_str(),
            RenewalStatus::Running.as_str(),
            encode_time(at)?,
            dry_run
        ])
        .context(CONTEXT)?;
    first_renewal(rows, CONTEXT)?
        .ok_or(rusqlite::Error::QueryReturnedNoRows)
        .context(CONTEXT)
}

/// Appends a step event with the next `seq` of its renewal (1 for the first).
pub(super) fn record_step(
    conn: &Connection,
    renewal_id: i64,
    step: Step,
    status: StepStatus,
    message: &str,
    at: OffsetDateTime,
) -> Result<StepEvent, StoreError> {
    let at_text = encode_time(at)?;
    // One statement, so reading the last seq and inserting the next are one transaction;
    // the primary key refuses a duplicate seq should another process race it anyway.
    let seq: i64 = conn
        .prepare_cached(
            "INSERT INTO renewal_steps (renewal_id, seq, step, status, message, at) \
             SELECT ?1, coalesce(max(seq), 0) + 1, ?2, ?3, ?4, ?5 \
             FROM renewal_steps WHERE renewal_id = ?1 \
             RETURNING seq",
        )
        .and_then(|mut stmt| {
            stmt.query_row(
                params![renewal_id, step.as_str(), status.as_str(), message, at_text],
                |row| row.get(0),
            )
        })
        .context("recording a renewal step")?;
    Ok(StepEvent {
        renewal_id,
        seq: decode_int(seq, "renewal_steps.seq")?,
        step,
        status,
        message: message.to_owned(),
        at,
    })
}

/// Sets a renewal's final status; fails if there is no such renewal.
pub(super) fn close(
    conn: &Connection,
    renewal_id: i64,
    status: RenewalStatus,
    error: Option<&str>,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    let at_text = encode_time(at)?;
    let changed = conn
        .prepare_cached(
            "UPDATE renewals SET status = ?2, error = ?3, finished_at = ?4 WHERE id = ?1",
        )
        .and_then(|mut stmt| stmt.execute(params![renewal_id, status.as_str(), error, at_text]))
        .context("closing a renewal")?;
    if changed == 0 {
        return Err(StoreError::Sqlite {
            context: "closing a renewal that does not exist",
            source: rusqlite::Error::QueryReturnedNoRows,
        });
    }
    Ok(())
}

/// Closes every `running` row as `interrupted` and returns those rows as updated, by id.
pub(super) fn interrupt_running(
    conn: &Connection,
    at: OffsetDateTime,
) -> Result<Vec<RenewalRecord>, StoreError> {
    let mut stmt = conn
        .prepare_cached(concat!(
            "UPDATE renewals SET status = ?1, error = ?2, finished_at = ?3 WHERE status = ?4 \
             RETURNING ",
            renewal_columns!()
        ))
        .context("interrupting open renewals")?;
    let rows = stmt
        .query(params![
            RenewalStatus::Interrupted.as_str(),
            INTERRUPTED_ERROR,
            encode_time(at)?,
            RenewalStatus::Running.as_str()
        ])
        .context("interrupting open renewals")?;
    // RETURNING yields rows in no particular order.
    let mut interrupted = collect_renewals(rows, "interrupting open renewals")?;
    interrupted.sort_by_key(|r| r.id);
    Ok(interrupted)
}

/// One renewal by id.
pub(super) fn by_id(
    conn: &Connection,
    renewal_id: i64,
) -> Result<Option<RenewalRecord>, StoreError> {
    const CONTEXT: &str = "reading a renewal";
    let mut stmt = conn
        .prepare_cached(concat!(
            "SELECT ",
            renewal_columns!(),
            " FROM renewals WHERE id = ?1"
        ))
        .context(CONTEXT)?;
    let rows = stmt.query([renewal_id]).context(CONTEXT)?;
    first_renewal(rows, CONTEXT)
}

/// A cert's `limit` newest renewals, newest first.
pub(super) fn newest_first(
    conn: &Connection,
    cert_id: &CertId,
    limit: usize,
) -> Result<Vec<RenewalRecord>, StoreError> {
    // Anything above i64::MAX means "all of them" to a caller.
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn
        .prepare_cached(concat!(
            "SELECT ",
            renewal_columns!(),
            " FROM renewals WHERE cert_id = ?1 ORDER BY started_at DESC, id DESC LIMIT ?2"
        ))
        .context("listing renewals")?;
    let rows = stmt
        .query(params![cert_id.as_str(), limit])
        .context("listing renewals")?;
    collect_renewals(rows, "listing renewals")
}

/// The status of each cert's newest live renewal (dry runs change nothing live).
pub(super) fn last_statuses(
    conn: &Connection,
) -> Result<HashMap<CertId, RenewalStatus>, StoreError> {
    const CONTEXT: &str = "reading the last renewal statuses";
    // Both halves read only the covering partial index `renewals_live_by_cert`: the distinct
    // cert ids come off it in order, and each cert's newest live row is the first entry of
    // its range. About 25 ms
    // for 10,000 certs with 20 renewals each (a window function over all rows took 150).
    let mut stmt = conn
        .prepare_cached(
            "SELECT cert_id, ( \
               SELECT status FROM renewals AS newest \
               WHERE newest.cert_id = certs.cert_id AND newest.dry_run = 0 \
               ORDER BY started_at DESC, id DESC LIMIT 1 \
             ) FROM (SELECT DISTINCT cert_id FROM renewals WHERE dry_run = 0) AS certs",
        )
        .context(CONTEXT)?;
    let mut rows = stmt.query([]).context(CONTEXT)?;
    let mut statuses = HashMap::new();
    while let Some(row) = rows.next().context(CONTEXT)? {
        let cert_id: String = row.get(0).context(CONTEXT)?;
        let status: String = row.get(1).context(CONTEXT)?;
        statuses.insert(
            decode_cert_id(&cert_id)?,
            decode_enum(&status, RenewalStatus::parse, "renewals.status")?,
        );
    }
    Ok(statuses)
}

/// Each cert's newest renewal row, found through the same index as [`last_statuses`].
pub(super) fn last_renewals(
    conn: &Connection,
) -> Result<HashMap<CertId, RenewalRecord>, StoreError> {
    const CONTEXT: &str = "reading the last renewals";
    let mut stmt = conn
        .prepare_cached(concat!(
            "SELECT ",
            renewal_columns!(),
            " FROM renewals WHERE id IN (SELECT ( \
               SELECT id FROM renewals AS newest WHERE newest.cert_id = certs.cert_id \
               ORDER BY started_at DESC, id DESC LIMIT 1 \
             ) FROM (SELECT DISTINCT cert_id FROM renewals) AS certs)"
        ))
        .context(CONTEXT)?;
    let rows = stmt.query([]).context(CONTEXT)?;
    Ok(collect_renewals(rows, CONTEXT)?
        .into_iter()
        .map(|r| (r.cert_id.clone(), r))
        .collect())
}

/// Every finished renewal: its cert, status and running time.
pub(super) fn outcomes(conn: &Connection) -> Result<Vec<RenewalOutcome>, StoreError> {
    const CONTEXT: &str = "reading renewal outcomes";
    let mut stmt = conn
        .prepare_cached(
            "SELECT cert_id, status, started_at, finished_at FROM renewals \
             WHERE finished_at IS NOT NULL",
        )
        .context(CONTEXT)?;
    let mut rows = stmt.query([]).context(CONTEXT)?;
    let mut outcomes = Vec::new();
    while let Some(row) = rows.next().context(CONTEXT)? {
        let cert_id: String = row.get(0).context(CONTEXT)?;
        let status: String = row.get(1).context(CONTEXT)?;
        let started: String = row.get(2).context(CONTEXT)?;
        let finished: String = row.get(3).context(CONTEXT)?;
        let ran = decode_time(&finished, "renewals.finished_at")?
            - decode_time(&started, "renewals.started_at")?;
        outcomes.push(RenewalOutcome {
            cert_id: decode_cert_id(&cert_id)?,
            status: decode_enum(&status, RenewalStatus::parse, "renewals.status")?,
            seconds: ran.as_seconds_f64().max(0.0),
        });
    }
    Ok(outcomes)
}

/// A renewal's step events by `seq`.
pub(super) fn steps(conn: &Connection, renewal_id: i64) -> Result<Vec<StepEvent>, StoreError> {
    const CONTEXT: &str = "reading renewal steps";
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, step, status, message, at FROM renewal_steps \
             WHERE renewal_id = ?1 ORDER BY seq",
        )
        .context(CONTEXT)?;
    let mut rows = stmt.query([renewal_id]).context(CONTEXT)?;
    let mut steps = Vec::new();
    while let Some(row) = rows.next().context(CONTEXT)? {
        let text = |i| row.get::<_, String>(i).context(CONTEXT);
        steps.push(StepEvent {
            renewal_id,
            seq: decode_int(row.get(0).context(CONTEXT)?, "renewal_steps.seq")?,
            step: decode_enum(&text(1)?, Step::parse, "renewal_steps.step")?,
            status: decode_enum(&text(2)?, StepStatus::parse, "renewal_steps.status")?,
            message: text(3)?,
            at: decode_time(&text(4)?, "renewal_steps.at")?,
        });
    }
    Ok(steps)
}

fn first_renewal(
    mut rows: rusqlite::Rows<'_>,
    context: &'static str,
) -> Result<Option<RenewalRecord>, StoreError> {
    rows.next()
        .context(context)?
        .map(decode_renewal)
        .transpose()
}

fn collect_renewals(
    mut rows: rusqlite::Rows<'_>,
    context: &'static str,
) -> Result<Vec<RenewalRecord>, StoreError> {
    let mut renewals = Vec::new();
    while let Some(row) = rows.next().context(context)? {
        renewals.push(decode_renewal(row)?);
    }
    Ok(renewals)
}

/// Reads a row selected with [`renewal_columns`].
fn decode_renewal(row: &Row<'_>) -> Result<RenewalRecord, StoreError> {
    const CONTEXT: &str = "reading a renewal";
    let text = |i| row.get::<_, String>(i).context(CONTEXT);
    let finished_at: Option<String> = row.get(6).context(CONTEXT)?;
    Ok(RenewalRecord {
        id: row.get(0).context(CONTEXT)?,
        cert_id: decode_cert_id(&text(1)?)?,
        trigger: decode_enum(&text(2)?, Reason::parse, "renewals.trigger")?,
        status: decode_enum(&text(3)?, RenewalStatus::parse, "renewals.status")?,
        error: row.get(4).context(CONTEXT)?,
        started_at: decode_time(&text(5)?, "renewals.started_at")?,
        finished_at: finished_at
            .map(|t| decode_time(&t, "renewals.finished_at"))
            .transpose()?,
        dry_run: row.get(7).context(CONTEXT)?,
    })
}
