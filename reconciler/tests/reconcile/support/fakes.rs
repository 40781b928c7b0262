//! Fakes for the four backend surfaces, handed to the reconciler by [`FakeFactory`]. Each
//! records what the reconciler asked of it; what the CA does is a closure the test sets. The
//! real parts (signing, writing PEM files) are the providers crate's local CA and filesystem
//! installer, so what the reconciler observes afterwards is a real, parseable cert.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use tokio::sync::Semaphore;

use rota_api::cluster::{ClusterCoordinator, Lease};
use rota_api::config::{AlertSpec, CaSpec, CertSpec, Config, DcvSpec, LocalCa};
use rota_api::{
    AlertBackend, AlertEvent, BackendError, BackendFactory, CaBackend, CertId, ChallengeKind,
    DcvBackend, DcvChallenge, DomainName, InstallBackend, IssuedCert, OrderHandle, PlacedOrder,
    RenewalWindow, RevocationReason, SecretString,
};
use rota_providers::Providers;
use rota_store::{ClusterStore, NodeRecord, RenewalRequest, StoreError};

/// A boxed future, as the CA closures return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What `submit` answers: the challenges to satisfy, or a refusal.
type SubmitFn = dyn Fn() -> Result<Vec<DcvChallenge>, BackendError> + Send + Sync;

/// What `await_issuance` does, given the local CA that really signs and the order's handle.
type IssueFn = dyn Fn(Arc<dyn CaBackend>, OrderHandle) -> BoxFuture<Result<IssuedCert, BackendError>>
    + Send
    + Sync;

fn guard<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A refusal from the fake CA, as a CA that says no would report it.
pub fn refused(detail: &str) -> BackendError {
    BackendError::Refused {
        backend: "fake-ca",
        detail: detail.to_owned(),
    }
}

/// An HTTP-01 challenge for `domain`.
pub fn http01(domain: &str) -> DcvChallenge {
    DcvChallenge::Http01 {
        domain: domain.to_owned(),
        token: format!("tok-{}", domain.replace('.', "-")),
        key_authorization: format!("tok-{domain}.thumb"),
    }
}

/// Issuance that signs with the local CA straight away.
fn sign_at_once(
    signer: Arc<dyn CaBackend>,
    handle: OrderHandle,
) -> BoxFuture<Result<IssuedCert, BackendError>> {
    Box::pin(async move { signer.await_issuance(&handle).await })
}

/// The script every fake CA follows, shared by all certs: what orders answer, what issuance
/// does, and how many orders were submitted.
pub struct CaScript {
    submit: Mutex<Arc<SubmitFn>>,
    issue: Mutex<Arc<IssueFn>>,
    submits: AtomicUsize,
    revoked: Mutex<Vec<(String, RevocationReason)>>,
    window: Mutex<Option<RenewalWindow>>,
}

impl Default for CaScript {
    /// Orders ask for no challenge; issuance signs with the local CA at once.
    fn default() -> Self {
        Self {
            submit: Mutex::new(Arc::new(|| Ok(Vec::new()))),
            issue: Mutex::new(Arc::new(sign_at_once)),
            submits: AtomicUsize::new(0),
            revoked: Mutex::new(Vec::new()),
            window: Mutex::new(None),
        }
    }
}

impl CaScript {
    /// Every order from now on asks for these challenges.
    pub fn ask_for(&self, challenges: Vec<DcvChallenge>) {
        self.on_submit(move || Ok(challenges.clone()));
    }

    /// Every order from now on is answered by `answer`.
    pub fn on_submit(
        &self,
        answer: impl Fn() -> Result<Vec<DcvChallenge>, BackendError> + Send + Sync + 'static,
    ) {
        *guard(&self.submit) = Arc::new(answer);
    }

    /// Every `await_issuance` from now on runs `issue` (which may sign with the local CA it is
    /// given, fail, or never return).
    pub fn on_issue(
        &self,
        issue: impl Fn(Arc<dyn CaBackend>, OrderHandle) -> BoxFuture<Result<IssuedCert, BackendError>>
        + Send
        + Sync
        + 'static,
    ) {
        *guard(&self.issue) = Arc::new(issue);
    }

    /// Every `await_issuance` from now on signs at once.
    pub fn sign(&self) {
        *guard(&self.issue) = Arc::new(sign_at_once);
    }

    /// From now on every `await_issuance` waits at the returned gate before signing.
    pub fn hold_issuance(&self) -> Arc<IssuanceGate> {
        let gate = Arc::new(IssuanceGate::default());
        let held = Arc::clone(&gate);
        self.on_issue(move |signer, handle| {
            let gate = Arc::clone(&held);
            Box::pin(async move {
                gate.pass().await;
                signer.await_issuance(&handle).await
            })
        });
        gate
    }

    /// From now on the CA publishes `window` (ARI) for every cert it is asked about (`None`:
    /// for none).
    pub fn publish_window(&self, window: Option<RenewalWindow>) {
        *guard(&self.window) = window;
    }

    /// How many orders were submitted so far.
    pub fn submits(&self) -> usize {
        self.submits.load(Ordering::SeqCst)
    }

    /// The certs revoked so far (leaf PEM) and why, in order.
    pub fn revoked(&self) -> Vec<(String, RevocationReason)> {
        guard(&self.revoked).clone()
    }
}

/// Where held issuances wait, counting how many wait at once.
pub struct IssuanceGate {
    permits: Semaphore,
    waiting: AtomicUsize,
    peak: AtomicUsize,
}

impl Default for IssuanceGate {
    /// A closed gate.
    fn default() -> Self {
        Self {
            permits: Semaphore::new(0),
            waiting: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }
}

impl IssuanceGate {
    async fn pass(&self) {
        let now = self.waiting.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        // The semaphore is never closed, so acquiring only fails if it were.
        if let Ok(permit) = self.permits.acquire().await {
            permit.forget();
        }
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }

    /// Lets `n` more issuances through.
    pub fn open(&self, n: usize) {
        self.permits.add_permits(n);
    }

    /// How many issuances are waiting at the gate now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// The most that ever waited at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

/// One cert's CA: follows the shared [`CaScript`] of its kind, signing through the real
/// local CA.
struct FakeCa {
    kind: &'static str,
    script: Arc<CaScript>,
    signer: Arc<dyn CaBackend>,
}

#[async_trait]
impl CaBackend for FakeCa {
    fn kind(&self) -> &'static str {
        self.kind
    }

    async fn submit(
        &self,
        domains: &[DomainName],
        csr_pem: &str,
        preferred_kinds: &[ChallengeKind],
        replacing: Option<&str>,
    ) -> Result<PlacedOrder, BackendError> {
        self.script.submits.fetch_add(1, Ordering::SeqCst);
        let answer = Arc::clone(&*guard(&self.script.submit));
        let challenges = answer()?;
        // The local CA checks the CSR and hands back the handle it signs from.
        let order = self
            .signer
            .submit(domains, csr_pem, preferred_kinds, replacing)
            .await?;
        Ok(PlacedOrder {
            challenges,
            handle: order.handle,
        })
    }

    async fn await_issuance(&self, handle: &OrderHandle) -> Result<IssuedCert, BackendError> {
        let issue = Arc::clone(&*guard(&self.script.issue));
        issue(Arc::clone(&self.signer), handle.clone()).await
    }

    async fn revoke(&self, cert_pem: &str, reason: RevocationReason) -> Result<(), BackendError> {
        guard(&self.script.revoked).push((cert_pem.to_owned(), reason));
        Ok(())
    }

    fn offers_renewal_info(&self) -> bool {
        true
    }

    async fn renewal_window(&self, _cert_pem: &str) -> Result<Option<RenewalWindow>, BackendError> {
        Ok(guard(&self.script.window).clone())
    }
}

/// A DCV solver that records every publish and removal.
pub struct FakeDcv {
    kinds: Vec<ChallengeKind>,
    published: Mutex<Vec<DcvChallenge>>,
    removed: Mutex<Vec<DcvChallenge>>,
    refuse: Mutex<Option<DcvChallenge>>,
}

impl FakeDcv {
    /// A solver answering `kinds`.
    pub fn new(kinds: &[ChallengeKind]) -> Self {
        Self {
            kinds: kinds.to_vec(),
            published: Mutex::new(Vec::new()),
            removed: Mutex::new(Vec::new()),
            refuse: Mutex::new(None),
        }
    }

    /// Publishing `challenge` fails from now on (the others still succeed).
    pub fn refuse_to_publish(&self, challenge: DcvChallenge) {
        *guard(&self.refuse) = Some(challenge);
    }

    /// Every challenge published, in order.
    pub fn published(&self) -> Vec<DcvChallenge> {
        guard(&self.published).clone()
    }

    /// Every challenge removed, in order.
    pub fn removed(&self) -> Vec<DcvChallenge> {
        guard(&self.removed).clone()
    }
}

#[async_trait]
impl DcvBackend for FakeDcv {
    fn kind(&self) -> &'static str {
        "fake-dcv"
    }

    fn supported_kinds(&self) -> &[ChallengeKind] {
        &self.kinds
    }

    async fn publish(&self, challenge: &DcvChallenge) -> Result<(), BackendError> {
        if guard(&self.refuse).as_ref() == Some(challenge) {
            return Err(BackendError::Unreachable {
                backend: "fake-dcv",
                detail: "the DNS API is down".to_owned(),
            });
        }
        guard(&self.published).push(challenge.clone());
        Ok(())
    }

    async fn remove(&self, challenge: &DcvChallenge) -> Result<(), BackendError> {
        guard(&self.removed).push(challenge.clone());
        Ok(())
    }
}

/// One cert's installer: the real filesystem installer, unless installs are set to fail.
struct FakeInstall {
    files: Arc<dyn InstallBackend>,
    failing: Arc<AtomicBool>,
}

#[async_trait]
impl InstallBackend for FakeInstall {
    fn kind(&self) -> &'static str {
        "fake-install"
    }

    async fn install(
        &self,
        cert: &IssuedCert,
        private_key_pem: &SecretString,
        domains: &[DomainName],
    ) -> Result<(), BackendError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(BackendError::Refused {
                backend: "fake-install",
                detail: "the service refused the new cert".to_owned(),
            });
        }
        self.files.install(cert, private_key_pem, domains).await
    }

    async fn current_cert_pem(&self, cert_id: &CertId) -> Result<Option<String>, BackendError> {
        self.files.current_cert_pem(cert_id).await
    }

    fn current_cert_path(&self, cert_id: &CertId) -> Option<PathBuf> {
        self.files.current_cert_path(cert_id)
    }
}

/// An alert sink that keeps every event it is handed; it can be told to refuse them, or to
/// never answer, as a broken mail server or webhook receiver would.
#[derive(Default)]
pub struct FakeAlerts {
    events: Mutex<Vec<AlertEvent>>,
    refusal: Mutex<Option<String>>,
    hang: AtomicBool,
}

impl FakeAlerts {
    /// Every event dispatched, in order.
    pub fn events(&self) -> Vec<AlertEvent> {
        guard(&self.events).clone()
    }

    /// From now on every dispatch fails with `detail` (`None`: succeeds again).
    pub fn refuse(&self, detail: Option<&str>) {
        *guard(&self.refusal) = detail.map(str::to_owned);
    }

    /// From now on every dispatch waits forever.
    pub fn hang(&self) {
        self.hang.store(true, Ordering::SeqCst);
    }
}

#[async_trait]
impl AlertBackend for FakeAlerts {
    fn kind(&self) -> &'static str {
        "fake-alerts"
    }

    async fn dispatch(&self, event: &AlertEvent) -> Result<(), BackendError> {
        guard(&self.events).push(event.clone());
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        match guard(&self.refusal).clone() {
            Some(detail) => Err(BackendError::Refused {
                backend: "fake-alerts",
                detail,
            }),
            None => Ok(()),
        }
    }
}

/// Builds the fakes for whatever the config says: every cert's CA follows [`Self::ca`],
/// every `dcv:` block is [`Self::dcv`], every alert sink is [`Self::alerts`].
pub struct FakeFactory {
    providers: Providers,
    /// What every CA of certs with `ca: { kind: local }` does.
    pub ca: Arc<CaScript>,
    /// What every CA of certs with `ca: { kind: acme }` does; a CA of its own, with its own
    /// renewal slots.
    pub acme: Arc<CaScript>,
    /// The one DCV solver.
    pub dcv: Arc<FakeDcv>,
    /// The one alert sink.
    pub alerts: Arc<FakeAlerts>,
    install_failing: Arc<AtomicBool>,
}

impl FakeFactory {
    /// Fakes whose DCV solver answers `kinds`; the CA signs and installs land until told otherwise.
    pub fn new(kinds: &[ChallengeKind]) -> Self {
        Self {
            providers: Providers::new(),
            ca: Arc::new(CaScript::default()),
            acme: Arc::new(CaScript::default()),
            dcv: Arc::new(FakeDcv::new(kinds)),
            alerts: Arc::new(FakeAlerts::default()),
            install_failing: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Makes every install fail (`true`) or land (`false`) from now on.
    pub fn fail_installs(&self, failing: bool) {
        self.install_failing.store(failing, Ordering::SeqCst);
    }
}

impl BackendFactory for FakeFactory {
    fn ca(&self, config: &Config, cert: &CertSpec) -> Result<Arc<dyn CaBackend>, BackendError> {
        let (kind, script) = match cert.ca {
            CaSpec::Acme(_) => ("fake-acme", &self.acme),
            _ => ("fake-local", &self.ca),
        };
        // Whatever the CA, the local CA signs, so what gets installed is a real cert.
        let local = CertSpec {
            ca: CaSpec::Local(LocalCa::default()),
            ..cert.clone()
        };
        Ok(Arc::new(FakeCa {
            kind,
            script: Arc::clone(script),
            signer: self.providers.ca(config, &local)?,
        }))
    }

    fn dcv(&self, _config: &Config, _spec: &DcvSpec) -> Result<Arc<dyn DcvBackend>, BackendError> {
        Ok(Arc::clone(&self.dcv) as Arc<dyn DcvBackend>)
    }

    fn install(
        &self,
        config: &Config,
        cert: &CertSpec,
    ) -> Result<Arc<dyn InstallBackend>, BackendError> {
        Ok(Arc::new(FakeInstall {
            files: self.providers.install(config, cert)?,
            failing: Arc::clone(&self.install_failing),
        }))
    }

    fn alert(
        &self,
        _config: &Config,
        _spec: &AlertSpec,
    ) -> Result<Arc<dyn AlertBackend>, BackendError> {
        Ok(Arc::clone(&self.alerts) as Arc<dyn AlertBackend>)
    }
}

/// A leader-election coordinator whose answer the test sets: who holds the lease, or an
/// error. It records the terms released.
pub struct FakeCoordinator {
    node: String,
    answer: Mutex<Result<Lease, String>>,
    released: Mutex<Vec<u64>>,
}

impl FakeCoordinator {
    /// The coordinator of node `node`, whose lease is held by `holder` under `term`.
    pub fn new(node: &str, holder: &str, term: u64) -> Self {
        let this = Self {
            node: node.to_owned(),
            answer: Mutex::new(Err(String::new())),
            released: Mutex::new(Vec::new()),
        };
        this.held_by(holder, term);
        this
    }

    /// From now on the lease is held by `holder` under `term`.
    pub fn held_by(&self, holder: &str, term: u64) {
        *guard(&self.answer) = Ok(Lease {
            holder: holder.to_owned(),
            term,
            expires_at: time::OffsetDateTime::now_utc() + time::Duration::minutes(1),
        });
    }

    /// From now on every lease attempt fails with `detail`.
    pub fn fail(&self, detail: &str) {
        *guard(&self.answer) = Err(detail.to_owned());
    }

    /// The terms released, in order.
    pub fn released(&self) -> Vec<u64> {
        guard(&self.released).clone()
    }
}

#[async_trait]
impl ClusterCoordinator for FakeCoordinator {
    fn node_id(&self) -> &str {
        &self.node
    }

    async fn acquire_or_refresh(&self) -> Result<Lease, BackendError> {
        guard(&self.answer)
            .clone()
            .map_err(|detail| BackendError::Unreachable {
                backend: "fake-coordinator",
                detail,
            })
    }

    async fn release(&self, term: u64) -> Result<(), BackendError> {
        guard(&self.released).push(term);
        Ok(())
    }

    async fn current(&self) -> Result<Option<Lease>, BackendError> {
        Ok(guard(&self.answer).clone().ok())
    }
}

/// Forwarded renewal requests, shared by the nodes of one fake cluster.
#[derive(Default)]
pub struct RequestQueue {
    waiting: Mutex<Vec<RenewalRequest>>,
    taken: AtomicUsize,
    next_id: AtomicUsize,
    watchers: Mutex<Vec<tokio::sync::mpsc::Sender<CertId>>>,
    issued_watchers: Mutex<Vec<tokio::sync::mpsc::Sender<CertId>>>,
}

/// One node's view of the shared store's cluster side: the fence it set and whether a fence
/// check passes (the test sets it), its heartbeats, and the request queue it shares.
pub struct FakeClusterStore {
    node: String,
    fences: Mutex<Vec<Option<u64>>>,
    /// Fence checks that pass before every later one fails as `Fenced` (`usize::MAX`: all pass).
    passing_checks: AtomicUsize,
    heartbeats: Mutex<Vec<Option<u64>>>,
    /// The forwarded requests of the whole fake cluster.
    pub requests: Arc<RequestQueue>,
}

impl FakeClusterStore {
    /// Node `node`'s view; every fence check passes.
    pub fn new(node: &str) -> Self {
        Self::sharing(node, Arc::default())
    }

    /// Another node's view of the same requests.
    pub fn peer(&self, node: &str) -> Self {
        Self::sharing(node, Arc::clone(&self.requests))
    }

    fn sharing(node: &str, requests: Arc<RequestQueue>) -> Self {
        Self {
            node: node.to_owned(),
            fences: Mutex::new(Vec::new()),
            passing_checks: AtomicUsize::new(usize::MAX),
            heartbeats: Mutex::new(Vec::new()),
            requests,
        }
    }

    /// The next `n` fence checks pass, every later one fails as another node took the lease.
    pub fn fence_after(&self, n: usize) {
        self.passing_checks.store(n, Ordering::SeqCst);
    }

    /// Every `set_fence`, in order.
    pub fn fences(&self) -> Vec<Option<u64>> {
        guard(&self.fences).clone()
    }

    /// How many heartbeats this node sent.
    pub fn heartbeats(&self) -> usize {
        guard(&self.heartbeats).len()
    }

    /// How many requests were taken by a leader, in all.
    pub fn taken(&self) -> usize {
        self.requests.taken.load(Ordering::SeqCst)
    }

    /// How many requests wait for a leader.
    pub fn waiting(&self) -> usize {
        guard(&self.requests.waiting).len()
    }
}

#[async_trait]
impl ClusterStore for FakeClusterStore {
    fn set_fence(&self, term: Option<u64>) {
        guard(&self.fences).push(term);
    }

    async fn check_fence(&self) -> Result<(), StoreError> {
        let passed = self
            .passing_checks
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        match passed {
            Ok(_) => Ok(()),
            Err(_) => Err(StoreError::Fenced {
                action: "issuing",
                term: guard(&self.fences)
                    .iter()
                    .rev()
                    .find_map(|t| *t)
                    .unwrap_or(0),
                detail: "the lease now names node-b under term 9".to_owned(),
            }),
        }
    }

    async fn heartbeat(
        &self,
        _at: time::OffsetDateTime,
        leader_term: Option<u64>,
    ) -> Result<(), StoreError> {
        guard(&self.heartbeats).push(leader_term);
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        Ok(vec![NodeRecord {
            node_id: self.node.clone(),
            last_seen: time::OffsetDateTime::now_utc(),
            version: "test".to_owned(),
            leader_term: guard(&self.heartbeats).last().copied().flatten(),
        }])
    }

    async fn request_renewal(
        &self,
        cert_id: &CertId,
        at: time::OffsetDateTime,
    ) -> Result<i64, StoreError> {
        let id = i64::try_from(self.requests.next_id.fetch_add(1, Ordering::SeqCst)).unwrap_or(0);
        guard(&self.requests.waiting).push(RenewalRequest {
            id,
            cert_id: cert_id.clone(),
            requested_by: self.node.clone(),
            requested_at: at,
        });
        let watchers = guard(&self.requests.watchers).clone();
        for watcher in watchers {
            let _ = watcher.send(cert_id.clone()).await;
        }
        Ok(id)
    }

    async fn take_renewal_requests(&self) -> Result<Vec<RenewalRequest>, StoreError> {
        let taken = std::mem::take(&mut *guard(&self.requests.waiting));
        self.requests.taken.fetch_add(taken.len(), Ordering::SeqCst);
        Ok(taken)
    }

    async fn watch_issued(&self) -> Result<tokio::sync::mpsc::Receiver<CertId>, StoreError> {
        // Nothing is announced, but the channel stays open, as a live query does.
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        guard(&self.requests.issued_watchers).push(tx);
        Ok(rx)
    }

    async fn watch_requests(&self) -> Result<tokio::sync::mpsc::Receiver<CertId>, StoreError> {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        guard(&self.requests.watchers).push(tx);
        Ok(rx)
    }
}
