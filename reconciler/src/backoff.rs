//! Per-cert failure backoff: exponential with jitter, bounded, never shorter than what the
//! peer asked for with `Retry-After`. The state is stored so a restart does not hammer a
//! failing CA, cleared on success and ignored once the spec changes.

use std::time::Duration;

use time::OffsetDateTime;

use rota_api::status::BackoffState;

/// The first retry waits this long.
pub const BASE_DELAY: Duration = Duration::from_secs(10 * 60);
/// No retry waits longer than this.
pub const MAX_DELAY: Duration = Duration::from_secs(24 * 60 * 60);

/// The backoff after one more failure. `jitter` is a sample from `[0, 1)`; the delay is
/// spread over ±20 % of its nominal value so certs that failed together do not retry together.
#[must_use]
pub fn after_failure(
    previous: Option<&BackoffState>,
    generation: u64,
    retry_after: Option<Duration>,
    now: OffsetDateTime,
    jitter: f64,
) -> BackoffState {
    let failures = previous
        .filter(|b| b.generation == generation)
        .map_or(1, |b| b.failures.saturating_add(1));
    let nominal = BASE_DELAY
        .saturating_mul(2_u32.saturating_pow(failures.saturating_sub(1).min(16)))
        .min(MAX_DELAY);
    let spread = nominal.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0));
    let delay = spread.min(MAX_DELAY).max(retry_after.unwrap_or_default());
    BackoffState {
        failures,
        // `retry_after` comes from a peer: saturate rather than overflow the calendar.
        next_attempt_at: now.saturating_add(delay.try_into().unwrap_or(time::Duration::MAX)),
        generation,
    }
}

/// Whether `backoff` still holds back automatic attempts on `generation` at `now`.
#[must_use]
pub fn holds(backoff: Option<&BackoffState>, generation: u64, now: OffsetDateTime) -> bool {
    backoff.is_some_and(|b| b.generation == generation && now < b.next_attempt_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-28 12:00 UTC);

    fn delay_of(b: &BackoffState) -> Duration {
        (b.next_attempt_at - NOW).unsigned_abs()
    }

    #[test]
    fn doubles_from_base_to_cap() {
        let mut state: Option<BackoffState> = None;
        let mut delays = Vec::new();
        for _ in 0..12 {
            let next = after_failure(state.as_ref(), 7, None, NOW, 0.5);
            delays.push(delay_of(&next));
            state = Some(next);
        }
        assert_eq!(delays[0], BASE_DELAY, "first failure waits the base delay");
        assert_eq!(delays[1], BASE_DELAY * 2, "then doubles");
        assert_eq!(delays[11], MAX_DELAY, "and stops at the cap");
        assert!(
            delays.windows(2).all(|w| w[0] <= w[1]),
            "never shrinks: {delays:?}"
        );
    }

    #[test]
    fn jitter_spreads_twenty_percent() {
        let low = after_failure(None, 1, None, NOW, 0.0);
        let high = after_failure(None, 1, None, NOW, 0.999_999);
        assert_eq!(delay_of(&low), BASE_DELAY.mul_f64(0.8));
        assert!(delay_of(&high) > BASE_DELAY.mul_f64(1.19));
    }

    #[test]
    fn retry_after_is_a_floor() {
        let b = after_failure(None, 1, Some(Duration::from_secs(3 * 3600)), NOW, 0.5);
        assert_eq!(delay_of(&b), Duration::from_secs(3 * 3600));
    }

    #[test]
    fn an_absurd_retry_after_saturates_instead_of_panicking() {
        for (asked, why) in [
            (
                Duration::from_secs(999_999_999_999),
                "31,000 years past the year 9999",
            ),
            (Duration::MAX, "the largest Duration there is"),
        ] {
            let b = after_failure(None, 1, Some(asked), NOW, 0.5);
            assert!(
                b.next_attempt_at > NOW + Duration::from_secs(365 * 86_400),
                "{why}"
            );
        }
    }

    #[test]
    fn new_generation_starts_over() {
        let old = after_failure(None, 1, None, NOW, 0.5);
        let old = after_failure(Some(&old), 1, None, NOW, 0.5);
        assert_eq!(old.failures, 2);
        let fresh = after_failure(Some(&old), 2, None, NOW, 0.5);
        assert_eq!(fresh.failures, 1, "a spec change resets the count");
        assert!(
            !holds(Some(&old), 2, NOW),
            "old backoff does not hold a new spec"
        );
        assert!(holds(Some(&old), 1, NOW));
        assert!(!holds(Some(&old), 1, old.next_attempt_at));
    }
}
