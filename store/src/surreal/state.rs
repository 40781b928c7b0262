//! Per-cert state on SurrealDB — issued certs, conditions, backoffs, spec generations,
//! revocations — and the alert episodes and deliveries. State rows are keyed by cert (and
//! kind or serial), so a write is one `UPSERT` of a known record.

use std::collections::{BTreeSet, HashMap};

use surrealdb::types::SurrealValue;
use time::OffsetDateTime;

use rota_api::status::{BackoffState, Condition};
use rota_api::wire::AlertDelivery;
use rota_api::{AlertKind, CertId, RevocationReason};

use super::{SurrealStore, Vars, time_field};
use crate::codec::{corrupt, decode_cert_id, decode_enum, decode_int, decode_time};
use crate::{AlertDeliveryCount, AlertEpisode, IssuedCertRow, SpecGeneration, StoreError};

/// An `issued_cert` row as stored.
#[derive(SurrealValue)]
#[surreal(crate = "surrealdb::types")]
struct IssuedRow {
    num: i64,
    renewal: i64,
    cert_pem: String,
    chain_pem: String,
    serial: String,
    not_after: String,
    issued_at: String,
}

/// A `backoff` row as stored.
#[derive(SurrealValue)]
#[surreal(crate = "surrealdb::types")]
struct BackoffRow {
    cert_id: String,
    failures: i64,
    next_attempt_at: String,
    generation: i64,
}

/// A `spec_generation` row as stored.
#[derive(SurrealValue)]
#[surreal(crate = "surrealdb::types")]
struct GenerationRow {
    cert_id: String,
    spec_hash: i64,
    generation: i64,
}

/// An `alert_episode` row as stored.
#[derive(SurrealValue)]
#[surreal(crate = "surrealdb::types")]
struct EpisodeRow {
    cert_id: String,
    kind: String,
    since: String,
    last_sent_at: String,
}

/// An `alert_delivery` row as stored.
#[derive(SurrealValue)]
#[surreal(crate = "surrealdb::types")]
struct DeliveryRow {
    num: i64,
    sink: i64,
    sink_label: String,
    kind: String,
    at: String,
    error: Option<String>,
}

/// One group of [`SurrealStore::delivery_counts`].
#[derive(SurrealValue)]
#[surreal(crate = "surrealdb::types")]
struct CountRow {
    sink_label: String,
    delivered: bool,
    count: i64,
}

/// Two text fields of a row.
#[derive(SurrealValue)]
#[surreal(crate = "surrealdb::types")]
struct Pair {
    cert_id: String,
    value: String,
}

/// An integer from the API stored in an `int` field (u64 values above i64::MAX are refused).
fn int_field<T: TryInto<i64> + Copy + std::fmt::Display>(
    value: T,
    what: &'static str,
) -> Result<i64, StoreError> {
    value.try_into().map_err(|_| StoreError::Surreal {
        context: what,
        detail: format!("{value} does not fit a 64-bit signed integer"),
    })
}

impl SurrealStore {
    /// Appends an issued cert: cert and chain, never a key.
    pub(super) async fn insert_issued_cert(&self, row: &IssuedCertRow) -> Result<(), StoreError> {
        let vars = Vars::new()
            .with("cert", row.cert_id.as_str())
            .with("renewal", row.renewal_id)
            .with("cert_pem", row.cert_pem.as_str())
            .with("chain_pem", row.chain_pem.as_str())
            .with("serial", row.serial.as_str())
            .with("not_after", time_field(row.not_after)?)
            .with("issued_at", time_field(row.issued_at)?);
        let guard = self.fence_guard();
        self.exec(
            "recording an issued cert",
            &format!(
                "BEGIN TRANSACTION; {guard} \
                 LET $num = sequence::nextval('issued_num'); \
                 CREATE type::record('issued_cert', $num) CONTENT {{ \
                   num: $num, cert_id: $cert, renewal: $renewal, cert_pem: $cert_pem, \
                   chain_pem: $chain_pem, serial: $serial, not_after: $not_after, \
                   issued_at: $issued_at, node: $node \
                 }} RETURN NONE; \
                 COMMIT TRANSACTION;"
            ),
            vars,
        )
        .await
        .map_err(|e| self.fenced(e))
    }

    /// The most recently issued cert of `cert_id`.
    pub(super) async fn newest_issued_cert(
        &self,
        cert_id: &CertId,
    ) -> Result<Option<IssuedCertRow>, StoreError> {
        let rows: Vec<IssuedRow> = self
            .last(
                "reading the latest issued cert",
                "SELECT renewal, cert_pem, chain_pem, serial, not_after, issued_at, num \
                 FROM issued_cert WHERE cert_id = $cert \
                 ORDER BY issued_at DESC, num DESC LIMIT 1;",
                Vars::new().with("cert", cert_id.as_str()),
            )
            .await?;
        rows.into_iter()
            .next()
            .map(|row| {
                Ok(IssuedCertRow {
                    cert_id: cert_id.clone(),
                    renewal_id: row.renewal,
                    cert_pem: row.cert_pem,
                    chain_pem: row.chain_pem,
                    serial: row.serial,
                    not_after: decode_time(&row.not_after, "issued_cert.not_after")?,
                    issued_at: decode_time(&row.issued_at, "issued_cert.issued_at")?,
                })
            })
            .transpose()
    }

    /// Replaces a cert's conditions (none: the row goes).
    pub(super) async fn write_conditions(
        &self,
        cert_id: &CertId,
        conditions: &[Condition],
    ) -> Result<(), StoreError> {
        let vars = Vars::new().with("cert", cert_id.as_str());
        if conditions.is_empty() {
            return self
                .exec(
                    "writing conditions",
                    "DELETE type::record('cert_conditions', [$node, $cert]);",
                    vars,
                )
                .await;
        }
        let json = serde_json::to_string(conditions).map_err(|e| StoreError::Surreal {
            context: "encoding conditions",
            detail: e.to_string(),
        })?;
        self.exec(
            "writing conditions",
            "UPSERT type::record('cert_conditions', [$node, $cert]) \
             CONTENT { cert_id: $cert, node: $node, conditions: $json };",
            vars.with("json", json),
        )
        .await
    }

    /// Every cert's conditions.
    pub(super) async fn read_conditions(
        &self,
    ) -> Result<HashMap<CertId, Vec<Condition>>, StoreError> {
        let rows: Vec<Pair> = self
            .last(
                "reading conditions",
                "SELECT cert_id, conditions AS value FROM cert_conditions WHERE node = $node;",
                Vars::new(),
            )
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok((
                    decode_cert_id(&row.cert_id)?,
                    serde_json::from_str(&row.value).map_err(corrupt("cert_conditions"))?,
                ))
            })
            .collect()
    }

    /// Sets or clears a cert's backoff.
    pub(super) async fn write_backoff(
        &self,
        cert_id: &CertId,
        backoff: Option<&BackoffState>,
    ) -> Result<(), StoreError> {
        let vars = Vars::new().with("cert", cert_id.as_str());
        let Some(backoff) = backoff else {
            return self
                .exec(
                    "writing a backoff",
                    "DELETE type::record('backoff', [$node, $cert]);",
                    vars,
                )
                .await;
        };
        let vars = vars
            .with(
                "failures",
                int_field(backoff.failures, "writing a backoff")?,
            )
            .with("next", time_field(backoff.next_attempt_at)?)
            .with(
                "generation",
                int_field(backoff.generation, "writing a backoff")?,
            );
        self.exec(
            "writing a backoff",
            "UPSERT type::record('backoff', [$node, $cert]) CONTENT { \
               cert_id: $cert, node: $node, failures: $failures, next_attempt_at: $next, \
               generation: $generation \
             };",
            vars,
        )
        .await
    }

    /// Every cert's backoff.
    pub(super) async fn read_backoffs(&self) -> Result<HashMap<CertId, BackoffState>, StoreError> {
        let rows: Vec<BackoffRow> = self
            .last(
                "reading backoffs",
                "SELECT cert_id, failures, next_attempt_at, generation FROM backoff WHERE node = $node;",
                Vars::new(),
            )
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok((
                    decode_cert_id(&row.cert_id)?,
                    BackoffState {
                        failures: decode_int(row.failures, "backoff.failures")?,
                        next_attempt_at: decode_time(
                            &row.next_attempt_at,
                            "backoff.next_attempt_at",
                        )?,
                        generation: decode_int(row.generation, "backoff.generation")?,
                    },
                ))
            })
            .collect()
    }

    /// Sets a cert's spec hash and generation.
    pub(super) async fn write_generation(
        &self,
        cert_id: &CertId,
        generation: SpecGeneration,
    ) -> Result<(), StoreError> {
        const CONTEXT: &str = "writing a spec generation";
        let vars = Vars::new()
            .with("cert", cert_id.as_str())
            .with("hash", int_field(generation.spec_hash, CONTEXT)?)
            .with("generation", int_field(generation.generation, CONTEXT)?);
        self.exec(
            CONTEXT,
            "UPSERT type::record('spec_generation', [$node, $cert]) \
             CONTENT { cert_id: $cert, node: $node, spec_hash: $hash, generation: $generation };",
            vars,
        )
        .await
    }

    /// Every cert's spec hash and generation.
    pub(super) async fn read_generations(
        &self,
    ) -> Result<HashMap<CertId, SpecGeneration>, StoreError> {
        let rows: Vec<GenerationRow> = self
            .last(
                "reading spec generations",
                "SELECT cert_id, spec_hash, generation FROM spec_generation WHERE node = $node;",
                Vars::new(),
            )
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok((
                    decode_cert_id(&row.cert_id)?,
                    SpecGeneration {
                        spec_hash: decode_int(row.spec_hash, "spec_generation.spec_hash")?,
                        generation: decode_int(row.generation, "spec_generation.generation")?,
                    },
                ))
            })
            .collect()
    }

    /// Remembers a revoked serial; the first record of it stands.
    pub(super) async fn write_revocation(
        &self,
        cert_id: &CertId,
        serial: &str,
        reason: RevocationReason,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let vars = Vars::new()
            .with("cert", cert_id.as_str())
            .with("serial", serial)
            .with("reason", reason.as_str())
            .with("at", time_field(at)?);
        self.exec(
            "writing a revocation",
            "INSERT IGNORE INTO revocation { \
               id: type::record('revocation', [$cert, $serial]), cert_id: $cert, \
               serial: $serial, reason: $reason, revoked_at: $at \
             };",
            vars,
        )
        .await
    }

    /// Every serial revoked through rota, per cert.
    pub(super) async fn read_revocations(
        &self,
    ) -> Result<HashMap<CertId, BTreeSet<String>>, StoreError> {
        let rows: Vec<Pair> = self
            .last(
                "reading revocations",
                "SELECT cert_id, serial AS value FROM revocation;",
                Vars::new(),
            )
            .await?;
        let mut all: HashMap<CertId, BTreeSet<String>> = HashMap::new();
        for row in rows {
            all.entry(decode_cert_id(&row.cert_id)?)
                .or_default()
                .insert(row.value);
        }
        Ok(all)
    }

    /// Opens, updates or (with `None`) closes an alert episode.
    pub(super) async fn write_episode(
        &self,
        cert_id: &CertId,
        kind: AlertKind,
        episode: Option<&AlertEpisode>,
    ) -> Result<(), StoreError> {
        let vars = Vars::new()
            .with("cert", cert_id.as_str())
            .with("kind", kind.as_str());
        let Some(episode) = episode else {
            return self
                .exec(
                    "writing an alert episode",
                    "DELETE type::record('alert_episode', [$node, $cert, $kind]);",
                    vars,
                )
                .await;
        };
        let vars = vars
            .with("since", time_field(episode.since)?)
            .with("sent", time_field(episode.last_sent_at)?);
        self.exec(
            "writing an alert episode",
            "UPSERT type::record('alert_episode', [$node, $cert, $kind]) CONTENT { \
               cert_id: $cert, node: $node, kind: $kind, since: $since, last_sent_at: $sent \
             };",
            vars,
        )
        .await
    }

    /// Every open alert episode.
    pub(super) async fn read_episodes(
        &self,
    ) -> Result<HashMap<CertId, HashMap<AlertKind, AlertEpisode>>, StoreError> {
        let rows: Vec<EpisodeRow> = self
            .last(
                "reading alert episodes",
                "SELECT cert_id, kind, since, last_sent_at FROM alert_episode WHERE node = $node;",
                Vars::new(),
            )
            .await?;
        let mut all: HashMap<CertId, HashMap<AlertKind, AlertEpisode>> = HashMap::new();
        for row in rows {
            let kind = decode_enum(&row.kind, AlertKind::parse, "alert_episode.kind")?;
            let episode = AlertEpisode {
                since: decode_time(&row.since, "alert_episode.since")?,
                last_sent_at: decode_time(&row.last_sent_at, "alert_episode.last_sent_at")?,
            };
            all.entry(decode_cert_id(&row.cert_id)?)
                .or_default()
                .insert(kind, episode);
        }
        Ok(all)
    }

    /// Appends one alert delivery.
    pub(super) async fn write_delivery(
        &self,
        cert_id: &CertId,
        delivery: &AlertDelivery,
    ) -> Result<(), StoreError> {
        let vars = Vars::new()
            .with("cert", cert_id.as_str())
            .with("sink", i64::try_from(delivery.sink).unwrap_or(i64::MAX))
            .with("label", delivery.sink_label.as_str())
            .with("kind", delivery.kind.as_str())
            .with("at", time_field(delivery.at)?)
            .with("error", delivery.error.clone());
        self.exec(
            "recording an alert delivery",
            "LET $num = sequence::nextval('delivery_num'); \
             CREATE type::record('alert_delivery', $num) CONTENT { \
               num: $num, cert_id: $cert, sink: $sink, sink_label: $label, kind: $kind, \
               at: $at, error: $error \
             } RETURN NONE;",
            vars,
        )
        .await
    }

    /// Deliveries counted by sink and result.
    pub(super) async fn delivery_counts(&self) -> Result<Vec<AlertDeliveryCount>, StoreError> {
        let rows: Vec<CountRow> = self
            .last(
                "counting alert deliveries",
                "SELECT sink_label, delivered, count() AS count FROM \
                   (SELECT sink_label, error = NONE AS delivered FROM alert_delivery) \
                 GROUP BY sink_label, delivered ORDER BY sink_label;",
                Vars::new(),
            )
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok(AlertDeliveryCount {
                    sink_label: row.sink_label,
                    delivered: row.delivered,
                    count: decode_int(row.count, "alert_delivery count")?,
                })
            })
            .collect()
    }

    /// The newest delivery to each sink about `cert_id`, by sink.
    pub(super) async fn newest_deliveries(
        &self,
        cert_id: &CertId,
    ) -> Result<Vec<AlertDelivery>, StoreError> {
        let rows: Vec<DeliveryRow> = self
            .last(
                "reading alert deliveries",
                "SELECT sink, sink_label, kind, at, error, num FROM alert_delivery \
                 WHERE cert_id = $cert ORDER BY num DESC;",
                Vars::new().with("cert", cert_id.as_str()),
            )
            .await?;
        let mut newest: Vec<AlertDelivery> = Vec::new();
        for row in rows {
            let sink = decode_int(row.sink, "alert_delivery.sink")?;
            if newest.iter().any(|d| d.sink == sink) {
                continue;
            }
            newest.push(AlertDelivery {
                sink,
                sink_label: row.sink_label,
                kind: decode_enum(&row.kind, AlertKind::parse, "alert_delivery.kind")?,
                at: decode_time(&row.at, "alert_delivery.at")?,
                error: row.error,
            });
        }
        newest.sort_by_key(|d| d.sink);
        Ok(newest)
    }
}
