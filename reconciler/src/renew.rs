//! The renewer pipeline for one renewal of one cert, top to bottom: key, CSR, order,
//! challenge check, DCV publish (journalled first), issuance, DCV removal (always), persist,
//! install — or, when an earlier attempt issued a cert it could not install, key and install
//! only. Every step is an audit event, handed to whoever follows the renewal.

use std::future::Future;
use std::sync::Arc;

use rota_api::config::{DcvSpec, DnsPropagation, KeyType, PostCommand};
use rota_api::status::{Reason, RenewalStatus, Step, StepStatus};
use rota_api::wire::RenewProgress;
use rota_api::{BackendError, ChallengeKind, DcvBackend, DcvChallenge, IssuedCert, OrderHandle};
use rota_providers::key_rotation::{self, Settled};
use rota_providers::keys::{self, CertKey};
use rota_providers::post_command;
use rota_store::{AuditStore, IssuedCertRow};
use time::OffsetDateTime;

use crate::clock::{Clock, rfc3339};
use crate::cluster::{Fence, store_error};
use crate::desired::CertRuntime;
use crate::dns::DnsChecker;
use crate::observe::inspect_pem;
use crate::progress::ProgressLog;

/// Why a renewal failed: the step, the kind of failure, what the peer said, and any delay
/// the peer asked for.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} failed: {message}", step.as_str())]
pub struct RenewError {
    /// The step that failed.
    pub step: Step,
    /// What kind of failure it was; it becomes the `Failing` condition's reason.
    pub reason: Reason,
    /// What went wrong, in operator terms, with the peer's own words.
    pub message: String,
    /// The peer's `Retry-After`, if it sent one.
    pub retry_after: Option<std::time::Duration>,
}

impl RenewError {
    pub(crate) fn new(step: Step, reason: Reason, message: impl Into<String>) -> Self {
        Self {
            step,
            reason,
            message: message.into(),
            retry_after: None,
        }
    }

    pub(crate) fn backend(step: Step, err: &BackendError) -> Self {
        Self {
            step,
            reason: failure_reason(step, err),
            message: err.to_string(),
            retry_after: err.retry_after(),
        }
    }
}

/// The reason a backend failure at `step` gives the `Failing` condition: what the operator
/// should look at first. An install failure is always `InstallFailed` (the cert exists and
/// the next attempt only installs it); otherwise what the peer did decides, then the step.
fn failure_reason(step: Step, err: &BackendError) -> Reason {
    let dcv_step = matches!(
        step,
        Step::CheckChallenges | Step::PublishDcv | Step::CheckPropagation | Step::RemoveDcv
    );
    match err {
        _ if step == Step::Install => Reason::InstallFailed,
        BackendError::RateLimited { .. } => Reason::RateLimited,
        BackendError::Timeout { .. } => Reason::Timeout,
        _ if dcv_step => Reason::DcvFailed,
        _ if step == Step::LoadKey => Reason::KeyUnreadable,
        BackendError::Unreachable { .. } => Reason::Unreachable,
        BackendError::Refused { .. } => Reason::Refused,
        _ => Reason::Misconfigured,
    }
}

/// Records one renewal's (or revocation's) step events in the audit store and hands them to
/// whoever follows it.
#[derive(Clone)]
pub(crate) struct Audit {
    pub store: Arc<dyn AuditStore>,
    pub clock: Arc<dyn Clock>,
    pub renewal_id: i64,
    pub progress: Option<Arc<ProgressLog>>,
}

impl Audit {
    pub(crate) async fn record(&self, step: Step, status: StepStatus, message: &str) {
        let at = self.clock.now();
        match self
            .store
            .record_step(self.renewal_id, step, status, message, at)
            .await
        {
            Ok(event) => self.publish(RenewProgress::Step(event)),
            Err(e) => {
                tracing::error!(error = %e, step = step.as_str(), "cannot record a step event");
            }
        }
    }

    /// Hands `event` to the followers, if anyone may follow.
    pub(crate) fn publish(&self, event: RenewProgress) {
        if let Some(progress) = &self.progress {
            progress.push(event);
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
            .store
            .close_renewal(self.renewal_id, status, error.as_deref(), self.clock.now())
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

/// Whether a run changes anything live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A renewal: the key is written if new, the cert recorded and installed.
    Live,
    /// `rota renew --dry-run`: the same steps up to issuance, then the cert is discarded; the
    /// key file, the store's issued certs and the install target are never written.
    DryRun,
}

/// Runs the pipeline of one renewal of `cert`. With `issued` (a cert an earlier attempt of
/// this spec issued but could not install), it installs that one instead of ordering anew,
/// provided it still belongs to the key.
pub(crate) async fn run_pipeline(
    audit: Audit,
    dns_propagation: DnsPropagation,
    cert: Arc<CertRuntime>,
    issued: Option<IssuedCertRow>,
    mode: Mode,
    fence: Fence,
) -> Result<IssuedCert, RenewError> {
    let audit = &audit;
    let spec = &cert.spec;
    let key_path = spec.key_path.display().to_string();
    let key = audit
        .step(
            Step::LoadKey,
            &format!("key at {key_path}"),
            load_key(&cert, audit.clock.now(), mode),
        )
        .await?;
    if let Some(row) = issued.filter(|row| key_signed(&key, row)) {
        return install_issued(audit, &cert, &key, row).await;
    }
    let csr = audit
        .step(Step::GenerateCsr, "CSR for the spec's domains", async {
            let csr = key.csr_pem(&spec.domains).map_err(|e| {
                RenewError::new(Step::GenerateCsr, Reason::KeyUnreadable, e.to_string())
            })?;
            let names: Vec<_> = spec.domains.iter().map(ToString::to_string).collect();
            Ok((csr, format!("CSR with SANs {}", names.join(", "))))
        })
        .await?;
    // CAs with renewal information (ARI) want to know which cert an order replaces; a dry
    // run replaces nothing (and its staging CA never issued the live cert).
    let replacing = match mode {
        Mode::Live => cert.install.current_cert_pem(&spec.id).await.ok().flatten(),
        Mode::DryRun => None,
    };
    let kinds = cert
        .dcv
        .as_ref()
        .map(|d| d.supported_kinds().to_vec())
        .unwrap_or_default();
    let order = audit
        .step(
            Step::SubmitOrder,
            &format!("submitting to the {} CA", cert.ca.kind()),
            async {
                fence.check(Step::SubmitOrder).await?;
                let order = cert
                    .ca
                    .submit(&spec.domains, &csr, &kinds, replacing.as_deref())
                    .await
                    .map_err(|e| RenewError::backend(Step::SubmitOrder, &e))?;
                let n = order.challenges.len();
                Ok((order, format!("order accepted, {n} challenge(s) to answer")))
            },
        )
        .await?;
    let dcv = audit
        .step(
            Step::CheckChallenges,
            "checking the DCV solver can answer every challenge",
            async { check_challenges(&cert, &order.challenges) },
        )
        .await?;
    let issued = validate_and_issue(
        audit,
        &dns_propagation,
        &cert,
        dcv,
        &order.challenges,
        (&order.handle, &fence),
    )
    .await?;
    if mode == Mode::DryRun {
        audit
            .step(
                Step::PersistCert,
                "dry run: checking the issued cert, then discarding it",
                async { discard(&issued) },
            )
            .await?;
        return Ok(issued);
    }
    let row = audit
        .step(
            Step::PersistCert,
            "recording the issued cert",
            persist(audit, &cert, &issued),
        )
        .await?;
    install(audit, &cert, &key, &issued, &row).await?;
    Ok(issued)
}

/// Whether `row`'s cert was signed for `key` (a key moved aside since gets a new order).
fn key_signed(key: &CertKey, row: &IssuedCertRow) -> bool {
    crate::observe::leaf_spki(&row.cert_pem).is_ok_and(|spki| spki == key.public_key_der())
}

/// Installs the cert an earlier attempt issued and could not install, without a new order.
async fn install_issued(
    audit: &Audit,
    cert: &CertRuntime,
    key: &CertKey,
    row: IssuedCertRow,
) -> Result<IssuedCert, RenewError> {
    tracing::info!(serial = %row.serial, renewal_id = row.renewal_id, "installing the cert already issued; no new order");
    let issued = IssuedCert {
        cert_pem: row.cert_pem.clone(),
        chain_pem: row.chain_pem.clone(),
    };
    install(audit, cert, key, &issued, &row).await?;
    Ok(issued)
}

async fn install(
    audit: &Audit,
    cert: &CertRuntime,
    key: &CertKey,
    issued: &IssuedCert,
    row: &IssuedCertRow,
) -> Result<(), RenewError> {
    let reused = if row.renewal_id == audit.renewal_id {
        String::new()
    } else {
        format!(
            " (issued by renewal {}, whose install failed; no new order)",
            row.renewal_id
        )
    };
    audit
        .step(
            Step::Install,
            &format!(
                "installing serial {} via {}{reused}",
                row.serial,
                cert.install.kind()
            ),
            async {
                let mut done = install_and_hook(cert, key, issued, row).await?;
                done.push_str(&rotate_after_install(cert, key, audit.clock.now()).await?);
                Ok(((), done))
            },
        )
        .await
}

/// Installs `issued` with `key` through the cert's install backend (its `formats` included),
/// then runs its `post_command`; says what it did, for the install step. What a renewal and a
/// cluster node installing another node's cert have in common (key rotation is the renewal's
/// alone).
pub(crate) async fn install_and_hook(
    cert: &CertRuntime,
    key: &CertKey,
    issued: &IssuedCert,
    row: &IssuedCertRow,
) -> Result<String, RenewError> {
    cert.install
        .install(issued, key.pem(), &cert.spec.domains)
        .await
        .map_err(|e| RenewError::backend(Step::Install, &e))?;
    let mut done = format!(
        "installed serial {} (valid until {})",
        row.serial,
        rfc3339(row.not_after)
    );
    if let Some(hook) = cert.spec.install.post_command() {
        done.push_str(&run_post_command(cert, row, hook).await?);
    }
    Ok(done)
}

/// Runs the cert's deploy hook after an install and says how it ended, for the audit row; a
/// failure fails the install step (so the next attempt installs and runs it again).
async fn run_post_command(
    cert: &CertRuntime,
    row: &IssuedCertRow,
    hook: PostCommand<'_>,
) -> Result<String, RenewError> {
    let installed = post_command::Installed::new(&cert.spec, &row.serial, rfc3339(row.not_after));
    let finished = post_command::run(hook.argv, &installed, hook.timeout)
        .await
        .map_err(|e| RenewError::backend(Step::Install, &e))?;
    let shown = post_command::display(hook.argv);
    let said = if finished.stderr.is_empty() {
        String::new()
    } else {
        format!(", stderr: {}", finished.stderr)
    };
    Ok(format!(
        "; post_command `{shown}` ended with {}{said}",
        finished.status
    ))
}

async fn load_key(
    cert: &CertRuntime,
    now: OffsetDateTime,
    mode: Mode,
) -> Result<(CertKey, String), RenewError> {
    // A switch cut off between the install and its end is finished first: the installed
    // cert's public key says which key is live. Without a `.next` key there is nothing to
    // finish (`rotation: never` asks for no read), and a dry run changes no key file.
    let installed = if mode == Mode::Live && key_rotation::next_path(&cert.spec.key_path).exists() {
        cert.install
            .current_cert_pem(&cert.spec.id)
            .await
            .ok()
            .flatten()
    } else {
        None
    };
    let load = match mode {
        Mode::Live => keys::load_or_generate,
        Mode::DryRun => keys::load_or_generate_unsaved,
    };
    let spec = cert.spec.clone();
    let (settled, loaded) = tokio::task::spawn_blocking(move || {
        let settled = match installed.and_then(|pem| crate::observe::leaf_spki(&pem).ok()) {
            Some(spki) => key_rotation::settle(&spec.key_path, &spki, now)?,
            None => Settled::Unchanged,
        };
        let loaded = key_rotation::key_for_renewal(
            &spec.key_path,
            spec.key.key_type,
            spec.key.rotation,
            now,
            load,
        )?;
        Ok::<_, keys::KeyError>((settled, loaded))
    })
    .await
    .map_err(|e| {
        RenewError::new(
            Step::LoadKey,
            Reason::Panicked,
            format!("key loading panicked: {e}"),
        )
    })?
    .map_err(|e| RenewError::new(Step::LoadKey, Reason::KeyUnreadable, e.to_string()))?;
    let wanted = cert.spec.key.key_type;
    let mut message = match (loaded.generated, loaded.next, loaded.key.key_type()) {
        (true, _, _) if mode == Mode::DryRun => format!(
            "dry run: generated a throwaway {} key in memory (the key file is not written)",
            wanted.as_str()
        ),
        (true, _, _) => format!(
            "generated a new {} key (it is reused on every renewal)",
            wanted.as_str()
        ),
        (false, true, _) => format!(
            "using the prepared next key {} (pin-sha256 {}), as `key.rotation` asks; it becomes the key once its cert is installed",
            key_rotation::next_path(&cert.spec.key_path).display(),
            loaded.key.info(wanted).pin_sha256
        ),
        (false, false, Some(found)) if found == wanted => {
            format!("loaded the existing {} key", found.as_str())
        }
        (false, false, found) => format!(
            "loaded the existing {} key, although `key.type` asks for {}: rota never replaces an existing key; move it away to have a {} key generated (a new key breaks pinning)",
            found.map_or("other", KeyType::as_str),
            wanted.as_str(),
            wanted.as_str()
        ),
    };
    if let Settled::Switched(archived) = settled {
        message.insert_str(0, &switched_message(archived.as_deref()));
    }
    Ok((loaded.key, message))
}

/// What the audit says of a finished switch.
fn switched_message(archived: Option<&std::path::Path>) -> String {
    let archived = archived.map_or_else(String::new, |p| {
        format!(", the old one kept as {}", p.display())
    });
    format!("the installed cert is signed by the prepared next key: it is now the key{archived}; ")
}

/// After an install: completes a switch to the `.next` key the installed cert was signed for,
/// then prepares a new `.next` key when `key.rotation` asks for one. Says what it did.
async fn rotate_after_install(
    cert: &CertRuntime,
    key: &CertKey,
    now: OffsetDateTime,
) -> Result<String, RenewError> {
    let spec = cert.spec.clone();
    let spki = key.public_key_der();
    let (settled, prepared) = tokio::task::spawn_blocking(move || {
        let settled = key_rotation::settle(&spec.key_path, &spki, now)?;
        let prepared =
            key_rotation::ensure_next(&spec.key_path, spec.key.key_type, spec.key.rotation)?;
        Ok::<_, keys::KeyError>((settled, prepared))
    })
    .await
    .map_err(|e| {
        RenewError::new(
            Step::Install,
            Reason::Panicked,
            format!("the key switch panicked: {e}"),
        )
    })?
    .map_err(|e| RenewError::new(Step::Install, Reason::KeyUnreadable, e.to_string()))?;
    let switched = match settled {
        Settled::Switched(archived) => Some(
            switched_message(archived.as_deref())
                .trim_end_matches("; ")
                .to_owned(),
        ),
        Settled::Unchanged => None,
    };
    let prepared = prepared.map(|next| {
        format!(
            "prepared the next key {} (pin-sha256 {}): publish its pin before the renewal that uses it",
            key_rotation::next_path(&cert.spec.key_path).display(),
            next.info(cert.spec.key.key_type).pin_sha256
        )
    });
    let parts: Vec<String> = switched.into_iter().chain(prepared).collect();
    Ok(parts
        .iter()
        .flat_map(|part| ["; ", part.as_str()])
        .collect())
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
            Reason::Misconfigured,
            format!(
                "the CA asked for {} challenge(s) but the cert has no `dcv:` block",
                challenges.len()
            ),
        ));
    };
    if let Some(c) = challenges.iter().find(|c| !dcv.supports(c)) {
        return Err(RenewError::new(
            Step::CheckChallenges,
            Reason::DcvFailed,
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
/// waits for issuance of the order `handle` names, and then removes every journalled
/// challenge whatever happened, so a failed run leaves no stray records. (A renewal cut off
/// by its deadline or a panic does not get here: its journal entries are removed for it.)
async fn validate_and_issue(
    audit: &Audit,
    dns_propagation: &DnsPropagation,
    cert: &CertRuntime,
    dcv: Option<Arc<dyn DcvBackend>>,
    challenges: &[DcvChallenge],
    (handle, fence): (&OrderHandle, &Fence),
) -> Result<IssuedCert, RenewError> {
    let mut journalled = Vec::with_capacity(challenges.len());
    let dns = challenges
        .iter()
        .any(|c| c.kind() == ChallengeKind::Dns01)
        .then(|| {
            DnsChecker::new(dns_propagation)
                .asking_only(dcv.as_ref().and_then(|dcv| dcv.readiness_server()))
        });
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
                        fence.check(Step::AwaitIssuance).await?;
                        let issued = cert
                            .ca
                            .await_issuance(handle)
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
    audit: &Audit,
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
                let target = dns.resolve_target(record_name).await.map_err(|e| {
                    RenewError::new(Step::PublishDcv, Reason::DcvFailed, e.to_string())
                })?;
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
        let at = audit.clock.now();
        let id = audit
            .store
            .journal_dcv(audit.renewal_id, &cert.spec.id, spec, &challenge, at)
            .await
            .map_err(|e| {
                RenewError::new(
                    Step::PublishDcv,
                    Reason::StoreFailed,
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
    audit: &Audit,
    dns: &DnsChecker,
    journalled: &[(i64, DcvChallenge)],
) -> Result<(), RenewError> {
    for (_, challenge) in journalled {
        let (record_name, record_value) = match challenge {
            DcvChallenge::Dns01 {
                record_name,
                record_value,
                ..
            } => (record_name, record_value),
            // A CA's DCV CNAME is checked by the CA itself, which keeps polling until it
            // resolves (await_issuance waits for that); only TXT records are checked here.
            DcvChallenge::DnsCname { .. } | DcvChallenge::Http01 { .. } => continue,
        };
        audit
            .step(
                Step::CheckPropagation,
                &format!("waiting for TXT {record_name} on every nameserver"),
                async {
                    let report =
                        dns.wait_for_txt(record_name, record_value)
                            .await
                            .map_err(|e| {
                                RenewError::new(
                                    Step::CheckPropagation,
                                    Reason::DcvFailed,
                                    e.to_string(),
                                )
                            })?;
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
    audit: &Audit,
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
            && let Err(e) = audit.store.clear_dcv(*journal_id).await
        {
            tracing::error!(error = %e, "cannot clear a DCV journal entry");
        }
    }
}

/// The facts of the cert the CA returned; an unreadable one fails the persist step.
fn read_issued(issued: &IssuedCert) -> Result<rota_api::wire::InstalledCert, RenewError> {
    inspect_pem(&issued.cert_pem).map_err(|e| {
        RenewError::new(
            Step::PersistCert,
            Reason::Refused,
            format!("the CA returned an unreadable certificate: {e}"),
        )
    })
}

/// A dry run's last step: the issued cert must be readable, and is then dropped.
fn discard(issued: &IssuedCert) -> Result<((), String), RenewError> {
    let facts = read_issued(issued)?;
    Ok((
        (),
        format!(
            "dry run: the CA signed serial {} (valid until {}); discarded, nothing recorded or installed",
            facts.serial,
            rfc3339(facts.not_after)
        ),
    ))
}

async fn persist(
    audit: &Audit,
    cert: &CertRuntime,
    issued: &IssuedCert,
) -> Result<(IssuedCertRow, String), RenewError> {
    let facts = read_issued(issued)?;
    let row = IssuedCertRow {
        cert_id: cert.spec.id.clone(),
        renewal_id: audit.renewal_id,
        cert_pem: issued.cert_pem.clone(),
        chain_pem: issued.chain_pem.clone(),
        serial: facts.serial,
        not_after: facts.not_after,
        issued_at: audit.clock.now(),
    };
    audit
        .store
        .record_issued_cert(&row)
        .await
        .map_err(|e| store_error(Step::PersistCert, &e, "cannot record the issued cert"))?;
    let message = format!("recorded serial {}", row.serial);
    Ok((row, message))
}
