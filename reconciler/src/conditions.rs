//! Condition bookkeeping in the Kubernetes style: one entry per type, and
//! `last_transition_time` moves only when the status flips.

use time::OffsetDateTime;

use rota_api::status::{Condition, ConditionStatus, ConditionType, Reason};

/// The new value of one condition.
#[derive(Debug, Clone)]
pub(crate) struct Update {
    pub type_: ConditionType,
    pub status: ConditionStatus,
    pub reason: Reason,
    pub message: String,
}

impl Update {
    pub(crate) fn new(
        type_: ConditionType,
        status: ConditionStatus,
        reason: Reason,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// Applies `update` to `conditions`; returns whether anything changed.
pub(crate) fn apply(
    conditions: &mut Vec<Condition>,
    update: Update,
    generation: u64,
    now: OffsetDateTime,
) -> bool {
    if let Some(existing) = conditions.iter_mut().find(|c| c.type_ == update.type_) {
        let flipped = existing.status != update.status;
        let changed = flipped
            || existing.reason != update.reason
            || existing.message != update.message
            || existing.observed_generation != generation;
        if flipped {
            existing.last_transition_time = now;
        }
        existing.status = update.status;
        existing.reason = update.reason;
        existing.message = update.message;
        existing.observed_generation = generation;
        changed
    } else {
        conditions.push(Condition {
            type_: update.type_,
            status: update.status,
            reason: update.reason,
            message: update.message,
            last_transition_time: now,
            observed_generation: generation,
        });
        conditions.sort_by_key(|c| c.type_ as u8);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let t0 = datetime!(2026-11-28 10:00 UTC);
        let t1 = datetime!(2026-11-28 11:00 UTC);
        let t2 = datetime!(2026-11-28 12:00 UTC);
        let mut conds = Vec::new();
        let ready =
            |status, reason, msg: &str| Update::new(ConditionType::Ready, status, reason, msg);
        assert!(apply(
            &mut conds,
            ready(ConditionStatus::False, Reason::NotInstalled, "none"),
            1,
            t0
        ));
        assert!(apply(
            &mut conds,
            ready(ConditionStatus::False, Reason::Expired, "old"),
            1,
            t1
        ));
        assert_eq!(
            conds[0].last_transition_time, t0,
            "same status keeps the transition time"
        );
        assert_eq!(conds[0].reason, Reason::Expired);
        assert!(apply(
            &mut conds,
            ready(ConditionStatus::True, Reason::UpToDate, "ok"),
            1,
            t2
        ));
        assert_eq!(conds[0].last_transition_time, t2, "a flip moves it");
        assert!(!apply(
            &mut conds,
            ready(ConditionStatus::True, Reason::UpToDate, "ok"),
            1,
            t2
        ));
        assert!(
            apply(
                &mut conds,
                ready(ConditionStatus::True, Reason::UpToDate, "ok"),
                2,
                t2
            ),
            "new generation"
        );
    }
}
