//! When to look at each cert again. Planning a cert yields a time (the end of its backoff, its
//! renewal time, the next renewal-information check); the reconciler's wake loop sleeps until
//! the earliest one and reconciles the certs that are due. One entry per cert: a new time
//! replaces the old one.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use time::OffsetDateTime;
use tokio::sync::Notify;

use rota_api::CertId;

use crate::locks::lock;

#[derive(Debug, Default)]
struct Wakeups {
    by_time: BTreeSet<(OffsetDateTime, CertId)>,
    /// Each cert's time, and whether it is a deferred renewal (see [`Schedule::defer`]).
    by_cert: HashMap<CertId, (OffsetDateTime, bool)>,
}

/// The next look at each cert, earliest first.
#[derive(Debug, Default)]
pub(crate) struct Schedule {
    wakeups: Mutex<Wakeups>,
    changed: Notify,
}

impl Schedule {
    /// Looks at `id` again at `at`, instead of whenever it was due before.
    pub(crate) fn set(&self, id: &CertId, at: OffsetDateTime) {
        self.insert(id, at, false);
    }

    /// Puts off the renewal of `id`, merely due, until `at` (a restart spreads these): until
    /// then a look at it does not renew it, unless it lacks a valid cert.
    pub(crate) fn defer(&self, id: &CertId, at: OffsetDateTime) {
        self.insert(id, at, true);
    }

    /// Until when the renewal of `id` is put off, if it is.
    pub(crate) fn deferred_until(&self, id: &CertId) -> Option<OffsetDateTime> {
        match lock(&self.wakeups).by_cert.get(id) {
            Some((at, true)) => Some(*at),
            _ => None,
        }
    }

    fn insert(&self, id: &CertId, at: OffsetDateTime, deferred: bool) {
        let mut w = lock(&self.wakeups);
        if let Some((old, _)) = w.by_cert.insert(id.clone(), (at, deferred)) {
            w.by_time.remove(&(old, id.clone()));
        }
        w.by_time.insert((at, id.clone()));
        let earliest = w.by_time.first().is_some_and(|(first, _)| *first == at);
        drop(w);
        if earliest {
            self.changed.notify_one();
        }
    }

    /// Forgets the next look at `id` (it is being renewed, or it left the config).
    pub(crate) fn clear(&self, id: &CertId) {
        let mut w = lock(&self.wakeups);
        if let Some((old, _)) = w.by_cert.remove(id) {
            w.by_time.remove(&(old, id.clone()));
        }
    }

    /// When `id` is looked at next, if it is scheduled.
    pub(crate) fn next_for(&self, id: &CertId) -> Option<OffsetDateTime> {
        lock(&self.wakeups).by_cert.get(id).map(|(at, _)| *at)
    }

    /// The earliest scheduled time.
    pub(crate) fn earliest(&self) -> Option<OffsetDateTime> {
        lock(&self.wakeups).by_time.first().map(|(at, _)| *at)
    }

    /// Removes and returns every cert due at `now`, earliest first.
    pub(crate) fn take_due(&self, now: OffsetDateTime) -> Vec<CertId> {
        let mut w = lock(&self.wakeups);
        let mut due = Vec::new();
        while let Some((at, _)) = w.by_time.first()
            && *at <= now
        {
            if let Some((_, id)) = w.by_time.pop_first() {
                w.by_cert.remove(&id);
                due.push(id);
            }
        }
        due
    }

    /// Resolves when a time earlier than all others was set since the last call.
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-12-01 12:00 UTC);

    fn id(s: &str) -> CertId {
        CertId::new(s).unwrap()
    }

    #[test]
    fn due_certs_come_out_earliest_first_and_once() {
        let schedule = Schedule::default();
        schedule.set(&id("late"), T0 + Duration::hours(2));
        schedule.set(&id("soon"), T0 + Duration::minutes(10));
        schedule.set(&id("later"), T0 + Duration::hours(1));
        assert_eq!(schedule.earliest(), Some(T0 + Duration::minutes(10)));
        assert!(schedule.take_due(T0).is_empty(), "nothing is due yet");
        assert_eq!(
            schedule.take_due(T0 + Duration::hours(1)),
            [id("soon"), id("later")]
        );
        assert!(
            schedule.take_due(T0 + Duration::hours(1)).is_empty(),
            "taken once"
        );
        assert_eq!(
            schedule.next_for(&id("late")),
            Some(T0 + Duration::hours(2))
        );
    }

    #[test]
    fn a_new_time_replaces_the_old_one_and_clear_forgets() {
        let schedule = Schedule::default();
        schedule.set(&id("web"), T0 + Duration::hours(5));
        schedule.set(&id("web"), T0 + Duration::minutes(1));
        assert_eq!(schedule.take_due(T0 + Duration::hours(6)), [id("web")]);
        schedule.defer(&id("web"), T0);
        assert_eq!(schedule.deferred_until(&id("web")), Some(T0));
        schedule.set(&id("web"), T0);
        assert_eq!(
            schedule.deferred_until(&id("web")),
            None,
            "a plain look replaces it"
        );
        schedule.clear(&id("web"));
        assert_eq!(schedule.earliest(), None);
        assert!(schedule.take_due(T0 + Duration::hours(6)).is_empty());
    }
}
