//! The DCV journal: a row per challenge response rota is about to publish, written before the
//! publish and deleted once the response is confirmed removed. At start, what is left is what
//! a crash left published, with the solver spec needed to take it down.

use rusqlite::{Connection, params};
use time::OffsetDateTime;

use rota_api::CertId;
use rota_api::DcvChallenge;
use rota_api::config::DcvSpec;

use super::codec::{Context as _, corrupt, decode_cert_id, decode_time, encode_time, unencodable};
use crate::{DcvJournalEntry, StoreError};

/// A journal entry encoded for its row, built before taking the connection.
pub(super) struct NewEntry {
    renewal_id: i64,
    cert_id: CertId,
    dcv: String,
    challenge: String,
    journalled_at: String,
}

impl NewEntry {
    /// Encodes the solver spec and challenge as JSON and the time as text.
    pub(super) fn encode(
        renewal_id: i64,
        cert_id: &CertId,
        dcv: &DcvSpec,
        challenge: &DcvChallenge,
        at: OffsetDateTime,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            renewal_id,
            cert_id: cert_id.clone(),
            dcv: serde_json::to_string(dcv).map_err(unencodable("encoding the DCV solver spec"))?,
            challenge: serde_json::to_string(challenge)
                .map_err(unencodable("encoding the DCV challenge"))?,
            journalled_at: encode_time(at)?,
        })
    }
}

/// Inserts the entry and waits until it is on stable storage; returns its id.
pub(super) fn journal(conn: &Connection, entry: &NewEntry) -> Result<i64, StoreError> {
    // The connection runs synchronous=NORMAL, where a WAL commit reaches the disk only at the
    // next checkpoint. This commit precedes a publish a crash must be able to undo, so it
    // alone is made with FULL, which syncs the WAL before the commit returns.
    conn.pragma_update(None, "synchronous", "FULL")
        .context("setting synchronous=FULL for the DCV journal")?;
    let inserted = conn
        .prepare_cached(
            "INSERT INTO dcv_journal (renewal_id, cert_id, dcv, challenge, journalled_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
        )
        .and_then(|mut stmt| {
            stmt.query_row(
                params![
                    entry.renewal_id,
                    entry.cert_id.as_str(),
                    entry.dcv,
                    entry.challenge,
                    entry.journalled_at
                ],
                |row| row.get(0),
            )
        })
        .context("journalling a DCV publish");
    // Restored whether or not the insert worked, so later writes stay cheap.
    let restored = conn
        .pragma_update(None, "synchronous", "NORMAL")
        .context("restoring synchronous=NORMAL");
    let id = inserted?;
    restored?;
    Ok(id)
}

/// Deletes an entry; an entry already gone is not an error (clearing is retried after crashes).
pub(super) fn clear(conn: &Connection, journal_id: i64) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM dcv_journal WHERE id = ?1")
        .and_then(|mut stmt| stmt.execute([journal_id]))
        .context("clearing a DCV journal entry")?;
    Ok(())
}

/// Every entry not yet cleared, oldest first.
pub(super) fn pending(conn: &Connection) -> Result<Vec<DcvJournalEntry>, StoreError> {
    const CONTEXT: &str = "reading the DCV journal";
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, renewal_id, cert_id, dcv, challenge, journalled_at FROM dcv_journal \
             ORDER BY journalled_at, id",
        )
        .context(CONTEXT)?;
    let mut rows = stmt.query([]).context(CONTEXT)?;
    let mut entries = Vec::new();
    while let Some(row) = rows.next().context(CONTEXT)? {
        let text = |i| row.get::<_, String>(i).context(CONTEXT);
        entries.push(DcvJournalEntry {
            id: row.get(0).context(CONTEXT)?,
            renewal_id: row.get(1).context(CONTEXT)?,
            cert_id: decode_cert_id(&text(2)?)?,
            dcv: serde_json::from_str(&text(3)?).map_err(corrupt("dcv_journal.dcv"))?,
            challenge: serde_json::from_str(&text(4)?).map_err(corrupt("dcv_journal.challenge"))?,
            journalled_at: decode_time(&text(5)?, "dcv_journal.journalled_at")?,
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use rota_api::config::WebrootDcv;
    use time::macros::datetime;

    use super::*;

    #[test]
    fn journalling_restores_normal_sync() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::migrate::run(&mut conn).unwrap();
        conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
        let challenge = DcvChallenge::Http01 {
            domain: "a.test".into(),
            token: "t".into(),
            key_authorization: "t.k".into(),
        };
        let dcv = DcvSpec::Webroot(WebrootDcv {
            directory: "/srv/www".into(),
        });
        let at = datetime!(2025-01-01 00:00 UTC);
        let entry = NewEntry::encode(1, &CertId::new("a").unwrap(), &dcv, &challenge, at).unwrap();
        journal(&conn, &entry).unwrap();
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |row| row.get(0))
            .unwrap();
        assert_eq!(sync, 1, "NORMAL again for the writes that follow");
    }
}
