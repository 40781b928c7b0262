//! Times as an operator reads them: UTC timestamps, ages ("3d ago"), days left, durations.
//! Every function takes `now` so output is reproducible in tests.

use time::macros::format_description;
use time::{Duration, OffsetDateTime, UtcOffset};

/// `2025-03-01T12:00:00Z`.
pub(crate) fn timestamp(t: OffsetDateTime) -> String {
    let utc = t.to_offset(UtcOffset::UTC);
    utc.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
    ))
    .unwrap_or_else(|_| utc.to_string())
}

/// `3d ago` for a past `t`, `in 5h` for a future one.
pub(crate) fn relative(t: OffsetDateTime, now: OffsetDateTime) -> String {
    if t <= now {
        format!("{} ago", coarse(now - t))
    } else {
        format!("in {}", coarse(t - now))
    }
}

/// `3d ago (2025-03-01T12:00:00Z)`.
pub(crate) fn relative_and_timestamp(t: OffsetDateTime, now: OffsetDateTime) -> String {
    format!("{} ({})", relative(t, now), timestamp(t))
}

/// Whole days until `not_after` (`61d`, `-3d` once expired), or `-` without a cert.
pub(crate) fn days_left(not_after: Option<OffsetDateTime>, now: OffsetDateTime) -> String {
    not_after.map_or_else(
        || "-".to_owned(),
        |t| format!("{}d", (t - now).whole_days()),
    )
}

/// The largest unit that fits: `45s`, `12m`, `5h`, `3d`.
pub(crate) fn coarse(d: Duration) -> String {
    let secs = d.whole_seconds().abs();
    match secs {
        0..120 => format!("{secs}s"),
        120..7_200 => format!("{}m", secs / 60),
        7_200..172_800 => format!("{}h", secs / 3_600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// A step or renewal duration: `4.2s`, `1m12s`, `2h05m`.
pub(crate) fn elapsed(d: Duration) -> String {
    let secs = d.whole_seconds().abs();
    if secs < 60 {
        format!("{:.1}s", d.as_seconds_f64().abs())
    } else if secs < 3_600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3_600, secs % 3_600 / 60)
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2025-03-01 12:00:00 UTC);

    #[test]
    fn timestamps_are_utc_to_the_second() {
        assert_eq!(
            timestamp(datetime!(2025-03-01 13:00:00.75 +1)),
            "2025-03-01T12:00:00Z"
        );
    }

    #[test]
    fn ages_use_the_largest_unit_that_fits() {
        let rows = [
            (Duration::seconds(-5), "in 5s", "future"),
            (Duration::ZERO, "0s ago", "now"),
            (Duration::seconds(119), "119s ago", "under two minutes"),
            (Duration::minutes(90), "90m ago", "under two hours"),
            (Duration::hours(47), "47h ago", "under two days"),
            (
                Duration::days(3) + Duration::hours(23),
                "3d ago",
                "days round down",
            ),
        ];
        for (ago, expected, why) in rows {
            assert_eq!(relative(NOW - ago, NOW), expected, "{why}");
        }
    }

    #[test]
    fn days_left_counts_whole_days_and_goes_negative() {
        let rows = [
            (
                Some(NOW + Duration::days(61) + Duration::hours(5)),
                "61d",
                "valid",
            ),
            (Some(NOW + Duration::hours(5)), "0d", "expires today"),
            (Some(NOW - Duration::days(3)), "-3d", "expired"),
            (None, "-", "nothing installed"),
        ];
        for (not_after, expected, why) in rows {
            assert_eq!(days_left(not_after, NOW), expected, "{why}");
        }
    }

    #[test]
    fn durations_keep_two_units() {
        let rows = [
            (Duration::milliseconds(4_200), "4.2s"),
            (Duration::seconds(72), "1m12s"),
            (Duration::minutes(125), "2h05m"),
        ];
        for (d, expected) in rows {
            assert_eq!(elapsed(d), expected);
        }
    }
}
