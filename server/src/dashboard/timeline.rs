//! The overview's expiry timeline, drawn on the server as SVG: a time axis from now to the
//! farthest notAfter, a lane per cert with its renewal time onwards shaded and its notAfter
//! marked, and today at the left edge. Certs that renew and expire on the same days share a
//! lane (labelled with one id and how many more), which is as exact as a drawing of months
//! can be; lanes are two `<path>`s rather than an element per cert, so a thousand certs stay
//! a few tens of KB.

use std::fmt::Write as _;

use time::OffsetDateTime;

/// Drawing width, in SVG units.
const WIDTH: f64 = 800.0;
/// Left margin for the lane labels.
const LABEL: f64 = 120.0;
/// Height of the axis band at the bottom.
const AXIS: f64 = 24.0;
/// Lane labels are drawn only up to this many certs; past it lanes are too thin to read.
const LABELLED: usize = 40;

/// One cert on the timeline.
pub(crate) struct Lane {
    pub id: String,
    pub not_after: OffsetDateTime,
    pub renews_at: Option<OffsetDateTime>,
}

/// The timeline, ready to be placed in the page.
#[derive(Debug, Clone, Default)]
pub(crate) struct Timeline {
    /// The SVG markup; every text in it is escaped.
    pub svg: String,
    /// A one-line description for readers that do not see the drawing.
    pub caption: String,
}

/// Certs sharing a lane: the first one's id and times, and how many there are.
struct Band<'a> {
    first: &'a Lane,
    count: usize,
}

/// Groups `certs` by the days they renew and expire (when there are more than can be
/// labelled), soonest expiry first.
fn bands(certs: &[Lane]) -> Vec<Band<'_>> {
    let mut index: std::collections::HashMap<_, usize> = std::collections::HashMap::new();
    let mut bands: Vec<Band<'_>> = Vec::new();
    for cert in certs {
        // A handful of certs each get their own lane, named.
        let shared = certs.len() > LABELLED;
        let key = (
            cert.not_after.date(),
            cert.renews_at.map(OffsetDateTime::date),
            (!shared).then(|| cert.id.clone()),
        );
        if let Some(&i) = index.get(&key) {
            bands[i].count += 1;
        } else {
            index.insert(key, bands.len());
            bands.push(Band {
                first: cert,
                count: 1,
            });
        }
    }
    bands.sort_by_key(|b| (b.first.not_after, b.first.id.clone()));
    bands
}

/// Draws `certs` (those with nothing installed are left out by the caller) as seen at `now`.
pub(crate) fn draw(certs: &[Lane], now: OffsetDateTime) -> Timeline {
    let lanes = bands(certs);
    let Some(last) = lanes.iter().map(|l| l.first.not_after).max() else {
        return Timeline {
            svg: String::new(),
            caption: "No cert is installed yet, so there is nothing to put on the timeline."
                .to_owned(),
        };
    };
    let span = (last - now).as_seconds_f64().max(86_400.0);
    // Labelled lanes need room for their text; past that, lanes shrink to fit.
    let lane_h = if lanes.len() <= LABELLED {
        14.0
    } else {
        (320.0 / lanes.len() as f64).clamp(1.0, 16.0)
    };
    let height = lane_h * lanes.len() as f64 + AXIS;
    // Room on the right for the last date label, centred on its tick.
    let plot = WIDTH - LABEL - 40.0;
    let x = |t: OffsetDateTime| {
        let f = ((t - now).as_seconds_f64() / span).clamp(0.0, 1.0);
        LABEL + f * plot
    };
    let mut windows = String::new();
    let mut marks = String::new();
    let mut labels = String::new();
    for (i, band) in lanes.iter().enumerate() {
        let lane = band.first;
        let y = i as f64 * lane_h;
        let end = x(lane.not_after);
        let start = lane.renews_at.map_or(end, x).min(end);
        let _ = write!(
            windows,
            "M{start:.1} {y:.1}h{:.1}v{:.1}h{:.1}z",
            (end - start).max(0.5),
            lane_h * 0.8,
            -(end - start).max(0.5)
        );
        let _ = write!(marks, "M{end:.1} {y:.1}v{:.1}", lane_h * 0.8);
        if lanes.len() <= LABELLED {
            let _ = write!(
                labels,
                "<text x=\"{:.0}\" y=\"{:.1}\" class=\"lane\">{}{}</text>",
                LABEL - 6.0,
                y + lane_h * 0.7,
                escape(&lane.id),
                if band.count > 1 {
                    format!(" +{}", band.count - 1)
                } else {
                    String::new()
                }
            );
        }
    }
    let axis_y = height - AXIS;
    let mut ticks = String::new();
    for k in 0..=4 {
        let t = now + time::Duration::seconds_f64(span * f64::from(k) / 4.0);
        let tx = x(t);
        let _ = write!(
            ticks,
            "<path class=\"tick\" d=\"M{tx:.1} {axis_y:.1}v4\"/><text x=\"{tx:.1}\" y=\"{:.1}\" class=\"axis\">{}</text>",
            axis_y + 16.0,
            t.date()
        );
    }
    let svg = format!(
        "<svg viewBox=\"0 0 {WIDTH} {height:.0}\" width=\"100%\" role=\"img\" aria-labelledby=\"timeline-caption\" class=\"timeline\">\
         {labels}<path class=\"window\" d=\"{windows}\"/><path class=\"expiry\" d=\"{marks}\"/>\
         <path class=\"today\" d=\"M{LABEL} 0V{axis_y:.1}\"/>\
         <path class=\"tick\" d=\"M{LABEL} {axis_y:.1}H{:.1}\"/>{ticks}</svg>",
        LABEL + plot
    );
    let caption = format!(
        "{} in {} from today (the line at the left) to the last expiry on {}; each lane is shaded from its renewal time to its expiry, which is marked; certs renewing and expiring on the same days share a lane.",
        plural(certs.len(), "cert"),
        plural(lanes.len(), "lane"),
        last.date()
    );
    Timeline { svg, caption }
}

/// `1 lane`, `3 lanes`.
fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Escapes text for SVG/HTML content.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thousand_lanes_stay_small_and_none_draws_nothing() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let lanes: Vec<Lane> = (0..1000)
            .map(|i| Lane {
                id: format!("c{i}"),
                not_after: now + time::Duration::days(30 + i % 30),
                renews_at: Some(now + time::Duration::days(i % 30)),
            })
            .collect();
        let drawn = draw(&lanes, now);
        assert!(drawn.svg.len() < 60_000, "{} bytes", drawn.svg.len());
        assert!(drawn.svg.starts_with("<svg"));
        assert!(
            drawn.caption.contains("1000 certs in 30 lanes"),
            "{}",
            drawn.caption
        );
        assert!(
            drawn.svg.contains(">c0 +33<"),
            "a shared lane names one and counts the rest"
        );
        assert!(draw(&[], now).svg.is_empty());
        let few = draw(&lanes[..3], now);
        assert!(
            few.caption.starts_with("3 certs in 3 lanes"),
            "{}",
            few.caption
        );
        assert!(few.svg.contains(">c1<"), "a few certs are each named");
    }
}
