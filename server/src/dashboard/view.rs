//! What the dashboard's templates show, computed from the same views the JSON API answers
//! with (`views`), flattened into strings so the templates only lay them out.

use askama::Template;
use time::OffsetDateTime;

use rota_api::status::{
    Condition, ConditionStatus, ConditionType, RenewalRecord, RenewalStatus, StepEvent,
};
use rota_api::wire::cluster::{ClusterRole, ClusterView};
use rota_api::wire::{CertDetail, CertSummary, rfc3339};

use super::timeline::Timeline;

/// One cert's row on the overview.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub id: String,
    pub domains: String,
    pub ca: String,
    pub dcv: String,
    pub install: String,
    /// Whole days to notAfter (negative once expired); `None` when nothing is installed.
    pub days: Option<i64>,
    pub urgency: Urgency,
    /// The conditions worth a glance: Ready always, Issuing and Failing only when true.
    pub conditions: Vec<Glance>,
    pub last_result: String,
    pub last_at: String,
    /// The last renewal's id (0 when never renewed), so a watcher can tell a new one came.
    pub last_id: i64,
    pub ready: bool,
    pub issuing: bool,
    pub failing: bool,
}

/// How close a cert is to lapsing; shown as a colour and as a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Urgency {
    /// Past notAfter, or nothing installed.
    Expired,
    /// Under a week left.
    Urgent,
    /// Inside its renewal window.
    Due,
    /// Nothing to do yet.
    Fine,
}

impl Urgency {
    /// The word shown next to the days (readable without colour) and the CSS class.
    pub(crate) fn word(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::Urgent => "urgent",
            Self::Due => "due",
            Self::Fine => "ok",
        }
    }
}

/// A condition as a short badge: `Ready=True`, with its reason and message as a tooltip.
#[derive(Debug, Clone)]
pub(crate) struct ConditionBadge {
    pub type_: &'static str,
    pub status: &'static str,
    pub reason: &'static str,
    pub message: String,
    pub since: String,
    pub class: &'static str,
}

impl ConditionBadge {
    pub(crate) fn new(c: &Condition) -> Self {
        let type_ = match c.type_ {
            ConditionType::Ready => "Ready",
            ConditionType::Issuing => "Issuing",
            ConditionType::Failing => "Failing",
        };
        let status = match c.status {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        };
        let good = match c.type_ {
            ConditionType::Ready => c.status == ConditionStatus::True,
            _ => c.status != ConditionStatus::True,
        };
        Self {
            type_,
            status,
            reason: c.reason.as_str(),
            message: c.message.clone(),
            since: rfc3339(c.last_transition_time),
            class: if good { "good" } else { "bad" },
        }
    }
}

/// A condition on the overview, in a few words: `Ready`, `Not ready: Expired`, `Issuing`,
/// `Failing: CaRejected`. The message and transition time are on the cert's page.
#[derive(Debug, Clone)]
pub(crate) struct Glance {
    pub text: String,
    pub class: &'static str,
}

impl Glance {
    fn new(c: &Condition) -> Option<Self> {
        let reason = c.reason.as_str();
        let (text, class) = match (c.type_, c.status) {
            (ConditionType::Ready, ConditionStatus::True) => ("Ready".to_owned(), "good"),
            (ConditionType::Ready, ConditionStatus::False) => {
                (format!("Not ready: {reason}"), "bad")
            }
            (ConditionType::Ready, ConditionStatus::Unknown) => {
                (format!("Ready unknown: {reason}"), "bad")
            }
            (ConditionType::Issuing, ConditionStatus::True) => ("Issuing".to_owned(), "busy"),
            (ConditionType::Failing, ConditionStatus::True) => {
                (format!("Failing: {reason}"), "bad")
            }
            _ => return None,
        };
        Some(Self { text, class })
    }
}

impl Row {
    /// The row for `summary`, whose conditions are `conditions`, renewed at `renews_at`, last
    /// renewed as `last`, seen at `now`.
    pub(crate) fn new(
        summary: &CertSummary,
        conditions: &[Condition],
        renews_at: Option<OffsetDateTime>,
        last: Option<&RenewalRecord>,
        now: OffsetDateTime,
    ) -> Self {
        let days = summary.not_after.map(|t| (t - now).whole_days());
        let urgency = match summary.not_after {
            None => Urgency::Expired,
            Some(t) if t <= now => Urgency::Expired,
            Some(t) if t - now < time::Duration::days(7) => Urgency::Urgent,
            Some(_) if renews_at.is_some_and(|r| r <= now) => Urgency::Due,
            Some(_) => Urgency::Fine,
        };
        let is_true = |t| {
            conditions
                .iter()
                .any(|c| c.type_ == t && c.status == ConditionStatus::True)
        };
        Self {
            id: summary.id.to_string(),
            domains: summary
                .domains
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            ca: summary.ca_backend.clone(),
            dcv: summary
                .dcv_backend
                .clone()
                .unwrap_or_else(|| "-".to_owned()),
            install: summary.install_backend.clone(),
            days,
            urgency,
            conditions: conditions.iter().filter_map(Glance::new).collect(),
            last_result: last.map_or("never", |r| r.status.as_str()).to_owned(),
            last_id: last.map_or(0, |r| r.id),
            last_at: last
                .map(|r| rfc3339(r.finished_at.unwrap_or(r.started_at)))
                .unwrap_or_default(),
            ready: summary.ready == ConditionStatus::True,
            issuing: summary.issuing || is_true(ConditionType::Issuing),
            failing: is_true(ConditionType::Failing),
        }
    }

    /// The days column: a number and a word, so colour is never the only signal.
    pub(crate) fn days_text(&self) -> String {
        match self.days {
            None => "none installed".to_owned(),
            Some(d) if d < 0 => format!("{d} d ({})", self.urgency.word()),
            Some(d) => format!("{d} d ({})", self.urgency.word()),
        }
    }
}

/// The summary bar's counts.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counts {
    pub total: usize,
    pub ready: usize,
    pub issuing: usize,
    pub failing: usize,
}

impl Counts {
    pub(crate) fn of<'a>(rows: impl IntoIterator<Item = &'a Row>) -> Self {
        rows.into_iter().fold(Self::default(), |mut c, r| {
            c.total += 1;
            c.ready += usize::from(r.ready);
            c.issuing += usize::from(r.issuing);
            c.failing += usize::from(r.failing);
            c
        })
    }
}

/// Who is looking: a logged-in session shows the actions with its CSRF token.
#[derive(Debug, Clone, Default)]
pub(crate) struct Viewer {
    /// The session's CSRF token, when logged in.
    pub csrf: Option<String>,
    /// Whether TCP allows actions at all (a token is configured).
    pub actions_possible: bool,
}

/// The overview's sort and filter, from the query string.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub(crate) struct OverviewQuery {
    /// `id`, `days` (default) or `status`.
    #[serde(default)]
    pub sort: Option<String>,
    /// Substring of the id or a domain.
    #[serde(default)]
    pub q: Option<String>,
    /// `ready`, `issuing`, `failing` or all.
    #[serde(default)]
    pub show: Option<String>,
}

/// `GET /`.
#[derive(Template)]
#[template(path = "overview.html")]
pub(crate) struct OverviewPage<'a> {
    pub viewer: Viewer,
    pub counts: Counts,
    pub rows: Vec<&'a Row>,
    pub shown_of: usize,
    pub query: OverviewQuery,
    pub timeline: &'a Timeline,
    pub cluster: Option<&'a ClusterPanel>,
    pub watch: String,
}

impl OverviewPage<'_> {
    /// The filter box's current text.
    pub(crate) fn q(&self) -> &str {
        self.query.q.as_deref().unwrap_or("")
    }

    /// The selected status filter.
    pub(crate) fn show(&self) -> &str {
        self.query.show.as_deref().unwrap_or("all")
    }

    /// The selected sort key.
    pub(crate) fn sort(&self) -> &str {
        self.query.sort.as_deref().unwrap_or("days")
    }
}

/// One overview row alone, sent live.
#[derive(Template)]
#[template(path = "row.html")]
pub(crate) struct RowFragment<'a> {
    pub row: &'a Row,
    pub viewer: &'a Viewer,
}

/// The summary bar alone, sent live.
#[derive(Template)]
#[template(path = "summary.html")]
pub(crate) struct SummaryFragment {
    pub counts: Counts,
}

/// A renewal with its steps, for the detail page.
#[derive(Debug, Clone)]
pub(crate) struct RenewalView {
    pub id: i64,
    pub trigger: &'static str,
    pub status: &'static str,
    pub started: String,
    pub finished: String,
    pub error: String,
    pub steps: Vec<StepView>,
    pub running: bool,
}

impl RenewalView {
    pub(crate) fn new(r: &RenewalRecord, steps: &[StepEvent]) -> Self {
        Self {
            id: r.id,
            trigger: r.trigger.as_str(),
            status: r.status.as_str(),
            started: rfc3339(r.started_at),
            finished: r.finished_at.map(rfc3339).unwrap_or_default(),
            error: r.error.clone().unwrap_or_default(),
            steps: steps.iter().map(StepView::new).collect(),
            running: r.status == RenewalStatus::Running,
        }
    }
}

/// One step event.
#[derive(Debug, Clone)]
pub(crate) struct StepView {
    pub step: &'static str,
    pub status: &'static str,
    pub message: String,
    pub at: String,
}

impl StepView {
    fn new(e: &StepEvent) -> Self {
        Self {
            step: e.step.as_str(),
            status: e.status.as_str(),
            message: e.message.clone(),
            at: rfc3339(e.at),
        }
    }
}

/// The facts of the installed cert, as shown.
#[derive(Debug, Clone)]
pub(crate) struct Fact {
    pub name: &'static str,
    pub value: String,
}

/// An alert delivery, as shown.
#[derive(Debug, Clone)]
pub(crate) struct AlertView {
    pub sink: String,
    pub kind: String,
    pub at: String,
    pub result: String,
}

/// The parts of the detail page that change while one watches.
#[derive(Template)]
#[template(path = "detail_live.html")]
pub(crate) struct DetailLive {
    pub id: String,
    pub viewer: Viewer,
    pub row: Row,
    pub conditions: Vec<ConditionBadge>,
    pub facts: Vec<Fact>,
    pub renews_at: String,
    pub renewals: Vec<RenewalView>,
    pub alerts: Vec<AlertView>,
}

impl DetailLive {
    /// Everything the live part shows of `detail`, whose renewals' steps are `steps`.
    pub(crate) fn new(
        detail: &CertDetail,
        steps: &[Vec<StepEvent>],
        viewer: Viewer,
        now: OffsetDateTime,
    ) -> Self {
        let installed = detail.installed.as_ref();
        let facts = installed.map_or_else(Vec::new, |c| {
            vec![
                Fact {
                    name: "Issuer",
                    value: c.issuer.clone(),
                },
                Fact {
                    name: "Serial",
                    value: c.serial.clone(),
                },
                Fact {
                    name: "SANs",
                    value: c.sans.join(", "),
                },
                Fact {
                    name: "Not before",
                    value: rfc3339(c.not_before),
                },
                Fact {
                    name: "Not after",
                    value: rfc3339(c.not_after),
                },
                Fact {
                    name: "Key type",
                    value: c.key_type.clone(),
                },
                Fact {
                    name: "Key matches key_path",
                    value: if c.key_matches { "yes" } else { "no" }.to_owned(),
                },
                Fact {
                    name: "SHA-256 fingerprint",
                    value: c.sha256_fingerprint.clone(),
                },
            ]
        });
        Self {
            id: detail.summary.id.to_string(),
            viewer,
            row: Row::new(
                &detail.summary,
                &detail.conditions,
                detail.renews_at,
                detail.renewals.first(),
                now,
            ),
            conditions: detail.conditions.iter().map(ConditionBadge::new).collect(),
            facts,
            renews_at: detail.renews_at.map(rfc3339).unwrap_or_default(),
            renewals: detail
                .renewals
                .iter()
                .zip(
                    steps
                        .iter()
                        .map(Vec::as_slice)
                        .chain(std::iter::repeat(&[][..])),
                )
                .map(|(r, s)| RenewalView::new(r, s))
                .collect(),
            alerts: detail
                .alerts
                .iter()
                .map(|a| AlertView {
                    sink: a.sink_label.clone(),
                    kind: format!("{:?}", a.kind),
                    at: rfc3339(a.at),
                    result: a
                        .error
                        .clone()
                        .map_or_else(|| "delivered".to_owned(), |e| format!("failed: {e}")),
                })
                .collect(),
        }
    }
}

/// `GET /certs/{id}`.
#[derive(Template)]
#[template(path = "detail.html")]
pub(crate) struct DetailPage {
    pub viewer: Viewer,
    pub id: String,
    pub description: String,
    pub spec: String,
    pub live: DetailLive,
    pub watch: String,
}

/// `GET /login`.
#[derive(Template)]
#[template(path = "login.html")]
pub(crate) struct LoginPage {
    pub viewer: Viewer,
    pub error: String,
    pub watch: String,
}

/// The overview's cluster panel: who leads, under which term, and every node's last report.
pub(crate) struct ClusterPanel {
    /// This node's id.
    pub node_id: String,
    /// `leader` or `follower`.
    pub role: &'static str,
    /// The lease holder, or `none`.
    pub leader: String,
    /// The holder's term.
    pub term: u64,
    /// When the lease lapses unless refreshed, relative and absolute.
    pub lease_until: String,
    /// `surreal_lock` or `kubernetes_lease`.
    pub coordinator: String,
    /// Why the last lease attempt failed, while it keeps failing.
    pub error: Option<String>,
    /// Each node: id, role, last seen.
    pub nodes: Vec<(String, &'static str, String)>,
}

impl ClusterPanel {
    /// The panel for `view` as seen at `now`.
    pub(crate) fn new(view: &ClusterView, now: OffsetDateTime) -> Self {
        let lease = view.lease.as_ref().filter(|l| !l.holder.is_empty());
        let leads = |node: &str| lease.is_some_and(|l| l.holder == node);
        let role = |leading: bool| if leading { "leader" } else { "follower" };
        Self {
            node_id: view.node_id.clone(),
            role: role(view.role == ClusterRole::Leader),
            leader: lease.map_or_else(|| "none".to_owned(), |l| l.holder.clone()),
            term: lease.map_or(0, |l| l.term),
            lease_until: lease.map_or_else(
                || "-".to_owned(),
                |l| {
                    format!(
                        "{} ({})",
                        relative(l.expires_at, now),
                        rfc3339(l.expires_at)
                    )
                },
            ),
            coordinator: view.coordinator.clone(),
            error: view.last_error.clone(),
            nodes: view
                .nodes
                .iter()
                .map(|n| {
                    (
                        n.node_id.clone(),
                        role(leads(&n.node_id)),
                        relative(n.last_seen, now),
                    )
                })
                .collect(),
        }
    }
}

/// `in 14s` or `3m ago`: lease and heartbeat times are seconds to minutes away.
fn relative(t: OffsetDateTime, now: OffsetDateTime) -> String {
    let secs = (t - now).whole_seconds();
    let span = |s: i64| match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        _ => format!("{}h", s / 3600),
    };
    if secs >= 0 {
        format!("in {}", span(secs))
    } else {
        format!("{} ago", span(-secs))
    }
}
