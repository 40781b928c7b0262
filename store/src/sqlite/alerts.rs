//! What rotad remembers about alerts: the open episode of each cert and kind (so a restart
//! neither forgets that an alert went out nor sends it again), and every delivery to every
//! sink, the audit trail of alerts, whose newest row per sink `rota describe cert` shows.

use std::collections::HashMap;

use rusqlite::{Connection, params};

use rota_api::wire::AlertDelivery;
use rota_api::{AlertKind, CertId};

use super::codec::{
    Context as _, decode_cert_id, decode_enum, decode_int, decode_time, encode_time,
};
use crate::{AlertDeliveryCount, AlertEpisode, StoreError};

/// Opens or updates (`Some`) or closes (`None`) the cert's episode of `kind`.
pub(super) fn put_episode(
    conn: &Connection,
    cert_id: &CertId,
    kind: AlertKind,
    episode: Option<&AlertEpisode>,
) -> Result<(), StoreError> {
    const CONTEXT: &str = "writing an alert episode";
    let Some(episode) = episode else {
        conn.prepare_cached("DELETE FROM alert_episodes WHERE cert_id = ?1 AND kind = ?2")
            .and_then(|mut stmt| stmt.execute([cert_id.as_str(), kind.as_str()]))
            .context(CONTEXT)?;
        return Ok(());
    };
    let (since, last_sent_at) = (
        encode_time(episode.since)?,
        encode_time(episode.last_sent_at)?,
    );
    conn.prepare_cached(
        "INSERT INTO alert_episodes (cert_id, kind, since, last_sent_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (cert_id, kind) DO UPDATE SET since = excluded.since, \
         last_sent_at = excluded.last_sent_at",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            cert_id.as_str(),
            kind.as_str(),
            since,
            last_sent_at
        ])
    })
    .context(CONTEXT)?;
    Ok(())
}

/// Every open episode, per cert and kind.
pub(super) fn episodes(
    conn: &Connection,
) -> Result<HashMap<CertId, HashMap<AlertKind, AlertEpisode>>, StoreError> {
    const CONTEXT: &str = "reading alert episodes";
    let mut stmt = conn
        .prepare_cached("SELECT cert_id, kind, since, last_sent_at FROM alert_episodes")
        .context(CONTEXT)?;
    let mut rows = stmt.query([]).context(CONTEXT)?;
    let mut all: HashMap<CertId, HashMap<AlertKind, AlertEpisode>> = HashMap::new();
    while let Some(row) = rows.next().context(CONTEXT)? {
        let text = |i| row.get::<_, String>(i).context(CONTEXT);
        let kind = decode_enum(&text(1)?, AlertKind::parse, "alert_episodes.kind")?;
        let episode = AlertEpisode {
            since: decode_time(&text(2)?, "alert_episodes.since")?,
            last_sent_at: decode_time(&text(3)?, "alert_episodes.last_sent_at")?,
        };
        all.entry(decode_cert_id(&text(0)?)?)
            .or_default()
            .insert(kind, episode);
    }
    Ok(all)
}

/// Appends one delivery to the audit trail.
pub(super) fn record_delivery(
    conn: &Connection,
    cert_id: &CertId,
    delivery: &AlertDelivery,
) -> Result<(), StoreError> {
    let at = encode_time(delivery.at)?;
    let sink = i64::try_from(delivery.sink).unwrap_or(i64::MAX);
    conn.prepare_cached(
        "INSERT INTO alert_deliveries (cert_id, sink, sink_label, kind, at, error) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            cert_id.as_str(),
            sink,
            delivery.sink_label,
            delivery.kind.as_str(),
            at,
            delivery.error
        ])
    })
    .context("recording an alert delivery")?;
    Ok(())
}

/// Deliveries counted by sink label and result.
pub(super) fn delivery_counts(conn: &Connection) -> Result<Vec<AlertDeliveryCount>, StoreError> {
    const CONTEXT: &str = "counting alert deliveries";
    let mut stmt = conn
        .prepare_cached(
            "SELECT sink_label, error IS NULL, count(*) FROM alert_deliveries \
             GROUP BY sink_label, error IS NULL ORDER BY sink_label",
        )
        .context(CONTEXT)?;
    let mut rows = stmt.query([]).context(CONTEXT)?;
    let mut counts = Vec::new();
    while let Some(row) = rows.next().context(CONTEXT)? {
        let count: i64 = row.get(2).context(CONTEXT)?;
        counts.push(AlertDeliveryCount {
            sink_label: row.get(0).context(CONTEXT)?,
            delivered: row.get(1).context(CONTEXT)?,
            count: decode_int(count, "alert_deliveries count")?,
        });
    }
    Ok(counts)
}

/// The newest delivery to each sink about `cert_id`, by sink.
pub(super) fn last_deliveries(
    conn: &Connection,
    cert_id: &CertId,
) -> Result<Vec<AlertDelivery>, StoreError> {
    const CONTEXT: &str = "reading alert deliveries";
    let mut stmt = conn
        .prepare_cached(
            "SELECT sink, sink_label, kind, at, error FROM alert_deliveries WHERE id IN \
             (SELECT max(id) FROM alert_deliveries WHERE cert_id = ?1 GROUP BY sink) \
             ORDER BY sink",
        )
        .context(CONTEXT)?;
    let mut rows = stmt.query([cert_id.as_str()]).context(CONTEXT)?;
    let mut last = Vec::new();
    while let Some(row) = rows.next().context(CONTEXT)? {
        let text = |i| row.get::<_, String>(i).context(CONTEXT);
        last.push(AlertDelivery {
            sink: decode_int(row.get(0).context(CONTEXT)?, "alert_deliveries.sink")?,
            sink_label: text(1)?,
            kind: decode_enum(&text(2)?, AlertKind::parse, "alert_deliveries.kind")?,
            at: decode_time(&text(3)?, "alert_deliveries.at")?,
            error: row.get(4).context(CONTEXT)?,
        });
    }
    Ok(last)
}
