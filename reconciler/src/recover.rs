//! Removing what a renewal left published: at start, everything the DCV journal still holds
//! (it records every publish before it is made) is taken down and the interrupted audit rows
//! are closed as `interrupted`; at run time, the same for one renewal cut off by its deadline
//! or a panic before it could clean up after itself.

use std::collections::HashSet;
use std::time::Duration;

use rota_api::CertId;
use rota_api::status::{ConditionStatus, ConditionType, Reason};
use rota_store::{DcvJournalEntry, StoreError};

use crate::conditions::Update;
use crate::reconciler::Reconciler;

/// How long removing one leftover DCV answer may take.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(60);

impl Reconciler {
    /// Removes every journalled DCV answer and closes the interrupted renewals; returns the
    /// certs whose renewal was interrupted.
    pub(crate) async fn recover(&self) -> Result<HashSet<CertId>, StoreError> {
        let store = &self.shared.store;
        self.remove_journalled(store.pending_dcv().await?, "an interrupted renewal")
            .await;
        let now = self.shared.clock.now();
        let mut interrupted = HashSet::new();
        for row in store.interrupt_open_renewals(now).await? {
            tracing::warn!(cert_id = %row.cert_id, renewal_id = row.id, "renewal was interrupted by a stop");
            if let Some(cert) = self.desired().cert(&row.cert_id).cloned() {
                self.set_condition(
                    &cert,
                    Update::new(
                        ConditionType::Issuing,
                        ConditionStatus::False,
                        Reason::Interrupted,
                        format!("renewal {} was interrupted when rotad stopped", row.id),
                    ),
                )
                .await;
            }
            interrupted.insert(row.cert_id);
        }
        Ok(interrupted)
    }

    /// Removes what the renewal `renewal_id` left journalled.
    pub(crate) async fn remove_left_by(&self, renewal_id: i64) {
        match self.shared.store.pending_dcv().await {
            Ok(entries) => {
                let mine = entries
                    .into_iter()
                    .filter(|e| e.renewal_id == renewal_id)
                    .collect();
                self.remove_journalled(mine, "a renewal that was cut off")
                    .await;
            }
            Err(e) => {
                tracing::error!(renewal_id, error = %e, "cannot read the DCV journal; what the renewal published is removed at the next start");
            }
        }
    }

    /// Takes down each entry's answer with the solver it was published with (built from the
    /// journalled spec, so a cert that left the config is cleaned up too) and clears the
    /// entries removed; the others stay journalled for the next start.
    async fn remove_journalled(&self, entries: Vec<DcvJournalEntry>, left_by: &str) {
        let config = self.desired().loaded.config.clone();
        for entry in entries {
            let removed = match self.shared.factory.dcv(&config, &entry.dcv) {
                Ok(dcv) => tokio::time::timeout(REMOVE_TIMEOUT, dcv.remove(&entry.challenge))
                    .await
                    .unwrap_or_else(|_| {
                        Err(rota_api::BackendError::Timeout {
                            backend: "dcv",
                            what: "the record's removal".to_owned(),
                            after: REMOVE_TIMEOUT,
                        })
                    }),
                Err(e) => Err(e),
            };
            let record = entry.challenge.describe();
            match removed {
                Ok(()) => match self.shared.store.clear_dcv(entry.id).await {
                    Ok(()) => tracing::info!(
                        cert_id = %entry.cert_id,
                        renewal_id = entry.renewal_id,
                        %record,
                        "removed a DCV record left by {left_by}"
                    ),
                    Err(e) => {
                        tracing::error!(cert_id = %entry.cert_id, %record, error = %e, "removed a DCV record but cannot clear its journal entry");
                    }
                },
                Err(e) => tracing::error!(
                    cert_id = %entry.cert_id,
                    %record,
                    error = %e,
                    "cannot remove a DCV record left by {left_by}; will retry at the next start"
                ),
            }
        }
    }
}
