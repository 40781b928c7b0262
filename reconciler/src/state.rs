//! What rotad knows about each cert beyond its spec — conditions, backoff, the last
//! observation, the CA's renewal window, revoked serials — in one table with narrow doors:
//! a snapshot for readers, one closure per change for writers.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use rota_api::status::{BackoffState, Condition, ConditionStatus, ConditionType, Reason};
use rota_api::{AlertKind, CertId};
use rota_store::AlertEpisode;

use crate::ari::AriStatus;
use crate::locks::lock;
use crate::plan::Observation;

/// What rotad knows about one cert beyond its spec.
#[derive(Debug, Clone, Default)]
pub struct CertState {
    /// Its conditions.
    pub conditions: Vec<Condition>,
    /// Its failure backoff.
    pub backoff: Option<BackoffState>,
    /// What the last observation found.
    pub observed: Option<Observation>,
    /// The CA's renewal window for the installed cert, when the CA publishes one.
    pub ari: Option<AriStatus>,
    /// Serials of this cert revoked through rota: one of them installed means "replace it".
    pub revoked: BTreeSet<String>,
    /// The open alert episodes (a failure, an expiry warning) and when each was last sent.
    pub alert_episodes: HashMap<AlertKind, AlertEpisode>,
}

impl CertState {
    /// The condition of `type_`, if it was ever set.
    #[must_use]
    pub fn condition(&self, type_: ConditionType) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Whether the last attempt on `generation` issued a cert and then failed to install it.
    pub(crate) fn install_failed(&self, generation: u64) -> bool {
        self.condition(ConditionType::Failing).is_some_and(|c| {
            c.status == ConditionStatus::True
                && c.reason == Reason::InstallFailed
                && c.observed_generation == generation
        })
    }
}

/// Every cert's [`CertState`].
#[derive(Debug, Default)]
pub(crate) struct StateTable(Mutex<HashMap<CertId, CertState>>);

impl StateTable {
    /// A copy of one cert's state (empty for a cert never seen).
    pub(crate) fn snapshot(&self, id: &CertId) -> CertState {
        lock(&self.0).get(id).cloned().unwrap_or_default()
    }

    /// Reads one cert's state without copying it.
    pub(crate) fn read<R>(&self, id: &CertId, f: impl FnOnce(Option<&CertState>) -> R) -> R {
        f(lock(&self.0).get(id))
    }

    /// Changes one cert's state.
    pub(crate) fn update<R>(&self, id: &CertId, f: impl FnOnce(&mut CertState) -> R) -> R {
        f(lock(&self.0).entry(id.clone()).or_default())
    }
}
