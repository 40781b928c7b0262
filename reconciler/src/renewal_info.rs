//! Fetching renewal windows (ARI) off every critical path: each fetch is its own task, at most
//! a few at once and each bounded in time, so a CA that hangs delays only the renewal-window
//! updates of its own certs — never a sweep, a start, or a cert of another CA. When a fetch
//! lands, its cert is reconciled again with the new window.

use std::sync::Arc;
use std::time::Duration;

use rota_api::RenewalWindow;

use crate::ari;
use crate::desired::CertRuntime;
use crate::plan::Observation;
use crate::reconciler::Reconciler;

/// How long one request (reading the installed cert back, then asking the CA) may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

impl Reconciler {
    /// Starts fetching `cert`'s renewal window when its CA offers them and the last answer is
    /// stale; returns whether a fetch is in flight (then its landing reconciles `cert`).
    pub(crate) fn refresh_ari(&self, cert: &Arc<CertRuntime>, observed: &Observation) -> bool {
        let id = &cert.spec.id;
        let Observation::Installed(installed) = observed else {
            return false;
        };
        if !cert.ca.offers_renewal_info() {
            return false;
        }
        let now = self.shared.clock.now();
        let stale = self.shared.states.read(id, |s| {
            ari::due(s.and_then(|s| s.ari.as_ref()), observed, now)
        });
        let fetches = &self.shared.ari;
        if !stale {
            return fetches.is_fetching(id);
        }
        if !fetches.begin(id) {
            return true;
        }
        let (this, cert, serial) = (self.clone(), Arc::clone(cert), installed.serial.clone());
        let permits = fetches.permits();
        self.shared.tasks.spawn(async move {
            let window = match permits.acquire_owned().await {
                Ok(_permit) => fetch_window(&cert).await,
                Err(e) => Err(e.to_string()),
            };
            this.record_ari(&cert, serial, window);
            this.shared.ari.end(&cert.spec.id);
            if let Some(current) = this.desired().cert(&cert.spec.id).cloned() {
                this.reconcile(&current).await;
            }
        });
        true
    }

    fn record_ari(
        &self,
        cert: &CertRuntime,
        serial: String,
        window: Result<Option<RenewalWindow>, String>,
    ) {
        let id = &cert.spec.id;
        match &window {
            Ok(Some(w)) => {
                tracing::info!(cert_id = %id, start = %w.start, end = %w.end, "CA renewal window");
            }
            Ok(None) => {
                tracing::debug!(cert_id = %id, "the CA publishes no renewal window for this cert");
            }
            Err(error) => {
                tracing::warn!(cert_id = %id, %error, "cannot fetch the CA's renewal window; keeping the last one");
            }
        }
        let now = self.shared.clock.now();
        self.shared.states.update(id, |state| {
            let next = ari::after_fetch(state.ari.as_ref(), serial, window, now, rand::random());
            state.ari = Some(next);
        });
    }
}

async fn fetch_window(cert: &CertRuntime) -> Result<Option<RenewalWindow>, String> {
    let fetch = async {
        match cert.install.current_cert_pem(&cert.spec.id).await {
            Ok(Some(pem)) => cert
                .ca
                .renewal_window(&pem)
                .await
                .map_err(|e| e.to_string()),
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    };
    tokio::time::timeout(FETCH_TIMEOUT, fetch)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "the {} CA did not answer within {}s",
                cert.ca.kind(),
                FETCH_TIMEOUT.as_secs()
            ))
        })
}
