//! Time is injected so backoff, renewal windows and sweeps can be tested by moving a clock
//! instead of sleeping: the reconciler both reads the time and waits for a time through it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::Notify;

/// The future [`Clock::sleep_until`] returns.
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// The longest the system clock sleeps before looking at the wall clock again, so a host that
/// was suspended or had its clock stepped wakes at most this late.
const MAX_NAP: Duration = Duration::from_secs(60);

pub use rota_api::wire::rfc3339;

/// Tells the current time, and waits for a time to come.
pub trait Clock: Send + Sync {
    /// Now, in UTC.
    fn now(&self) -> OffsetDateTime;

    /// Resolves once [`Clock::now`] has reached `at` (never before it).
    fn sleep_until(&self, at: OffsetDateTime) -> Sleep<'_>;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn sleep_until(&self, at: OffsetDateTime) -> Sleep<'_> {
        Box::pin(async move {
            loop {
                let left = at - self.now();
                if !left.is_positive() {
                    return;
                }
                let nap = Duration::try_from(left).map_or(MAX_NAP, |left| left.min(MAX_NAP));
                tokio::time::sleep(nap).await;
            }
        })
    }
}

/// A clock tests set and advance by hand; sleepers wake when it is advanced past their time.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<OffsetDateTime>,
    advanced: Notify,
}

impl ManualClock {
    /// A clock stopped at `at`.
    #[must_use]
    pub fn new(at: OffsetDateTime) -> Self {
        Self {
            now: Mutex::new(at),
            advanced: Notify::new(),
        }
    }

    /// Moves the clock forward and wakes every sleeper whose time has come.
    pub fn advance(&self, by: time::Duration) {
        *self
            .now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) += by;
        self.advanced.notify_waiters();
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self
            .now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn sleep_until(&self, at: OffsetDateTime) -> Sleep<'_> {
        Box::pin(async move {
            loop {
                // Registered before the time is read, so an advance in between is not missed.
                let advanced = self.advanced.notified();
                tokio::pin!(advanced);
                advanced.as_mut().enable();
                if self.now() >= at {
                    return;
                }
                advanced.await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use time::macros::datetime;

    #[tokio::test]
    async fn a_manual_sleeper_wakes_only_once_the_clock_passes_its_time() {
        let clock = Arc::new(ManualClock::new(datetime!(2026-12-01 00:00 UTC)));
        let at = datetime!(2026-12-01 01:00 UTC);
        let sleeper = tokio::spawn({
            let clock = Arc::clone(&clock);
            async move { clock.sleep_until(at).await }
        });
        clock.advance(time::Duration::minutes(59));
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!sleeper.is_finished(), "woke a minute early");
        clock.advance(time::Duration::minutes(1));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("woke once the time came")
            .unwrap();
    }
}
