//! Install sync, on every node of a cluster: the newest cert any node issued for a configured
//! cert (the shared store's `latest_issued_cert`) is installed here when it is fresher than
//! what this node has installed, once the local copy of the key is known to match it. News
//! of an issued cert arrives through the store's live query within seconds; a poll covers a
//! dropped connection. On the leader, which installed the cert itself, it finds nothing to do.
//!
//! A follower never generates nor rotates a key: its key file is the operator's copy of the
//! cluster's key, and a copy that does not match the issued cert is a `KeyMismatch` failure
//! (nothing installed, one alert per episode), cleared by the next sync that installs.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use rota_api::status::{ConditionStatus, ConditionType, Reason, RenewalStatus, Step};
use rota_api::wire::{InstalledCert, RenewProgress};
use rota_api::{CertId, IssuedCert};
use rota_providers::keys::{self, CertKey};
use rota_store::{ClusterStore, IssuedCertRow};

use crate::alerts::FailedAttempt;
use crate::clock::rfc3339;
use crate::conditions::Update;
use crate::desired::CertRuntime;
use crate::observe::leaf_spki;
use crate::plan::Observation;
use crate::progress::ProgressLog;
use crate::reconciler::Reconciler;
use crate::renew::{Audit, RenewError, install_and_hook};
use crate::renewal::installable;

/// The first wait before subscribing again to issued-cert news after the channel closed or a
/// subscription failed; it doubles after each failure.
const RESUBSCRIBE_MIN: Duration = Duration::from_secs(1);
/// The longest wait between two subscription attempts.
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(60);

/// What a sync found to do about one cert.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Install the shared store's newest cert.
    Install,
    /// Nothing: this is why (for the debug log).
    Skip(&'static str),
}

/// Whether `row` (the newest issued cert) should replace what this node has installed: not
/// the same cert, not older than it (an earlier notAfter), and still worth installing.
fn verdict(
    cert: &CertRuntime,
    state: &crate::state::CertState,
    installed: Option<&InstalledCert>,
    row: &IssuedCertRow,
    now: OffsetDateTime,
) -> Verdict {
    match installed {
        Some(c) if c.serial == row.serial => Verdict::Skip("already installed"),
        Some(c) if c.not_after > row.not_after => Verdict::Skip("the installed cert is newer"),
        _ if installable(cert, state, installed.map(|c| c.serial.as_str()), row, now) => {
            Verdict::Install
        }
        _ => Verdict::Skip("revoked, expired or for other names than the spec's"),
    }
}

/// Why the local key cannot install the cluster's cert.
struct Refusal {
    reason: Reason,
    message: String,
}

impl Reconciler {
    /// Starts install sync: a tracked task, stopped by the shutdown token, that installs here
    /// every cert another node of the cluster issued. It follows `store`'s issued-cert news
    /// (subscribing again, with a bounded backoff, when the channel closes) and also looks at
    /// every cert each `poll`, whatever the news, so nothing waits longer than that. Call it
    /// once per reconciler, with a `poll` of about the lease length.
    pub fn spawn_install_sync(&self, store: Arc<dyn ClusterStore>, poll: Duration) {
        let this = self.clone();
        self.shared
            .tasks
            .spawn(async move { this.install_sync_loop(store.as_ref(), poll).await });
    }

    async fn install_sync_loop(&self, store: &dyn ClusterStore, poll: Duration) {
        let clock = Arc::clone(&self.shared.clock);
        let poll_every = to_time(poll);
        let mut watch: Option<tokio::sync::mpsc::Receiver<CertId>> = None;
        let mut backoff = RESUBSCRIBE_MIN;
        let mut subscribe_at = clock.now();
        let mut poll_at = clock.now();
        loop {
            if watch.is_none() && clock.now() >= subscribe_at {
                match store.watch_issued().await {
                    Ok(rx) => {
                        tracing::info!("install sync: following issued-cert news");
                        watch = Some(rx);
                        // Whatever was issued while nobody listened is caught up at once.
                        poll_at = clock.now();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in_s = backoff.as_secs(), "install sync: cannot follow issued-cert news; polling meanwhile");
                        subscribe_at = clock.now().saturating_add(to_time(backoff));
                        backoff = (backoff * 2).min(RESUBSCRIBE_MAX);
                    }
                }
            }
            if clock.now() >= poll_at {
                self.sync_all().await;
                poll_at = clock.now().saturating_add(poll_every);
            }
            let wake = if watch.is_none() {
                poll_at.min(subscribe_at)
            } else {
                poll_at
            };
            let news = async {
                match watch.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.shared.shutdown.cancelled() => break,
                () = clock.sleep_until(wake) => {}
                news = news => {
                    if let Some(id) = news {
                        backoff = RESUBSCRIBE_MIN;
                        if let Some(cert) = self.desired().cert(&id).cloned() {
                            self.sync_cert(&cert, poll_at).await;
                        }
                    } else {
                        tracing::warn!(retry_in_s = backoff.as_secs(), "install sync: the issued-cert news channel closed; polling until it is back");
                        watch = None;
                        subscribe_at = clock.now().saturating_add(to_time(backoff));
                        backoff = (backoff * 2).min(RESUBSCRIBE_MAX);
                    }
                }
            }
        }
    }

    /// Syncs every configured cert, one after the other.
    async fn sync_all(&self) {
        let desired = self.desired();
        let next = self
            .shared
            .clock
            .now()
            .saturating_add(time::Duration::seconds(1));
        for cert in &desired.certs {
            if self.shared.shutdown.is_cancelled() {
                return;
            }
            self.sync_cert(cert, next).await;
        }
    }

    /// Installs the newest issued cert of `cert` here if it is fresher than the installed one
    /// and the local key matches it; `next_look` is when the next poll comes (for alerts).
    async fn sync_cert(&self, cert: &Arc<CertRuntime>, next_look: OffsetDateTime) {
        let id = &cert.spec.id;
        // A renewal (or sync) running here installs on its own; the next look sees the result.
        if self.is_busy(id) {
            return;
        }
        let row = match self.shared.store.latest_issued_cert(id).await {
            Ok(Some(row)) => row,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(cert_id = %id, error = %e, "install sync: cannot read the newest issued cert");
                return;
            }
        };
        let observed = self.shared.observer.observe(cert).await;
        let installed = match &observed {
            Observation::Installed(c) => Some(c),
            _ => None,
        };
        let now = self.shared.clock.now();
        let state = self.state(id);
        match verdict(cert, &state, installed, &row, now) {
            Verdict::Skip(why) => {
                tracing::debug!(cert_id = %id, serial = %row.serial, why, "install sync: nothing to install");
                if installed.is_some_and(|c| c.serial == row.serial && c.key_matches) {
                    self.clear_key_mismatch(cert).await;
                }
                return;
            }
            Verdict::Install => {}
        }
        let Ok((mark, progress)) = self.shared.queue.mark_renewal(id) else {
            return;
        };
        let key = match self.matching_key(cert, &row).await {
            Ok(key) => key,
            Err(refusal) => {
                drop(mark);
                self.sync_refused(cert, refusal, next_look).await;
                return;
            }
        };
        let outcome = self.install_synced(cert, &key, &row, &progress).await;
        drop(mark);
        match outcome {
            Ok(()) => self.sync_succeeded(cert, &row).await,
            Err(e) => {
                let refusal = Refusal {
                    reason: e.reason,
                    message: format!(
                        "installing serial {} issued by the cluster failed: {}",
                        row.serial, e.message
                    ),
                };
                self.sync_refused(cert, refusal, next_look).await;
            }
        }
        // What conditions, `rota status` and the dashboard show is the cert now installed.
        if self.desired().cert(id).map(|c| c.generation) == Some(cert.generation) {
            let observed = self.shared.observer.observe(cert).await;
            let decision = self.plan_for(cert, &observed, self.shared.clock.now());
            self.record_plan(cert, observed, &decision).await;
        }
    }

    /// The local key at `key_path`, if it is the one `row`'s cert was issued for.
    async fn matching_key(
        &self,
        cert: &CertRuntime,
        row: &IssuedCertRow,
    ) -> Result<CertKey, Refusal> {
        let path = cert.spec.key_path.clone();
        let loaded = tokio::task::spawn_blocking(move || keys::load_existing(&path)).await;
        let key = match loaded {
            Ok(Ok(key)) => key,
            Ok(Err(e)) => {
                return Err(Refusal {
                    reason: Reason::KeyUnreadable,
                    message: format!(
                        "cannot install serial {} issued by the cluster: {e}; every node needs its own copy of the cluster's key, byte-identical",
                        row.serial
                    ),
                });
            }
            Err(e) => {
                return Err(Refusal {
                    reason: Reason::Panicked,
                    message: format!("loading the key panicked: {e}"),
                });
            }
        };
        let cert_spki = leaf_spki(&row.cert_pem).map_err(|e| Refusal {
            reason: Reason::Refused,
            message: format!(
                "the issued cert serial {} in the shared store is unreadable: {e}",
                row.serial
            ),
        })?;
        let key_spki = key.public_key_der();
        if key_spki == cert_spki {
            return Ok(key);
        }
        Err(Refusal {
            reason: Reason::KeyMismatch,
            message: format!(
                "the cert issued by the cluster (serial {}, renewal {}) is for the key with pin-sha256 {}, but the local key {} has pin-sha256 {}; nothing was installed: copy the cluster's key to {} on this node (byte-identical on every node)",
                row.serial,
                row.renewal_id,
                keys::spki_pin(&cert_spki),
                cert.spec.key_path.display(),
                keys::spki_pin(&key_spki),
                cert.spec.key_path.display()
            ),
        })
    }

    /// Installs `row` through the renewal's install code, audited as a `ClusterSync` renewal
    /// with its install step.
    async fn install_synced(
        &self,
        cert: &Arc<CertRuntime>,
        key: &CertKey,
        row: &IssuedCertRow,
        progress: &Arc<ProgressLog>,
    ) -> Result<(), RenewError> {
        let id = &cert.spec.id;
        let issued = IssuedCert {
            cert_pem: row.cert_pem.clone(),
            chain_pem: row.chain_pem.clone(),
        };
        let (this, watched) = (self.clone(), progress.follow());
        let forwarded = id.clone();
        self.shared
            .tasks
            .spawn(async move { this.shared.events.forward(forwarded, watched).await });
        let opened = self
            .shared
            .store
            .open_renewal(id, Reason::ClusterSync, self.shared.clock.now())
            .await;
        let record = match opened {
            Ok(record) => record,
            Err(e) => {
                // Serving the fresh cert matters more than its audit row.
                tracing::error!(cert_id = %id, error = %e, "install sync: cannot open the audit row; installing without one");
                let result = install_and_hook(cert, key, &issued, row).await.map(|done| {
                    tracing::info!(cert_id = %id, "{done}");
                });
                push_finished(progress, &result);
                return result;
            }
        };
        progress.push(RenewProgress::Started {
            renewal_id: record.id,
        });
        let audit = Audit {
            store: Arc::clone(&self.shared.store),
            clock: Arc::clone(&self.shared.clock),
            renewal_id: record.id,
            progress: Some(Arc::clone(progress)),
        };
        let what = format!(
            "installing serial {} issued by the cluster (renewal {}) via {}",
            row.serial,
            row.renewal_id,
            cert.install.kind()
        );
        let result = audit
            .step(Step::Install, &what, async {
                Ok(((), install_and_hook(cert, key, &issued, row).await?))
            })
            .await;
        audit.close(&result).await;
        push_finished(progress, &result);
        result
    }

    async fn sync_succeeded(&self, cert: &CertRuntime, row: &IssuedCertRow) {
        let message = format!(
            "installed serial {} (valid until {}) issued by the cluster (renewal {})",
            row.serial,
            rfc3339(row.not_after),
            row.renewal_id
        );
        tracing::info!(cert_id = %cert.spec.id, "install sync: {message}");
        self.record_in_sync(cert, message).await;
    }

    /// Records that this node serves the cluster's cert: `Failing` turns false, and an open
    /// alert episode is closed.
    async fn record_in_sync(&self, cert: &CertRuntime, message: String) {
        self.set_condition(
            cert,
            Update::new(
                ConditionType::Failing,
                ConditionStatus::False,
                Reason::ClusterSync,
                message,
            ),
        )
        .await;
        self.alert_after_renewal(cert, None).await;
    }

    /// Records a sync that installed nothing: the `Failing` condition, and an alert when the
    /// episode begins (then daily while it lasts).
    async fn sync_refused(&self, cert: &CertRuntime, refusal: Refusal, next_look: OffsetDateTime) {
        let Refusal { reason, message } = refusal;
        tracing::warn!(cert_id = %cert.spec.id, reason = reason.as_str(), "install sync: {message}");
        self.set_condition(
            cert,
            Update::new(
                ConditionType::Failing,
                ConditionStatus::True,
                reason,
                message.clone(),
            ),
        )
        .await;
        let failed = FailedAttempt {
            reason,
            error: message.clone(),
            message,
            next_attempt_at: next_look,
        };
        self.alert_after_renewal(cert, Some(&failed)).await;
    }

    /// Clears a `KeyMismatch` failure once the cluster's cert is installed and matches the key
    /// (installed by hand, or the key fixed after the cert was).
    async fn clear_key_mismatch(&self, cert: &CertRuntime) {
        let mismatched = self.shared.states.read(&cert.spec.id, |s| {
            s.and_then(|s| s.condition(ConditionType::Failing))
                .is_some_and(|c| {
                    c.status == ConditionStatus::True && c.reason == Reason::KeyMismatch
                })
        });
        if mismatched {
            self.record_in_sync(
                cert,
                "the cert issued by the cluster is installed and matches the local key".to_owned(),
            )
            .await;
        }
    }
}

fn push_finished(progress: &ProgressLog, result: &Result<(), RenewError>) {
    let (status, error) = match result {
        Ok(()) => (RenewalStatus::Succeeded, None),
        Err(e) => (RenewalStatus::Failed, Some(e.to_string())),
    };
    progress.push(RenewProgress::Finished { status, error });
}

fn to_time(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}
