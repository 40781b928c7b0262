//! `cluster: { coordinator: kubernetes_lease, namespace, lease_name, kubeconfig_path }`: the
//! leader lease kept in a `coordination.k8s.io/v1` `Lease`
//! (<https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/lease-v1/>), the
//! way client-go's `leaderelection` package (and so cert-manager and kube-controller-manager)
//! elects a leader:
//!
//! - `spec.holderIdentity` is the holder's `node_id`; empty once it released the lease
//!   (client-go writes it empty), which leaves the lease free to take at once.
//! - `spec.renewTime` + `spec.leaseDurationSeconds` is when the lease lapses; every node
//!   compares it with its own clock, so the nodes' clocks must agree to well within the lease
//!   (NTP), as client-go assumes too.
//! - `spec.leaseTransitions` is our term. It goes up by one each time the holder changes,
//!   taking a lapsed or released lease included, and never on a refresh — exactly the term's
//!   contract. rota counts the first holder as a transition (client-go starts at 0), so no
//!   holder ever has term 0 and a store fencing on "term at least the last seen" can start
//!   from 0.
//!
//! Every write is conditional on `metadata.resourceVersion`
//! (<https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions>): the
//! `PUT` carries the version rota read, so when another node wrote in between the API server
//! answers 409 Conflict and rota re-reads and reports what stands instead of retrying into
//! the lease. A `POST` that finds the `Lease` already made (409 AlreadyExists) is the same
//! race. Hence two nodes are never both told they hold it for overlapping times.

use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::coordination::v1::{Lease as LeaseObject, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use rota_api::BackendError;
use rota_api::cluster::{ClusterCoordinator, Lease};
use rota_api::config::{ClusterConfig, Coordinator};
use time::OffsetDateTime;

use crate::kube_client::{self, bounded};

/// The `cluster.coordinator` value of this coordinator.
const KIND: &str = "kubernetes_lease";

/// How many times `release` re-reads after a conflict before giving up.
const RELEASE_ATTEMPTS: usize = 3;

/// The leader lease in one Kubernetes `Lease` object.
pub struct K8sLeaseCoordinator {
    api: Api<LeaseObject>,
    namespace: String,
    name: String,
    node_id: String,
    lease_seconds: i32,
}

impl K8sLeaseCoordinator {
    /// A coordinator competing as `node_id` for the `Lease` `namespace/name`, holding it for
    /// `lease` (whole seconds, at least one) at each acquisition or refresh.
    #[must_use]
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        node_id: &str,
        lease: Duration,
    ) -> Self {
        let seconds = i32::try_from(lease.as_secs()).unwrap_or(i32::MAX).max(1);
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            node_id: node_id.to_owned(),
            lease_seconds: seconds,
        }
    }

    /// The coordinator a `cluster: { coordinator: kubernetes_lease }` block describes,
    /// connected through its `kubeconfig_path` or the Pod's ServiceAccount.
    pub async fn from_config(cluster: &ClusterConfig) -> Result<Self, BackendError> {
        if cluster.coordinator != Coordinator::KubernetesLease {
            return Err(BackendError::invalid(
                KIND,
                "`cluster.coordinator` is not `kubernetes_lease`",
            ));
        }
        let namespace = cluster.namespace.as_deref().ok_or(BackendError::invalid(
            KIND,
            "`cluster.namespace` is required with `coordinator: kubernetes_lease`",
        ))?;
        let client = kube_client::connect(
            KIND,
            cluster.kubeconfig_path.as_deref(),
            "cluster.kubeconfig_path",
        )
        .await?;
        Ok(Self::new(
            client,
            namespace,
            &cluster.lease_name,
            &cluster.node_id,
            Duration::from_secs(cluster.lease_seconds),
        ))
    }

    /// `Lease namespace/name`, for messages.
    fn target(&self) -> String {
        format!("Lease {}/{}", self.namespace, self.name)
    }

    async fn read(&self) -> Result<Option<LeaseObject>, BackendError> {
        let what = format!("the API server to return {}", self.target());
        bounded(KIND, &what, self.api.get_opt(&self.name))
            .await?
            .map_err(|e| self.error("reading", &e))
    }

    /// Creates the `Lease` held by this node; `None` when another node created it first.
    async fn create(&self, now: OffsetDateTime) -> Result<Option<LeaseObject>, BackendError> {
        let object = LeaseObject {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(
                taken(None, &self.node_id, self.lease_seconds, now)
                    .map_err(|e| self.invalid(&e))?,
            ),
        };
        let what = format!("the API server to create {}", self.target());
        match bounded(
            KIND,
            &what,
            self.api.create(&PostParams::default(), &object),
        )
        .await?
        {
            Ok(created) => Ok(Some(created)),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
            Err(e) => Err(self.error("creating", &e)),
        }
    }

    /// Replaces the `Lease` with `object`, guarded by the `resourceVersion` it carries;
    /// `None` when another writer got there first (409 Conflict).
    async fn replace(&self, object: &LeaseObject) -> Result<Option<LeaseObject>, BackendError> {
        let what = format!("the API server to update {}", self.target());
        let params = PostParams::default();
        match bounded(KIND, &what, self.api.replace(&self.name, &params, object)).await? {
            Ok(replaced) => Ok(Some(replaced)),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
            Err(e) => Err(self.error("updating", &e)),
        }
    }

    /// After a lost race: the lease as the winner left it.
    async fn reread(&self) -> Result<Lease, BackendError> {
        let object = self.read().await?.ok_or_else(|| BackendError::Refused {
            backend: KIND,
            detail: format!(
                "{} was written by another node and then deleted while rota competed for it; the next round tries again",
                self.target()
            ),
        })?;
        self.lease(&object)
    }

    fn lease(&self, object: &LeaseObject) -> Result<Lease, BackendError> {
        observed(object).map_err(|e| self.invalid(&e))
    }

    fn invalid(&self, why: &str) -> BackendError {
        BackendError::invalid(KIND, format!("{}: {why}", self.target()))
    }

    /// Maps a kube error for `action` on the `Lease` to what an operator can act on.
    fn error(&self, action: &str, err: &kube::Error) -> BackendError {
        kube_client::api_error(
            KIND,
            &self.namespace,
            &self.target(),
            action,
            err,
            "the ServiceAccount's Role needs `get`, `create` and `update` on `leases` in API group `coordination.k8s.io`",
            None,
        )
    }
}

/// What to do with the lease as read.
#[derive(Debug, PartialEq)]
enum Step {
    /// Another node holds it and it has not lapsed: leave it alone.
    Leave,
    /// Write this spec (taking the lease, or refreshing ours).
    Write(LeaseSpec),
}

/// Whether `node_id` may write the lease whose spec is `current` at `now`, and what.
fn next_step(
    current: &LeaseSpec,
    node_id: &str,
    lease_seconds: i32,
    now: OffsetDateTime,
) -> Result<Step, String> {
    let holder = holder(current);
    if holder.is_some_and(|h| h != node_id) && expires_at(current)? > now {
        return Ok(Step::Leave);
    }
    taken(Some(current), node_id, lease_seconds, now).map(Step::Write)
}

/// The spec after `node_id` takes or refreshes the lease whose spec was `previous`.
fn taken(
    previous: Option<&LeaseSpec>,
    node_id: &str,
    lease_seconds: i32,
    now: OffsetDateTime,
) -> Result<LeaseSpec, String> {
    let now = micro_time(now)?;
    let mut spec = previous.cloned().unwrap_or_default();
    if previous.and_then(holder) != Some(node_id) {
        let transitions = spec.lease_transitions.unwrap_or(0);
        spec.lease_transitions = Some(
            transitions
                .checked_add(1)
                .ok_or("`leaseTransitions` is at its maximum; delete the Lease to start over")?,
        );
        spec.acquire_time = Some(now.clone());
        spec.holder_identity = Some(node_id.to_owned());
    }
    spec.renew_time = Some(now);
    spec.lease_duration_seconds = Some(lease_seconds);
    Ok(spec)
}

/// The holder named by `spec`; `None` when nobody holds it (never taken, or released).
fn holder(spec: &LeaseSpec) -> Option<&str> {
    spec.holder_identity.as_deref().filter(|h| !h.is_empty())
}

/// When the lease in `spec` lapses: its last renewal plus its duration. A lease never
/// renewed counts as lapsed long ago, as client-go reads a missing `renewTime`.
fn expires_at(spec: &LeaseSpec) -> Result<OffsetDateTime, String> {
    let renewed = match &spec.renew_time {
        Some(MicroTime(at)) => OffsetDateTime::from_unix_timestamp_nanos(at.as_nanosecond())
            .map_err(|e| format!("`renewTime` is out of range: {e}"))?,
        None => OffsetDateTime::UNIX_EPOCH,
    };
    let seconds = spec.lease_duration_seconds.unwrap_or(0).max(0);
    Ok(renewed + time::Duration::seconds(i64::from(seconds)))
}

fn micro_time(at: OffsetDateTime) -> Result<MicroTime, String> {
    Timestamp::from_nanosecond(at.unix_timestamp_nanos())
        .map(MicroTime)
        .map_err(|e| format!("the clock is out of range: {e}"))
}

/// The lease as `object` states it; an empty holder when it was released.
fn observed(object: &LeaseObject) -> Result<Lease, String> {
    let spec = object.spec.clone().unwrap_or_default();
    let transitions = spec.lease_transitions.unwrap_or(0);
    let term = u64::try_from(transitions)
        .map_err(|_| format!("`leaseTransitions` is negative ({transitions})"))?;
    Ok(Lease {
        holder: holder(&spec).unwrap_or_default().to_owned(),
        term,
        expires_at: expires_at(&spec)?,
    })
}

#[async_trait]
impl ClusterCoordinator for K8sLeaseCoordinator {
    fn node_id(&self) -> &str {
        &self.node_id
    }

    async fn acquire_or_refresh(&self) -> Result<Lease, BackendError> {
        let now = OffsetDateTime::now_utc();
        let Some(mut object) = self.read().await? else {
            return match self.create(now).await? {
                Some(created) => {
                    tracing::info!(lease = %self.target(), node_id = %self.node_id, "leader lease created and taken");
                    self.lease(&created)
                }
                None => self.reread().await,
            };
        };
        let current = object.spec.clone().unwrap_or_default();
        let spec = match next_step(&current, &self.node_id, self.lease_seconds, now)
            .map_err(|e| self.invalid(&e))?
        {
            Step::Leave => return self.lease(&object),
            Step::Write(spec) => spec,
        };
        let taking = holder(&current) != Some(self.node_id.as_str());
        object.spec = Some(spec);
        match self.replace(&object).await? {
            Some(written) => {
                if taking {
                    tracing::info!(lease = %self.target(), node_id = %self.node_id, previous = holder(&current).unwrap_or("nobody"), "leader lease taken");
                }
                self.lease(&written)
            }
            None => self.reread().await,
        }
    }

    async fn release(&self, term: u64) -> Result<(), BackendError> {
        for _ in 0..RELEASE_ATTEMPTS {
            let Some(mut object) = self.read().await? else {
                return Ok(());
            };
            let lease = self.lease(&object)?;
            if lease.holder != self.node_id || lease.term != term {
                return Ok(());
            }
            let mut spec = object.spec.clone().unwrap_or_default();
            spec.holder_identity = Some(String::new());
            spec.renew_time =
                Some(micro_time(OffsetDateTime::now_utc()).map_err(|e| self.invalid(&e))?);
            object.spec = Some(spec);
            if self.replace(&object).await?.is_some() {
                tracing::info!(lease = %self.target(), term, "leader lease released");
                return Ok(());
            }
        }
        Err(BackendError::Refused {
            backend: KIND,
            detail: format!(
                "releasing {}: it changed under rota {RELEASE_ATTEMPTS} times in a row; it lapses on its own",
                self.target()
            ),
        })
    }

    async fn current(&self) -> Result<Option<Lease>, BackendError> {
        self.read().await?.map(|o| self.lease(&o)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: i32 = 15;

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + seconds).unwrap()
    }

    fn spec(holder: Option<&str>, renewed: i64, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            renew_time: Some(micro_time(at(renewed)).unwrap()),
            acquire_time: Some(micro_time(at(-100)).unwrap()),
            lease_duration_seconds: Some(LEASE),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// `(why, lease as read, now) → (holder written, term written)`, or `None` to leave it.
    #[test]
    fn who_may_write_the_lease_and_with_which_term() {
        let rows = [
            (
                "another node's live lease is left alone",
                spec(Some("b"), 0, 4),
                14,
                None,
            ),
            (
                "another node's lease lapses at renewTime + duration",
                spec(Some("b"), 0, 4),
                15,
                Some(("a", 5)),
            ),
            (
                "our own lease is refreshed under the same term",
                spec(Some("a"), 0, 4),
                5,
                Some(("a", 4)),
            ),
            (
                "our own lapsed lease is still ours: no other node took it",
                spec(Some("a"), 0, 4),
                99,
                Some(("a", 4)),
            ),
            (
                "a released lease (empty holder) is free at once",
                spec(Some(""), 0, 4),
                1,
                Some(("a", 5)),
            ),
            (
                "a lease with no holder field is free",
                spec(None, 0, 4),
                1,
                Some(("a", 5)),
            ),
            (
                "a lease never renewed has lapsed",
                LeaseSpec {
                    holder_identity: Some("b".into()),
                    ..LeaseSpec::default()
                },
                0,
                Some(("a", 1)),
            ),
        ];
        for (why, current, now, want) in rows {
            let step = next_step(&current, "a", LEASE, at(now)).unwrap();
            let got = match &step {
                Step::Leave => None,
                Step::Write(s) => Some((
                    s.holder_identity.as_deref().unwrap(),
                    s.lease_transitions.unwrap(),
                )),
            };
            assert_eq!(got, want, "{why}");
            if let Step::Write(written) = step {
                assert_eq!(
                    written.renew_time,
                    Some(micro_time(at(now)).unwrap()),
                    "{why}"
                );
                assert_eq!(written.lease_duration_seconds, Some(LEASE), "{why}");
                let acquired = if holder(&current) == Some("a") {
                    at(-100)
                } else {
                    at(now)
                };
                assert_eq!(
                    written.acquire_time,
                    Some(micro_time(acquired).unwrap()),
                    "{why}"
                );
            }
        }
    }

    #[test]
    fn the_first_holder_has_term_one_and_a_full_counter_is_refused() {
        let first = taken(None, "a", LEASE, at(0)).unwrap();
        assert_eq!(first.lease_transitions, Some(1));
        assert_eq!(first.holder_identity.as_deref(), Some("a"));
        let full = spec(Some("b"), -99, i32::MAX);
        let err = next_step(&full, "a", LEASE, at(0)).unwrap_err();
        assert!(err.contains("delete the Lease"), "{err}");
    }

    #[test]
    fn the_observed_lease_names_its_holder_term_and_lapse() {
        let object = |spec| LeaseObject {
            metadata: ObjectMeta::default(),
            spec: Some(spec),
        };
        let lease = observed(&object(spec(Some("b"), 0, 3))).unwrap();
        assert_eq!(
            lease,
            Lease {
                holder: "b".into(),
                term: 3,
                expires_at: at(i64::from(LEASE)),
            }
        );
        assert_eq!(observed(&object(spec(Some(""), 0, 3))).unwrap().holder, "");
        let err = observed(&object(spec(Some("b"), 0, -1))).unwrap_err();
        assert!(err.contains("negative"), "{err}");
    }
}
