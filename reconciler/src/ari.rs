//! ACME Renewal Information (RFC 9773): for CAs that publish renewal windows, rota asks for
//! each installed cert's window, picks a time inside it uniformly at random (§4.2) and keeps
//! that pick while the window stays the same, asking again when the CA's `Retry-After` says.
//! The chosen time then replaces the `renew_threshold_days` rule for that cert.

use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use rota_api::RenewalWindow;

use crate::desired::CertRuntime;
use crate::plan::Observation;
use crate::reconciler::{Reconciler, lock};

/// How many renewal-information requests run at once during a sweep.
const ARI_CONCURRENCY: usize = 8;
/// After a failed request, ask again this much later.
const RETRY_AFTER_ERROR: Duration = Duration::hours(1);

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
fn due(status: Option<&AriStatus>, observed: &Observation, now: OffsetDateTime) -> bool {
    let Observation::Installed(cert) = observed else {
        return false;
    };
    status.is_none_or(|s| s.serial != cert.serial || s.next_check_at <= now)
}

impl Reconciler {
    /// Fetches the renewal windows that are due for `certs` (only from CAs that offer them).
    pub(crate) async fn refresh_ari(&self, certs: &[(Arc<CertRuntime>, Observation)]) {
        let now = self.shared.clock.now();
        let due: Vec<(Arc<CertRuntime>, String)> = {
            let states = lock(&self.shared.states);
            certs
                .iter()
                .filter(|(cert, observed)| {
                    cert.ca.offers_renewal_info()
                        && due(
                            states.get(&cert.spec.id).and_then(|s| s.ari.as_ref()),
                            observed,
                            now,
                        )
                })
                .filter_map(|(cert, observed)| match observed {
                    Observation::Installed(c) => Some((Arc::clone(cert), c.serial.clone())),
                    _ => None,
                })
                .collect()
        };
        for chunk in due.chunks(ARI_CONCURRENCY) {
            let mut fetches = tokio::task::JoinSet::new();
            for (cert, serial) in chunk.iter().cloned() {
                fetches.spawn(async move {
                    let window = match cert.install.current_cert_pem(&cert.spec.id).await {
                        Ok(Some(pem)) => cert
                            .ca
                            .renewal_window(&pem)
                            .await
                            .map_err(|e| e.to_string()),
                        Ok(None) => Ok(None),
                        Err(e) => Err(e.to_string()),
                    };
                    (cert, serial, window)
                });
            }
            while let Some(joined) = fetches.join_next().await {
                match joined {
                    Ok((cert, serial, window)) => self.record_ari(&cert, serial, window),
                    Err(e) => tracing::error!(error = %e, "fetching renewal information panicked"),
                }
            }
        }
    }

    fn record_ari(
        &self,
        cert: &CertRuntime,
        serial: String,
        window: Result<Option<RenewalWindow>, String>,
    ) {
        let now = self.shared.clock.now();
        let mut states = lock(&self.shared.states);
        let state = states.entry(cert.spec.id.clone()).or_default();
        let previous = state.ari.as_ref().filter(|p| p.serial == serial);
        state.ari = Some(match window {
            Ok(Some(window)) => {
                let renew_at = pick_time(previous, &window, rand::random::<f64>());
                tracing::info!(cert_id = %cert.spec.id, start = %window.start, end = %window.end, %renew_at, "CA renewal window");
                AriStatus {
                    serial,
                    renew_at: Some(renew_at),
                    next_check_at: window.next_check_at,
                    window: Some(window),
                }
            }
            // The CA publishes no window for this cert: do not ask again until it changes.
            Ok(None) => AriStatus {
                serial,
                window: None,
                renew_at: None,
                next_check_at: OffsetDateTime::from_unix_timestamp(253_402_300_799).unwrap_or(now),
            },
            Err(error) => {
                tracing::warn!(cert_id = %cert.spec.id, %error, "cannot fetch the CA's renewal window; keeping the last one");
                let mut kept = previous.cloned().unwrap_or(AriStatus {
                    serial,
                    window: None,
                    renew_at: None,
                    next_check_at: now,
                });
                kept.next_check_at = now + RETRY_AFTER_ERROR;
                kept
            }
        });
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
    fn an_empty_or_inverted_window_picks_its_start() {
        let w = window(10, 5);
        assert_eq!(pick_time(None, &w, 0.7), w.start);
    }
}
