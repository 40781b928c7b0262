//! Crash recovery at start: whatever an interrupted renewal left published is removed (from
//! the DCV journal, which records every publish before it is made) and its audit row is
//! closed as `interrupted`.

use rota_api::status::{ConditionStatus, ConditionType, Reason};
use rota_store::StoreError;

use crate::conditions::Update;
use crate::reconciler::Reconciler;

impl Reconciler {
    pub(crate) async fn recover(&self) -> Result<(), StoreError> {
        let store = &self.shared.store;
        let config = self.desired().loaded.config.clone();
        for entry in store.pending_dcv().await? {
            let removed = match self.shared.factory.dcv(&config, &entry.dcv) {
                Ok(dcv) => dcv.remove(&entry.challenge).await,
                Err(e) => Err(e),
            };
            match removed {
                Ok(()) => {
                    store.clear_dcv(entry.id).await?;
                    tracing::info!(
                        cert_id = %entry.cert_id,
                        renewal_id = entry.renewal_id,
                        record = %entry.challenge.describe(),
                        "removed a DCV record left by an interrupted renewal"
                    );
                }
                Err(e) => tracing::error!(
                    cert_id = %entry.cert_id,
                    record = %entry.challenge.describe(),
                    error = %e,
                    "cannot remove a DCV record left by an interrupted renewal; will retry at the next start"
                ),
            }
        }
        let now = self.shared.clock.now();
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
        }
        Ok(())
    }
}
