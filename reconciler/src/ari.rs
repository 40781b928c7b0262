//! ACME Renewal Information (RFC 9773): for CAs that publish renewal windows, rota asks for
//! each installed cert's window, picks a time inside it uniformly at random (§4.2) and keeps
//! that pick while the window stays the same, asking again when the CA's `Retry-After` says.
//! The chosen time then replaces the `renew_threshold_days` rule for that cert.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use time::{Duration, OffsetDateTime};
use tokio::sync::Semaphore;

use rota_api::{CertId, RenewalWindow};

use crate::locks::lock;
use crate::plan::Observation;

/// How many renewal-information requests run at once.
const CONCURRENCY: usize = 8;

/// After a failed request, ask again this much later.
const RETRY_AFTER_ERROR: Duration = Duration::hours(1);

/// When a CA publishes no window for a cert: never ask again about that serial.
const NEVER: OffsetDateTime = time::macros::datetime!(9999-12-31 23:59:59 UTC);

/// The renewal-window fetches in flight, at most one per cert, a few at once.
#[derive(Debug)]
pub(crate) struct AriFetches {
    in_flight: Mutex<HashSet<CertId>>,
    permits: Arc<Semaphore>,
}

impl Default for AriFetches {
    fn default() -> Self {
        Self {
            in_flight: Mutex::default(),
            permits: Arc::new(Semaphore::new(CONCURRENCY)),
        }
    }
}

impl AriFetches {
    /// Notes a fetch for `id`; false if one is in flight already.
    pub(crate) fn begin(&self, id: &CertId) -> bool {
        lock(&self.in_flight).insert(id.clone())
    }

    /// Notes the end of `id`'s fetch.
    pub(crate) fn end(&self, id: &CertId) {
        lock(&self.in_flight).remove(id);
    }

    /// Whether a fetch for `id` is in flight.
    pub(crate) fn is_fetching(&self, id: &CertId) -> bool {
        lock(&self.in_flight).contains(id)
    }

    /// The permits that bound how many fetches run at once.
    pub(crate) fn permits(&self) -> Arc<Semaphore> {
        Arc::clone(&self.permits)
    }
}

/// What rota knows of one installed cert's renewal window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AriStatus {
    /// The serial of the cert this is about; a new cert means a new window.
    pub serial: String,
    /// The CA's window, or `None` when it publishes none for this cert.
    pub window: Option<RenewalWindow>,
    /// The time picked inside the window.
    pub renew_at: Option<OffsetDateTime>,
    /// When to ask the CA again.
    pub next_check_at: OffsetDateTime,
}

/// The renewal time for `window`: the previous pick while the window is unchanged, else a
/// uniformly random time inside it (`sample` in `[0, 1)`).
#[must_use]
pub fn pick_time(
    previous: Option<&AriStatus>,
    window: &RenewalWindow,
    sample: f64,
) -> OffsetDateTime {
    let same_window = previous
        .and_then(|p| p.window.as_ref())
        .is_some_and(|w| w.start == window.start && w.end == window.end);
    if let (true, Some(at)) = (same_window, previous.and_then(|p| p.renew_at)) {
        return at;
    }
    let span = (window.end - window.start).max(Duration::ZERO);
    window.start + span * sample.clamp(0.0, 1.0)
}

/// Whether the cert with this observation needs its window (re)fetched at `now`.
pub(crate) fn due(status: Option<&AriStatus>, observed: &Observation, now: OffsetDateTime) -> bool {
    let Observation::Installed(cert) = observed else {
        return false;
    };
    status.is_none_or(|s| s.serial != cert.serial || s.next_check_at <= now)
}

/// What rota knows of `serial`'s window after asking the CA: `window` is what it answered
/// (`Ok(None)`: it publishes none for this cert) or why asking failed, in which case the last
/// known window is kept and asked for again later. `sample` in `[0, 1)` picks the time.
pub(crate) fn after_fetch(
    previous: Option<&AriStatus>,
    serial: String,
    window: Result<Option<RenewalWindow>, String>,
    now: OffsetDateTime,
    sample: f64,
) -> AriStatus {
    let previous = previous.filter(|p| p.serial == serial);
    match window {
        Ok(Some(window)) => AriStatus {
            serial,
            renew_at: Some(pick_time(previous, &window, sample)),
            next_check_at: window.next_check_at,
            window: Some(window),
        },
        Ok(None) => AriStatus {
            serial,
            window: None,
            renew_at: None,
            next_check_at: NEVER,
        },
        Err(_) => {
            let mut kept = previous.cloned().unwrap_or(AriStatus {
                serial,
                window: None,
                renew_at: None,
                next_check_at: now,
            });
            kept.next_check_at = now.saturating_add(RETRY_AFTER_ERROR);
            kept
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn window(start_h: i64, end_h: i64) -> RenewalWindow {
        let base = datetime!(2026-12-01 00:00 UTC);
        RenewalWindow {
            start: base + Duration::hours(start_h),
            end: base + Duration::hours(end_h),
            explanation_url: None,
            next_check_at: base,
        }
    }

    #[test]
    fn picks_inside_the_window_and_keeps_the_pick() {
        let w = window(0, 48);
        assert_eq!(pick_time(None, &w, 0.0), w.start);
        assert_eq!(pick_time(None, &w, 0.5), w.start + Duration::hours(24));
        let first = AriStatus {
            serial: "01".into(),
            window: Some(w.clone()),
            renew_at: Some(w.start + Duration::hours(7)),
            next_check_at: w.start,
        };
        assert_eq!(
            pick_time(Some(&first), &w, 0.9),
            w.start + Duration::hours(7),
            "same window keeps its pick"
        );
        let moved = window(-24, -12);
        let repick = pick_time(Some(&first), &moved, 0.5);
        assert_eq!(
            repick,
            moved.start + Duration::hours(6),
            "a moved window (e.g. a revocation event) is picked anew"
        );
    }

    #[test]
    fn a_failed_fetch_keeps_the_last_window_and_asks_again_later() {
        let w = window(0, 48);
        let now = w.start;
        let fetched = after_fetch(None, "01".into(), Ok(Some(w.clone())), now, 0.5);
        assert_eq!(fetched.renew_at, Some(w.start + Duration::hours(24)));
        let failed = after_fetch(Some(&fetched), "01".into(), Err("down".into()), now, 0.9);
        assert_eq!(
            (failed.renew_at, failed.next_check_at),
            (fetched.renew_at, now + RETRY_AFTER_ERROR)
        );
        let new_serial = after_fetch(Some(&fetched), "02".into(), Err("down".into()), now, 0.9);
        assert_eq!(
            new_serial.renew_at, None,
            "a new cert does not inherit the old window"
        );
        let none = after_fetch(Some(&fetched), "01".into(), Ok(None), now, 0.9);
        assert_eq!((none.renew_at, none.next_check_at), (None, NEVER));
    }

    #[test]
    fn an_empty_or_inverted_window_picks_its_start() {
        let w = window(10, 5);
        assert_eq!(pick_time(None, &w, 0.7), w.start);
    }
}
