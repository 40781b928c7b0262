//! Alerts, the reconciler's side: after each renewal and each plan, the pure policy in
//! `alert_policy` says whether an alert goes out; this module keeps the episodes it decides
//! on (in memory and in the store) and sends in a tracked background task, every sink at once
//! and each under a deadline, so a slow or failing sink never holds up a renewal. Every
//! delivery, good or bad, is logged and recorded in the store, never with a secret.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use rota_api::status::StepEvent;
use rota_api::status::{ConditionStatus, ConditionType, Reason};
use rota_api::wire::{AlertDelivery, AlertTestResult};
use rota_api::{AlertBackend, AlertDetails, AlertEvent, AlertKind, CertId};
use rota_store::AlertEpisode;

use crate::alert_policy::{ExpiryFacts, FAILURE_KINDS, decide, expiry_warning_due, failure_kind};
use crate::clock::rfc3339;
use crate::desired::CertRuntime;
use crate::plan::{Observation, Plan};
use crate::reconciler::Reconciler;

/// How long one sink may take over one alert (a webhook's retries included).
const ALERT_TIMEOUT: Duration = Duration::from_secs(60);
/// How many of the last renewal's steps an alert carries.
const RECENT_STEPS: usize = 8;
/// The cert id test alerts carry: they are about no cert.
const TEST_CERT_ID: &str = "rota-alert-test";

/// Why `rota alert test` could not send.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AlertTestError {
    /// The config has no `alerts:` entries.
    #[error("no alert sink is configured: add an entry to `alerts:` in the config")]
    NoSinks,
    /// The sink asked for does not exist.
    #[error("there is no alert sink {asked}: `alerts:` has {configured} entries, numbered from 0")]
    NoSuchSink {
        /// The sink asked for.
        asked: usize,
        /// How many there are.
        configured: usize,
    },
}

/// A failed renewal, as its alert tells it.
pub(crate) struct FailedAttempt {
    /// Why it failed.
    pub reason: Reason,
    /// The error.
    pub error: String,
    /// The `Failing` condition's message: the error, the failure count and the next attempt.
    pub message: String,
    /// When the backoff lets the next attempt run.
    pub next_attempt_at: OffsetDateTime,
}

/// One configured sink: its position in `alerts:`, its name and its backend.
type Sink = (usize, String, Arc<dyn AlertBackend>);

impl Reconciler {
    /// After a renewal (`failed` is `None` for a success): opens, repeats or closes the
    /// failure episodes, and announces a recovery when a success closes one.
    pub(crate) async fn alert_after_renewal(
        &self,
        cert: &CertRuntime,
        failed: Option<&FailedAttempt>,
    ) {
        let now = self.shared.clock.now();
        let failing = failed.map(|f| failure_kind(f.reason));
        let (changes, send, recovered) = self.shared.states.update(&cert.spec.id, |state| {
            let was_failing = FAILURE_KINDS
                .iter()
                .any(|kind| state.alert_episodes.contains_key(kind));
            let mut changes = Vec::new();
            let mut send = None;
            for kind in FAILURE_KINDS {
                let open = state.alert_episodes.get(&kind).copied();
                let verdict = decide(failing == Some(kind), open, now);
                send = send.or(verdict.send.then_some(kind));
                changes.extend(keep(&mut state.alert_episodes, kind, verdict.episode));
            }
            (changes, send, was_failing && failing.is_none())
        });
        self.store_episodes(&cert.spec.id, changes).await;
        let mut details = self.details_of(cert);
        if let (Some(kind), Some(failed)) = (send, failed) {
            details.error = Some(failed.error.clone());
            details.next_attempt_at = Some(failed.next_attempt_at);
            self.send_alert(&cert.spec.id, kind, failed.message.clone(), details);
        } else if recovered {
            let message = format!("{} renewed after failing; all is well again", cert.spec.id);
            self.send_alert(&cert.spec.id, AlertKind::RenewalRecovered, message, details);
        }
    }

    /// After a plan: warns when the installed cert is close to its end, not Ready and its
    /// renewal failing (see `expiry_warning_due`), at most daily.
    pub(crate) async fn alert_on_plan(&self, cert: &CertRuntime, decision: &Plan) {
        let now = self.shared.clock.now();
        let days = self.desired().loaded.config.daemon.alert_before_days;
        let alert_before = time::Duration::days(i64::from(days));
        let ready = matches!(decision, Plan::UpToDate { .. });
        let (change, send) = self.shared.states.update(&cert.spec.id, |state| {
            let not_after = match &state.observed {
                Some(Observation::Installed(c)) => Some(c.not_after),
                _ => None,
            };
            let failing = state.condition(ConditionType::Failing).is_some_and(|c| {
                c.status == ConditionStatus::True && c.observed_generation == cert.generation
            });
            let facts = ExpiryFacts {
                not_after,
                ready,
                failing,
            };
            let due = expiry_warning_due(facts, alert_before, now);
            let kind = AlertKind::ExpiryWarning;
            let verdict = decide(due, state.alert_episodes.get(&kind).copied(), now);
            let change = keep(&mut state.alert_episodes, kind, verdict.episode);
            (change, verdict.send.then_some(not_after).flatten())
        });
        self.store_episodes(&cert.spec.id, change).await;
        let Some(not_after) = send else { return };
        let mut details = self.details_of(cert);
        if let Plan::BackingOff { until, .. } = decision {
            details.next_attempt_at = Some(*until);
        }
        let left = (not_after - now).whole_days();
        let when = if not_after <= now {
            format!("expired at {}", rfc3339(not_after))
        } else {
            format!("expires {} ({left} days left)", rfc3339(not_after))
        };
        let message = format!("{} {when} and renewing it keeps failing", cert.spec.id);
        self.send_alert(&cert.spec.id, AlertKind::ExpiryWarning, message, details);
    }

    /// Sends a test alert to every sink, or to sink `only`, and waits for each answer.
    pub async fn test_alerts(
        &self,
        only: Option<usize>,
    ) -> Result<Vec<AlertTestResult>, AlertTestError> {
        let sinks = self.sinks();
        if sinks.is_empty() {
            return Err(AlertTestError::NoSinks);
        }
        let sinks: Vec<Sink> = match only {
            None => sinks,
            Some(asked) => {
                let configured = sinks.len();
                let one = sinks.into_iter().find(|(i, _, _)| *i == asked);
                vec![one.ok_or(AlertTestError::NoSuchSink { asked, configured })?]
            }
        };
        let event = AlertEvent {
            cert_id: CertId::new(TEST_CERT_ID).expect("the test cert id is valid"),
            kind: AlertKind::Test,
            message: "a test alert from rotad (`rota alert test`): this sink works".to_owned(),
            timestamp: self.shared.clock.now(),
            details: AlertDetails::default(),
        };
        Ok(deliver(sinks, &event).await)
    }

    /// Every configured sink with its position and name.
    fn sinks(&self) -> Vec<Sink> {
        let desired = self.desired();
        let specs = &desired.loaded.config.alerts;
        specs
            .iter()
            .zip(&desired.alerts)
            .enumerate()
            .map(|(i, (spec, sink))| (i, spec.label(), Arc::clone(sink)))
            .collect()
    }

    /// What every alert about `cert` carries: its domains and the installed cert's end.
    fn details_of(&self, cert: &CertRuntime) -> AlertDetails {
        let not_after = self.shared.states.read(&cert.spec.id, |s| {
            match s.and_then(|s| s.observed.as_ref()) {
                Some(Observation::Installed(c)) => Some(c.not_after),
                _ => None,
            }
        });
        AlertDetails {
            domains: cert.spec.domains.clone(),
            not_after,
            ..AlertDetails::default()
        }
    }

    /// Sends an alert about `cert_id` to every sink in a tracked task, with the last steps
    /// of its latest renewal, and records each delivery.
    fn send_alert(
        &self,
        cert_id: &CertId,
        kind: AlertKind,
        message: String,
        details: AlertDetails,
    ) {
        let sinks = self.sinks();
        tracing::info!(cert_id = %cert_id, kind = kind.as_str(), sinks = sinks.len(), %message, "alert");
        if sinks.is_empty() {
            return;
        }
        let (this, cert_id) = (self.clone(), cert_id.clone());
        self.shared.tasks.spawn(async move {
            let event = AlertEvent {
                details: AlertDetails {
                    recent_steps: this.recent_steps(&cert_id).await,
                    ..details
                },
                cert_id,
                kind,
                message,
                timestamp: this.shared.clock.now(),
            };
            for result in deliver(sinks, &event).await {
                let delivery = AlertDelivery {
                    sink: result.sink,
                    sink_label: result.sink_label,
                    kind,
                    at: this.shared.clock.now(),
                    error: result.error,
                };
                let stored = this.shared.store.record_alert_delivery(&event.cert_id, &delivery);
                if let Err(e) = stored.await {
                    tracing::error!(cert_id = %event.cert_id, error = %e, "cannot record an alert delivery");
                }
            }
        });
    }

    /// The last [`RECENT_STEPS`] steps of the cert's latest renewal (none if unreadable).
    async fn recent_steps(&self, cert_id: &CertId) -> Vec<StepEvent> {
        let store = &self.shared.store;
        let latest = match store.renewals(cert_id, 1).await {
            Ok(mut rows) => rows.pop(),
            Err(e) => {
                tracing::warn!(cert_id = %cert_id, error = %e, "cannot read the last renewal for an alert");
                None
            }
        };
        let Some(latest) = latest else {
            return Vec::new();
        };
        match store.steps(latest.id).await {
            Ok(steps) => steps[steps.len().saturating_sub(RECENT_STEPS)..].to_vec(),
            Err(e) => {
                tracing::warn!(cert_id = %cert_id, error = %e, "cannot read renewal steps for an alert");
                Vec::new()
            }
        }
    }

    /// Closes every alert episode of a cert that left the config, so a cert later added
    /// under the same id starts with no history (no stale "recovered", no held-back warning).
    pub(crate) async fn forget_alerts(&self, cert_id: &CertId) {
        let open = self
            .shared
            .states
            .update(cert_id, |state| std::mem::take(&mut state.alert_episodes));
        self.store_episodes(cert_id, open.into_keys().map(|kind| (kind, None)))
            .await;
    }

    async fn store_episodes(
        &self,
        cert_id: &CertId,
        changes: impl IntoIterator<Item = (AlertKind, Option<AlertEpisode>)>,
    ) {
        for (kind, episode) in changes {
            let stored = self
                .shared
                .store
                .put_alert_episode(cert_id, kind, episode.as_ref());
            if let Err(e) = stored.await {
                tracing::error!(cert_id = %cert_id, error = %e, "cannot store an alert episode");
            }
        }
    }
}

/// Sets the episode of `kind` to `episode`; returns the change to store, if it is one.
fn keep(
    episodes: &mut HashMap<AlertKind, AlertEpisode>,
    kind: AlertKind,
    episode: Option<AlertEpisode>,
) -> Option<(AlertKind, Option<AlertEpisode>)> {
    let before = match episode {
        Some(e) => episodes.insert(kind, e),
        None => episodes.remove(&kind),
    };
    (before != episode).then_some((kind, episode))
}

/// Sends `event` to every sink at once, each under [`ALERT_TIMEOUT`]; returns each result in
/// sink order. A failure is logged here, with the sink's name and never a secret.
async fn deliver(sinks: Vec<Sink>, event: &AlertEvent) -> Vec<AlertTestResult> {
    let mut sends = tokio::task::JoinSet::new();
    let expected: Vec<(usize, String)> = sinks.iter().map(|(i, l, _)| (*i, l.clone())).collect();
    for (sink, sink_label, backend) in sinks {
        let event = event.clone();
        sends.spawn(async move {
            let error = match tokio::time::timeout(ALERT_TIMEOUT, backend.dispatch(&event)).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!(
                    "{}: gave up after {}s without an answer",
                    backend.kind(),
                    ALERT_TIMEOUT.as_secs()
                )),
            };
            match &error {
                None => tracing::info!(cert_id = %event.cert_id, sink = %sink_label, kind = event.kind.as_str(), "alert delivered"),
                Some(e) => tracing::error!(cert_id = %event.cert_id, sink = %sink_label, kind = event.kind.as_str(), error = %e, "alert not delivered"),
            }
            AlertTestResult {
                sink,
                sink_label,
                error,
            }
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = sends.join_next().await {
        match joined {
            Ok(result) => results.push(result),
            Err(e) => tracing::error!(error = %e, "an alert sink panicked"),
        }
    }
    for (sink, sink_label) in expected {
        if !results.iter().any(|r| r.sink == sink) {
            results.push(AlertTestResult {
                sink,
                sink_label,
                error: Some("the sink panicked (a bug in rota, please report it)".to_owned()),
            });
        }
    }
    results.sort_by_key(|r| r.sink);
    results
}
