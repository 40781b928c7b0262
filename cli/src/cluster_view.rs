//! `rota cluster`: the nodes of a federation, who leads under which term, and until when
//! the lease holds.

use std::fmt::Write as _;

use rota_api::wire::cluster::{ClusterRole, ClusterView};
use time::OffsetDateTime;

use crate::human_time::{relative, relative_and_timestamp};
use crate::table;

/// What `rota cluster` prints for this node's answer (`None`: federation is off).
pub(crate) fn cluster_text(view: Option<&ClusterView>, now: OffsetDateTime) -> String {
    let Some(view) = view else {
        return "This rotad runs alone: federation is off (no `cluster:` block with \
                `enabled: true`).\n"
            .to_owned();
    };
    let leader = view.lease.as_ref().filter(|l| !l.holder.is_empty());
    let mut out = match leader {
        Some(lease) => format!(
            "Leader:      {} (term {}), lease until {}\n",
            lease.holder,
            lease.term,
            relative_and_timestamp(lease.expires_at, now)
        ),
        None => "Leader:      none right now\n".to_owned(),
    };
    let role = match view.role {
        ClusterRole::Leader => "leader",
        ClusterRole::Follower => "follower",
    };
    let _ = write!(
        out,
        "This node:   {} ({role})\nCoordinator: {}, {}s lease\n",
        view.node_id, view.coordinator, view.lease_seconds
    );
    if let Some(error) = &view.last_error {
        let _ = writeln!(out, "Last error:  {error}");
    }
    if !view.nodes.is_empty() {
        let rows: Vec<Vec<String>> = view
            .nodes
            .iter()
            .map(|node| {
                let leads = leader.is_some_and(|l| l.holder == node.node_id);
                vec![
                    node.node_id.clone(),
                    if leads { "leader" } else { "follower" }.to_owned(),
                    relative(node.last_seen, now),
                    node.version.clone(),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&table::render(
            "",
            &["NODE", "ROLE", "LAST SEEN", "VERSION"],
            &rows,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use rota_api::wire::cluster::{LeaseView, NodeView};
    use time::macros::datetime;

    use super::*;

    #[test]
    fn the_leader_its_lease_and_every_node_are_shown() {
        let now = datetime!(2026-12-01 12:00 UTC);
        let node = |id: &str, secs, leading| NodeView {
            node_id: id.to_owned(),
            last_seen: now - time::Duration::seconds(secs),
            version: "0.6.0".to_owned(),
            leading,
        };
        let view = ClusterView {
            node_id: "host-b".to_owned(),
            coordinator: "surreal_lock".to_owned(),
            role: ClusterRole::Follower,
            lease: Some(LeaseView {
                holder: "host-a".to_owned(),
                term: 4,
                expires_at: now + time::Duration::seconds(14),
            }),
            lease_seconds: 60,
            nodes: vec![node("host-a", 3, true), node("host-b", 20, false)],
            last_error: None,
        };
        assert_eq!(
            cluster_text(Some(&view), now),
            "Leader:      host-a (term 4), lease until in 14s (2026-12-01T12:00:14Z)\n\
             This node:   host-b (follower)\n\
             Coordinator: surreal_lock, 60s lease\n\
             \n\
             NODE     ROLE       LAST SEEN   VERSION\n\
             host-a   leader     3s ago      0.6.0\n\
             host-b   follower   20s ago     0.6.0\n"
        );
        assert!(cluster_text(None, now).contains("federation is off"));
    }
}
