//! Per-cert state the reconciler reloads at start: issued certs (no private keys), conditions,
//! failure backoff, each cert's spec generation and the serials rota revoked.

use std::collections::{BTreeSet, HashMap};

use rusqlite::{Connection, params};
use time::OffsetDateTime;

use rota_api::status::{BackoffState, Condition};
use rota_api::{CertId, RevocationReason};

use super::codec::{
    Context as _, corrupt, decode_cert_id, decode_int, decode_time, encode_time, unencodable,
};
use crate::{IssuedCertRow, SpecGeneration, StoreError};

/// Inserts an issued cert.
pub(super) fn record_issued_cert(conn: &Connection, row: &IssuedCertRow) -> Result<(), StoreError> {
    let (not_after, issued_at) = (encode_time(row.not_after)?, encode_time(row.issued_at)?);
    conn.prepare_cached(
        "INSERT INTO issued_certs \
         (cert_id, renewal_id, cert_pem, chain_pem, serial, not_after, issued_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            row.cert_id.as_str(),
            row.renewal_id,
            row.cert_pem,
            row.chain_pem,
            row.serial,
            not_after,
            issued_at
        ])
    })
    .context("recording an issued cert")?;
    Ok(())
}

/// The cert's row with the latest `issued_at` (the later insert on a tie).
pub(super) fn latest_issued_cert(
    conn: &Connection,
    cert_id: &CertId,
) -> Result<Option<IssuedCertRow>, StoreError> {
    const CONTEXT: &str = "reading the latest issued cert";
    let mut stmt = conn
        .prepare_cached(
            "SELECT renewal_id, cert_pem, chain_pem, serial, not_after, issued_at \
             FROM issued_certs WHERE cert_id = ?1 ORDER BY issued_at DESC, id DESC LIMIT 1",
        )
        .context(CONTEXT)?;
    let mut rows = stmt.query([cert_id.as_str()]).context(CONTEXT)?;
    let Some(row) = rows.next().context(CONTEXT)? else {
        return Ok(None);
    };
    let text = |i| row.get::<_, String>(i).context(CONTEXT);
    Ok(Some(IssuedCertRow {
        cert_id: cert_id.clone(),
        renewal_id: row.get(0).context(CONTEXT)?,
        cert_pem: text(1)?,
        chain_pem: text(2)?,
        serial: text(3)?,
        not_after: decode_time(&text(4)?, "issued_certs.not_after")?,
        issued_at: decode_time(&text(5)?, "issued_certs.issued_at")?,
    }))
}

/// Replaces the cert's conditions in one statement; an empty set deletes the row.
pub(super) fn put_conditions(
    conn: &Connection,
    cert_id: &CertId,
    conditions: &[Condition],
) -> Result<(), StoreError> {
    const CONTEXT: &str = "writing conditions";
    if conditions.is_empty() {
        conn.prepare_cached("DELETE FROM conditions WHERE cert_id = ?1")
            .and_then(|mut stmt| stmt.execute([cert_id.as_str()]))
            .context(CONTEXT)?;
        return Ok(());
    }
    let json = serde_json::to_string(conditions).map_err(unencodable("encoding conditions"))?;
    conn.prepare_cached(
        "INSERT INTO conditions (cert_id, conditions) VALUES (?1, ?2) \
         ON CONFLICT (cert_id) DO UPDATE SET conditions = excluded.conditions",
    )
    .and_then(|mut stmt| stmt.execute(params![cert_id.as_str(), json]))
    .context(CONTEXT)?;
    Ok(())
}

/// Every cert's conditions.
pub(super) fn all_conditions(
    conn: &Connection,
) -> Result<HashMap<CertId, Vec<Condition>>, StoreError> {
    const CONTEXT: &str = "reading conditions";
    let mut stmt = conn
        .prepare_cached("SELECT cert_id, conditions FROM conditions")
        .context(CONTEXT)?;
    let mut rows = stmt.query([]).context(CONTEXT)?;
    let mut all = HashMap::new();
    while let Some(row) = rows.next().context(CONTEXT)? {
        let cert_id: String = row.get(0).context(CONTEXT)?;
        let json: String = row.get(1).context(CONTEXT)?;
        all.insert(
            decode_cert_id(&cert_id)?,
            serde_json::from_str(&json).map_err(corrupt("conditions.conditions"))?,
        );
    }
    Ok(all)
}

/// Sets or, with `None`, clears the cert's backoff.
pub(super) fn put_backoff(
    conn: &Connection,
    cert_id: &CertId,
    backoff: Option<&BackoffState>,
) -> Result<(), StoreError> {
    const CONTEXT: &str = "writing a backoff";
    let Some(backoff) = backoff else {
        conn.prepare_cached("DELETE FROM backoffs WHERE cert_id = ?1")
            .and_then(|mut stmt| stmt.execute([cert_id.as_str()]))
            .context(CONTEXT)?;
        return Ok(());
    };
    let next_attempt_at = encode_time(backoff.next_attempt_at)?;
    conn.prepare_cached(
        "INSERT INTO backoffs (cert_id, failures, next_attempt_at, generation) \
         VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (cert_id) DO UPDATE SET failures = excluded.failures, \
         next_attempt_at = excluded.next_attempt_at, generation = excluded.generation",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            cert_id.as_str(),
            backoff.failures,
            next_attempt_at,
            backoff.generation
        ])
    })
    .context(CONTEXT)?;
    Ok(())
}

/// Every cert's backoff.
pub(super) fn backoffs(conn: &Connection) -> Result<HashMap<CertId, BackoffState>, StoreError> {
    const CONTEXT: &str = "reading backoffs";
    let mut stmt = conn
        .prepare_cached("SELECT cert_id, failures, next_attempt_at, generation FROM backoffs")
        .context(CONTEXT)?;
    let mut rows = stmt.query([]).context(CONTEXT)?;
    let mut all = HashMap::new();
    while let Some(row) = rows.next().context(CONTEXT)? {
        let cert_id: String = row.get(0).context(CONTEXT)?;
        let next_attempt_at: String = row.get(2).context(CONTEXT)?;
        all.insert(
            decode_cert_id(&cert_id)?,
            BackoffState {
                failures: decode_int(row.get(1).context(CONTEXT)?, "backoffs.failures")?,
                next_attempt_at: decode_time(&next_attempt_at, "backoffs.next_attempt_at")?,
                generation: decode_int(row.get(3).context(CONTEXT)?, "backoffs.generation")?,
            },
        );
    }
    Ok(all)
}

/// Sets the cert's spec hash and generation.
pub(super) fn put_spec_generation(
    conn: &Connection,
    cert_id: &CertId,
    generation: SpecGeneration,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO spec_generations (cert_id, spec_hash, generation) VALUES (?1, ?2, ?3) \
         ON CONFLICT (cert_id) DO UPDATE SET spec_hash = excluded.spec_hash, \
         generation = excluded.generation",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            cert_id.as_str(),
            generation.spec_hash,
            generation.generation
        ])
    })
    .context("writing a spec generation")?;
    Ok(())
}

/// Every cert's spec hash and generation.
pub(super) fn spec_generations(
    conn: &Connection,
) -> Result<HashMap<CertId, SpecGeneration>, StoreError> {
    const CONTEXT: &str = "reading spec generations";
    let mut stmt = conn
        .prepare_cached("SELECT cert_id, spec_hash, generation FROM spec_generations")
        .context(CONTEXT)?;
    let mut rows = stmt.query([]).context(CONTEXT)?;
    let mut all = HashMap::new();
    while let Some(row) = rows.next().context(CONTEXT)? {
        let cert_id: String = row.get(0).context(CONTEXT)?;
        let generation = SpecGeneration {
            spec_hash: decode_int(row.get(1).context(CONTEXT)?, "spec_generations.spec_hash")?,
            generation: decode_int(row.get(2).context(CONTEXT)?, "spec_generations.generation")?,
        };
        all.insert(decode_cert_id(&cert_id)?, generation);
    }
    Ok(all)
}

/// Records a revocation; recording the same serial again keeps the first row.
pub(super) fn record_revocation(
    conn: &Connection,
    cert_id: &CertId,
    serial: &str,
    reason: RevocationReason,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    let at = encode_time(at)?;
    conn.prepare_cached(
        "INSERT INTO revocations (cert_id, serial, reason, revoked_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (cert_id, serial) DO NOTHING",
    )
    .and_then(|mut stmt| stmt.execute(params![cert_id.as_str(), serial, reason.as_str(), at]))
    .context("writing a revocation")?;
    Ok(())
}

/// Every revoked serial, per cert.
pub(super) fn revoked_serials(
    conn: &Connection,
) -> Result<HashMap<CertId, BTreeSet<String>>, StoreError> {
    const CONTEXT: &str = "reading revocations";
    let mut stmt = conn
        .prepare_cached("SELECT cert_id, serial FROM revocations")
        .context(CONTEXT)?;
    let mut rows = stmt.query([]).context(CONTEXT)?;
    let mut all: HashMap<CertId, BTreeSet<String>> = HashMap::new();
    while let Some(row) = rows.next().context(CONTEXT)? {
        let cert_id: String = row.get(0).context(CONTEXT)?;
        let serial: String = row.get(1).context(CONTEXT)?;
        all.entry(decode_cert_id(&cert_id)?)
            .or_default()
            .insert(serial);
    }
    Ok(all)
}
