//! Start-up: restore what the store remembers, then observe every installed cert before the
//! API answers, and act on each at once or at its time. A cert without a valid cert for its
//! spec (never issued, expired, wrong names or key, revoked), or whose last renewal a crash
//! interrupted, is renewed at once; one merely due is spread over the next minutes so a
//! restart is no storm on the CA; the others are scheduled for their renewal time. Work that
//! was queued when the process died is rebuilt this way, from the store and the observation.

use std::collections::HashSet;
use std::sync::Arc;

use time::Duration;

use rota_api::CertId;
use rota_api::status::Reason;
use rota_store::StoreError;

use crate::desired::CertRuntime;
use crate::plan::{Plan, lacks_valid_cert};
use crate::reconciler::Reconciler;

/// Certs merely due at start are renewed at a random time within this long.
const STARTUP_SPREAD: Duration = Duration::minutes(10);

impl Reconciler {
    /// Loads conditions, backoffs, revoked serials and open alert episodes from the store.
    pub(crate) async fn restore_state(&self) -> Result<(), StoreError> {
        let store = &self.shared.store;
        let (conditions, backoffs, revoked, episodes) = (
            store.all_conditions().await?,
            store.backoffs().await?,
            store.revoked_serials().await?,
            store.alert_episodes().await?,
        );
        let states = &self.shared.states;
        for (id, c) in conditions {
            states.update(&id, |s| s.conditions = c);
        }
        for (id, b) in backoffs {
            states.update(&id, |s| s.backoff = Some(b));
        }
        for (id, serials) in revoked {
            states.update(&id, |s| s.revoked = serials);
        }
        for (id, open) in episodes {
            states.update(&id, |s| s.alert_episodes = open);
        }
        Ok(())
    }

    /// Observes every cert, records `Ready`, and acts on each (see the module doc).
    pub(crate) async fn observe_at_start(&self, interrupted: &HashSet<CertId>) {
        let desired = self.desired();
        let observations = self.shared.observer.observe_many(&desired.certs).await;
        let now = self.shared.clock.now();
        let (mut at_once, mut spread) = (0_usize, 0_usize);
        for (cert, observed) in desired.certs.iter().zip(observations) {
            let fetching = self.refresh_ari(cert, &observed);
            let decision = self.plan_for(cert, &observed, now);
            self.record_plan(cert, observed, &decision).await;
            match start_action(&decision, interrupted.contains(&cert.spec.id)) {
                StartAction::Now(reason) => at_once += usize::from(self.start_now(cert, reason)),
                StartAction::Spread => {
                    let delay = STARTUP_SPREAD * rand::random::<f64>();
                    self.shared.schedule.defer(&cert.spec.id, now + delay);
                    spread += 1;
                }
                StartAction::AsPlanned => {
                    self.act(cert, &decision, fetching);
                }
            }
        }
        let _ = self.shared.observed_at.set(self.shared.clock.now());
        tracing::info!(
            certs = desired.certs.len(),
            at_once,
            spread,
            "observed every installed cert"
        );
    }

    fn start_now(&self, cert: &Arc<CertRuntime>, reason: Reason) -> bool {
        self.enqueue(cert, reason).is_ok()
    }
}

/// What start-up does about one cert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StartAction {
    /// Renew at once, for this reason.
    Now(Reason),
    /// Renew at a random time within [`STARTUP_SPREAD`] (sooner, if a renewal window
    /// fetched meanwhile says so; later, if it says later).
    Spread,
    /// What the plan says: look again at its time.
    AsPlanned,
}

fn start_action(decision: &Plan, interrupted: bool) -> StartAction {
    match decision {
        Plan::Renew(reason) if lacks_valid_cert(*reason) => StartAction::Now(*reason),
        Plan::Renew(_) | Plan::UpToDate { .. } if interrupted => {
            StartAction::Now(Reason::Interrupted)
        }
        Plan::Renew(_) => StartAction::Spread,
        Plan::UpToDate { .. } | Plan::BackingOff { .. } => StartAction::AsPlanned,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn what_start_up_does() {
        let at = datetime!(2026-12-01 12:00 UTC);
        let up_to_date = Plan::UpToDate { renew_at: at };
        let backing_off = Plan::BackingOff {
            reason: Reason::NotInstalled,
            until: at,
        };
        #[rustfmt::skip]
        let rows = [
            ("never issued: at once", Plan::Renew(Reason::NotInstalled), false,
                StartAction::Now(Reason::NotInstalled)),
            ("expired: at once", Plan::Renew(Reason::Expired), false, StartAction::Now(Reason::Expired)),
            ("revoked: at once", Plan::Renew(Reason::Revoked), false, StartAction::Now(Reason::Revoked)),
            ("merely due: spread", Plan::Renew(Reason::RenewalDue), false, StartAction::Spread),
            ("due by the CA's window: spread", Plan::Renew(Reason::AriWindow), false, StartAction::Spread),
            ("interrupted, although up to date: at once", up_to_date.clone(), true,
                StartAction::Now(Reason::Interrupted)),
            ("interrupted and due: at once", Plan::Renew(Reason::RenewalDue), true,
                StartAction::Now(Reason::Interrupted)),
            ("interrupted but never issued: its own reason", Plan::Renew(Reason::NotInstalled), true,
                StartAction::Now(Reason::NotInstalled)),
            ("interrupted but failing: the stored backoff holds", backing_off.clone(), true,
                StartAction::AsPlanned),
            ("up to date: at its time", up_to_date, false, StartAction::AsPlanned),
            ("backing off: at its end", backing_off, false, StartAction::AsPlanned),
        ];
        for (why, decision, interrupted, want) in rows {
            assert_eq!(start_action(&decision, interrupted), want, "{why}");
        }
    }
}
