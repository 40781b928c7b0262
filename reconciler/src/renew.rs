//! The renewer pipeline for one renewal of one cert, top to bottom: key, CSR, order,
//! challenge check, DCV publish (journalled first), issuance, DCV removal (always), persist,
//! install. Every step is an audit event, streamed to whoever asked for the renewal.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::Instrument;

use rota_api::config::{DcvSpec, DnsPropagation};
use rota_api::status::{Reason, RenewalStatus, Step, StepStatus};
use rota_api::wire::RenewProgress;
use rota_api::{BackendError, ChallengeKind, DcvBackend, DcvChallenge, IssuedCert};
use rota_providers::keys::{self, CertKey};
use rota_store::{AuditStore, IssuedCertRow};

use crate::clock::{Clock, rfc3339};
use crate::desired::CertRuntime;
use crate::dns::DnsChecker;
use crate::observe::inspect_pem;

/// Why a renewal failed: the step, what went wrong, and any delay the peer asked for.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} failed: {message}", step.as_str())]
pub struct RenewError {
    /// The step that failed.
    pub step: Step,
    /// What went wrong, in operator terms.
    pub message: String,
    /// The peer's `Retry-After`, if it sent one.
    pub retry_after: Option<Duration>,
}

impl RenewError {
    pub(crate) fn new(step: Step, message: impl Into<String>) -> Self {
        Self {
            step,
            message: message.into(),
            retry_after: None,
        }
    }

    pub(crate) fn backend(step: Step, err: &BackendError) -> Self {
        Self {
            step,
            message: err.to_string(),
            retry_after: err.retry_after(),
        }
    }
}

/// What the pipeline needs from the daemon.
pub(crate) struct RenewContext {
    pub store: Arc<dyn AuditStore>,
    pub dns_propagation: DnsPropagation,
    pub clock: Arc<dyn Clock>,
    pub progress: Option<mpsc::Sender<RenewProgress>>,
}

/// Records step events for one renewal and forwards them to the progress stream.
pub(crate) struct Audit<'a> {
    pub ctx: &'a RenewContext,
    pub renewal_id: i64,
}

impl Audit<'_> {
    async fn record(&self, step: Step, status: StepStatus, message: &str) {
        let at = self.ctx.clock.now();
        match self
            .ctx
            .store
            .record_step(self.renewal_id, step, status, message, at)
            .await
        {
            Ok(event) => self.ctx.send(RenewProgress::Step(event)).await,
            Err(e) => {
                tracing::error!(error = %e, step = step.as_str(), "cannot record a step event");
            }
        }
    }

    /// Closes the audit row with the outcome of `result`, and returns that outcome.
    pub(crate) async fn close<T>(
        &self,
        result: &Result<T, RenewError>,
    ) -> (RenewalStatus, Option<String>) {
        let (status, error) = match result {
            Ok(_) => (RenewalStatus::Succeeded, None),
            Err(e) => (RenewalStatus::Failed, Some(e.to_string())),
        };
        let closed = self
            .ctx
            .store
            .close_renewal(
                self.renewal_id,
                status,
                error.as_deref(),
                self.ctx.clock.now(),
            )
            .await;
        if let Err(e) = closed {
            tracing::error!(renewal_id = self.renewal_id, error = %e, "cannot close the audit row");
        }
        (status, error)
    }

    /// Runs one step: a `started` event, the work, then `succeeded` with its message or
    /// `failed` with the error.
    pub(crate) async fn step<T>(
        &self,
        step: Step,
        what: &str,
        work: impl Future<Output = Result<(T, String), RenewError>>,
    ) -> Result<T, RenewError> {
        self.record(step, StepStatus::Started, what).await;
        match work.await {
            Ok((value, done)) => {
                tracing::info!(step = step.as_str(), "{done}");
                self.record(step, StepStatus::Succeeded, &done).await;
                Ok(value)
            }
            Err(err) => {
                tracing::warn!(step = step.as_str(), error = %err.message, "step failed");
                self.record(step, StepStatus::Failed, &err.message).await;
                Err(err)
            }
        }
    }
}

impl RenewContext {
    async fn send(&self, item: RenewProgress) {
        if let Some(tx) = &self.progress {
            // The client may have gone away; the renewal goes on regardless.
            let _ = tx.send(item).await;
        }
    }
}

/// Runs one renewal of `cert` and closes its audit row; returns how it ended.
pub(crate) async fn renew(
    ctx: &RenewContext,
    cert: &Arc<CertRuntime>,
    trigger: Reason,
) -> Result<IssuedCert, RenewError> {
    let opened = ctx
        .store
        .open_renewal(&cert.spec.id, trigger, ctx.clock.now())
        .await;
    let record = opened
        .map_err(|e| RenewError::new(Step::LoadKey, format!("cannot open the audit row: {e}")))?;
    let span = tracing::info_span!("renewal", cert_id = %cert.spec.id, renewal_id = record.id);
    async {
        tracing::info!(trigger = trigger.as_str(), "renewal started");
        ctx.send(RenewProgress::Started {
            renewal_id: record.id,
        })
        .await;
        let audit = Audit {
            ctx,
            renewal_id: record.id,
        };
        let result = run_pipeline(&audit, cert).await;
        let (status, error) = audit.close(&result).await;
        tracing::info!(status = status.as_str(), "renewal finished");
        ctx.send(RenewProgress::Finished { status, error }).await;
        result
    }
    .instrument(span)
    .await
}

async fn run_pipeline(
    audit: &Audit<'_>,
    cert: &Arc<CertRuntime>,
) -> Result<IssuedCert, RenewError> {
    let spec = &cert.spec;
    let key_path = spec.key_path.display().to_string();
    let key = audit
        .step(Step::LoadKey, &format!("key at {key_path}"), load_key(cert))
        .await?;
    let csr = audit
        .step(Step::GenerateCsr, "CSR for the spec's domains", async {
            let csr = key
                .csr_pem(&spec.domains)
                .map_err(|e| RenewError::new(Step::GenerateCsr, e.to_string()))?;
            let names: Vec<_> = spec.domains.iter().map(ToString::to_string).collect();
            Ok((csr, format!("CSR with SANs {}", names.join(", "))))
        })
        .await?;
    // CAs with renewal information (ARI) want to know which cert an order replaces.
    let replacing = cert.install.current_cert_pem(&spec.id).await.ok().flatten();
    let kinds = cert
        .dcv
        .as_ref()
        .map(|d| d.supported_kinds().to_vec())
        .unwrap_or_default();
    let challenges = audit
        .step(
            Step::SubmitOrder,
            &format!("submitting to the {} CA", cert.ca.kind()),
            async {
                let challenges = cert
                    .ca
                    .submit(&spec.domains, &csr, &kinds, replacing.as_deref())
                    .await
                    .map_err(|e| RenewError::backend(Step::SubmitOrder, &e))?;
                let n = challenges.len();
                Ok((
                    challenges,
                    format!("order accepted, {n} challenge(s) to answer"),
                ))
            },
        )
        .await?;
    let dcv = audit
        .step(
            Step::CheckChallenges,
            "checking the DCV solver can answer every challenge",
            async { check_challenges(cert, &challenges) },
        )
        .await?;
    let issued = validate_and_issue(audit, cert, dcv, &challenges).await?;
    let row = audit
        .step(
            Step::PersistCert,
            "recording the issued cert",
            persist(audit, cert, &issued),
        )
        .await?;
    audit
        .step(
            Step::Install,
            &format!("installing via {}", cert.install.kind()),
            async {
                cert.install
                    .install(&issued, key.pem(), &spec.domains)
                    .await
                    .map_err(|e| RenewError::backend(Step::Install, &e))?;
                Ok((
                    (),
                    format!(
                        "installed serial {} (valid until {})",
                        row.serial,
                        rfc3339(row.not_after)
                    ),
                ))
            },
        )
        .await?;
    Ok(issued)
}

async fn load_key(cert: &CertRuntime) -> Result<(CertKey, String), RenewError> {
    let path = cert.spec.key_path.clone();
    let loaded = tokio::task::spawn_blocking(move || keys::load_or_generate(&path))
        .await
        .map_err(|e| RenewError::new(Step::LoadKey, format!("key loading panicked: {e}")))?
        .map_err(|e| RenewError::new(Step::LoadKey, e.to_string()))?;
    let message = if loaded.generated {
        "generated a new ECDSA P-256 key (it is reused on every renewal)"
    } else {
        "loaded the existing key"
    };
    Ok((loaded.key, message.to_owned()))
}

fn check_challenges(
    cert: &CertRuntime,
    challenges: &[DcvChallenge],
) -> Result<(Option<Arc<dyn DcvBackend>>, String), RenewError> {
    if challenges.is_empty() {
        return Ok((
            None,
            "the CA asked for no domain-control validation".to_owned(),
        ));
    }
    let Some(dcv) = &cert.dcv else {
        return Err(RenewError::new(
            Step::CheckChallenges,
            format!(
                "the CA asked for {} challenge(s) but the cert has no `dcv:` block",
                challenges.len()
            ),
        ));
    };
    if let Some(c) = challenges.iter().find(|c| !dcv.supports(c)) {
        return Err(RenewError::new(
            Step::CheckChallenges,
            format!(
                "the {} solver cannot answer a {:?} challenge ({})",
                dcv.kind(),
                c.kind(),
                c.describe()
            ),
        ));
    }
    Ok((
        Some(Arc::clone(dcv)),
        format!(
            "{} can answer all {} challenge(s)",
            dcv.kind(),
            challenges.len()
        ),
    ))
}

/// Publishes every challenge (journalled first), waits until DNS-01 records are visible,
/// waits for issuance, and then removes every journalled challenge whatever happened, so a
/// failed run leaves no stray records.
async fn validate_and_issue(
    audit: &Audit<'_>,
    cert: &CertRuntime,
    dcv: Option<Arc<dyn DcvBackend>>,
    challenges: &[DcvChallenge],
) -> Result<IssuedCert, RenewError> {
    let mut journalled = Vec::with_capacity(challenges.len());
    let dns = challenges
        .iter()
        .any(|c| c.kind() == ChallengeKind::Dns01)
        .then(|| DnsChecker::new(&audit.ctx.dns_propagation));
    let mut outcome = Ok(());
    if let (Some(dcv), Some(spec)) = (&dcv, &cert.spec.dcv) {
        outcome = publish_all(
            audit,
            cert,
            dcv.as_ref(),
            spec,
            dns.as_ref(),
            challenges,
            &mut journalled,
        )
        .await;
    }
    if let (Ok(()), Some(dns)) = (&outcome, &dns) {
        outcome = await_propagation(audit, dns, &journalled).await;
    }
    let issued = match outcome {
        Ok(()) => {
            audit
                .step(
                    Step::AwaitIssuance,
                    &format!("waiting for the {} CA to sign", cert.ca.kind()),
                    async {
                        let issued = cert
                            .ca
                            .await_issuance(&cert.spec.domains)
                            .await
                            .map_err(|e| RenewError::backend(Step::AwaitIssuance, &e))?;
                        Ok((issued, "the CA signed the certificate".to_owned()))
                    },
                )
                .await
        }
        Err(e) => Err(e),
    };
    if let Some(dcv) = &dcv {
        remove_challenges(audit, dcv.as_ref(), &journalled).await;
    }
    issued
}

/// Journals then publishes each challenge, DNS-01 records at the end of any CNAME chain;
/// stops at the first failure. What was journalled is in `journalled` either way.
async fn publish_all(
    audit: &Audit<'_>,
    cert: &CertRuntime,
    dcv: &dyn DcvBackend,
    spec: &DcvSpec,
    dns: Option<&DnsChecker>,
    challenges: &[DcvChallenge],
    journalled: &mut Vec<(i64, DcvChallenge)>,
) -> Result<(), RenewError> {
    for asked in challenges {
        let (challenge, delegated) = match (dns, asked) {
            (
                Some(dns),
                DcvChallenge::Dns01 {
                    record_name,
                    record_value,
                    ttl,
                },
            ) => {
                let target = dns
                    .resolve_target(record_name)
                    .await
                    .map_err(|e| RenewError::new(Step::PublishDcv, e.to_string()))?;
                let delegated =
                    (target != *record_name).then(|| format!(" (CNAME from {record_name})"));
                let challenge = DcvChallenge::Dns01 {
                    record_name: target,
                    record_value: record_value.clone(),
                    ttl: *ttl,
                };
                (challenge, delegated)
            }
            _ => (asked.clone(), None),
        };
        let at = audit.ctx.clock.now();
        let id = audit
            .ctx
            .store
            .journal_dcv(audit.renewal_id, &cert.spec.id, spec, &challenge, at)
            .await
            .map_err(|e| {
                RenewError::new(
                    Step::PublishDcv,
                    format!("cannot journal the DCV record, not publishing it: {e}"),
                )
            })?;
        journalled.push((id, challenge.clone()));
        let what = challenge.describe() + delegated.as_deref().unwrap_or_default();
        audit
            .step(Step::PublishDcv, &what, async {
                dcv.publish(&challenge)
                    .await
                    .map_err(|e| RenewError::backend(Step::PublishDcv, &e))?;
                Ok(((), format!("published {what}")))
            })
            .await?;
    }
    Ok(())
}

/// Waits until every nameserver that must answer serves each published DNS-01 record.
async fn await_propagation(
    audit: &Audit<'_>,
    dns: &DnsChecker,
    journalled: &[(i64, DcvChallenge)],
) -> Result<(), RenewError> {
    for (_, challenge) in journalled {
        let DcvChallenge::Dns01 {
            record_name,
            record_value,
            ..
        } = challenge
        else {
            continue;
        };
        audit
            .step(
                Step::CheckPropagation,
                &format!("waiting for TXT {record_name} on every nameserver"),
                async {
                    let report = dns
                        .wait_for_txt(record_name, record_value)
                        .await
                        .map_err(|e| RenewError::new(Step::CheckPropagation, e.to_string()))?;
                    let message = format!(
                        "TXT {record_name} answered by {} after {} round(s) ({:.1}s)",
                        report.servers.join(", "),
                        report.rounds,
                        report.elapsed.as_secs_f64()
                    );
                    Ok(((), message))
                },
            )
            .await?;
    }
    Ok(())
}

async fn remove_challenges(
    audit: &Audit<'_>,
    dcv: &dyn DcvBackend,
    journalled: &[(i64, DcvChallenge)],
) {
    for (journal_id, challenge) in journalled {
        let removed = audit
            .step(Step::RemoveDcv, &challenge.describe(), async {
                dcv.remove(challenge)
                    .await
                    .map_err(|e| RenewError::backend(Step::RemoveDcv, &e))?;
                Ok(((), format!("removed {}", challenge.describe())))
            })
            .await;
        // A record that could not be removed stays journalled and is retried at the next start.
        if removed.is_ok()
            && let Err(e) = audit.ctx.store.clear_dcv(*journal_id).await
        {
            tracing::error!(error = %e, "cannot clear a DCV journal entry");
        }
    }
}

async fn persist(
    audit: &Audit<'_>,
    cert: &CertRuntime,
    issued: &IssuedCert,
) -> Result<(IssuedCertRow, String), RenewError> {
    let facts = inspect_pem(&issued.cert_pem).map_err(|e| {
        RenewError::new(
            Step::PersistCert,
            format!("the CA returned an unreadable certificate: {e}"),
        )
    })?;
    let row = IssuedCertRow {
        cert_id: cert.spec.id.clone(),
        renewal_id: audit.renewal_id,
        cert_pem: issued.cert_pem.clone(),
        chain_pem: issued.chain_pem.clone(),
        serial: facts.serial,
        not_after: facts.not_after,
        issued_at: audit.ctx.clock.now(),
    };
    audit
        .ctx
        .store
        .record_issued_cert(&row)
        .await
        .map_err(|e| RenewError::new(Step::PersistCert, e.to_string()))?;
    let message = format!("recorded serial {}", row.serial);
    Ok((row, message))
}
