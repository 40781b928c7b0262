//! What a CA keeps between `submit` and `await_issuance`. The second call only names the
//! domains, so entries are found by the order's set of domains (order and repetition do not
//! matter); one nobody collected, because its renewal failed in between, is dropped after a
//! while.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rota_api::DomainName;

/// Orders in flight, by their set of domains.
pub(crate) struct PendingOrders<T> {
    abandoned_after: Duration,
    slots: Mutex<HashMap<Vec<DomainName>, (Instant, T)>>,
}

impl<T> PendingOrders<T> {
    /// An empty set whose entries count as abandoned `abandoned_after` they were kept.
    pub(crate) fn new(abandoned_after: Duration) -> Self {
        Self {
            abandoned_after,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Keeps `order` for `domains`, in place of any earlier one.
    pub(crate) fn insert(&self, domains: &[DomainName], order: T) {
        self.insert_unless(domains, order, |_| false);
    }

    /// Keeps `order` for `domains` unless a live order for them `clashes` with it; says
    /// whether it was kept.
    pub(crate) fn insert_unless(
        &self,
        domains: &[DomainName],
        order: T,
        clashes: impl FnOnce(&T) -> bool,
    ) -> bool {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.retain(|_, (kept, _)| kept.elapsed() < self.abandoned_after);
        let key = key(domains);
        if slots.get(&key).is_some_and(|(_, live)| clashes(live)) {
            return false;
        }
        slots.insert(key, (Instant::now(), order));
        true
    }

    /// Removes and returns the order for `domains`.
    pub(crate) fn take(&self, domains: &[DomainName]) -> Option<T> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.remove(&key(domains)).map(|(_, order)| order)
    }
}

fn key(domains: &[DomainName]) -> Vec<DomainName> {
    let set: BTreeSet<_> = domains.iter().cloned().collect();
    set.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> DomainName {
        DomainName::new(s).unwrap()
    }

    #[test]
    fn orders_are_found_by_their_set_of_domains() {
        let pending = PendingOrders::new(Duration::from_secs(60));
        pending.insert(&[d("b.test"), d("a.test"), d("b.test")], 1);
        assert_eq!(pending.take(&[d("a.test"), d("b.test")]), Some(1));
        assert_eq!(
            pending.take(&[d("a.test"), d("b.test")]),
            None,
            "taken once"
        );
    }

    #[test]
    fn a_clash_with_a_live_order_is_refused_but_not_with_an_abandoned_one() {
        let live = PendingOrders::new(Duration::from_secs(60));
        live.insert(&[d("a.test")], "first key");
        assert!(!live.insert_unless(&[d("a.test")], "second key", |k| *k != "second key"));
        assert_eq!(live.take(&[d("a.test")]), Some("first key"));

        let abandoned = PendingOrders::new(Duration::ZERO);
        abandoned.insert(&[d("a.test")], "first key");
        assert!(abandoned.insert_unless(&[d("a.test")], "second key", |k| *k != "second key"));
    }
}
