//! Field path → position of every node written in `rota.yaml`, kept as a tree: each node
//! stores only the key or index that leads to it from its parent, so the index grows with
//! the number of nodes, not with nodes × depth as a map of full paths would.

use std::collections::HashMap;

use super::error::{Anchor, ConfigIssue, Problem};
use super::position::Position;

/// Where one node was written: its value and, for a mapping entry, its key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spot {
    pub value: Position,
    pub key: Option<Position>,
}

/// How a node is reached from its parent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Step {
    /// A mapping entry, by key.
    Key(Box<str>),
    /// A sequence item, by index.
    Item(usize),
}

/// Identifies a node of a [`PositionIndex`].
pub(crate) type NodeId = usize;

/// Field path → position of every node in the document.
#[derive(Debug, Clone, Default)]
pub(crate) struct PositionIndex {
    /// `spots[id]` is where node `id` was written; node 0 is the document root.
    spots: Vec<Spot>,
    children: HashMap<(NodeId, Step), NodeId>,
}

impl PositionIndex {
    /// Records the document root.
    pub(crate) fn set_root(&mut self, spot: Spot) -> NodeId {
        self.spots.clear();
        self.children.clear();
        self.spots.push(spot);
        0
    }

    /// Records a node reached from `parent` by `step`.
    pub(crate) fn add(&mut self, parent: NodeId, step: Step, spot: Spot) -> NodeId {
        let id = self.spots.len();
        self.spots.push(spot);
        self.children.insert((parent, step), id);
        id
    }

    /// Moves where node `id` starts to `at` if that is earlier (a block mapping's start event
    /// comes after its first key, which is where the operator sees it begin).
    pub(crate) fn start_no_later_than(&mut self, id: NodeId, at: Position) {
        if let Some(spot) = self.spots.get_mut(id) {
            spot.value = spot.value.min(at);
        }
    }

    /// Whether the node at `path` was written in the file (rather than defaulted).
    pub(crate) fn contains(&self, path: &str) -> bool {
        let (found, complete) = self.deepest(path);
        found.is_some() && complete
    }

    /// The position `anchor` names for `path`. A node that was not written (a missing field, a
    /// merged-in value) is placed at its nearest written ancestor, which is where the operator
    /// has to add or change something.
    pub(crate) fn position(&self, path: &str, anchor: Anchor) -> Position {
        if let Anchor::At(position) = anchor {
            return position;
        }
        match self.deepest(path) {
            (Some(spot), true) if anchor == Anchor::Key => spot.key.unwrap_or(spot.value),
            (Some(spot), _) => spot.value,
            (None, _) => Position::START,
        }
    }

    /// The deepest written node on `path`, and whether it is the node `path` names.
    fn deepest(&self, path: &str) -> (Option<&Spot>, bool) {
        let Some(mut id) = (!self.spots.is_empty()).then_some(0) else {
            return (None, false);
        };
        for step in steps(path) {
            match self.children.get(&(id, step)) {
                Some(&child) => id = child,
                None => return (self.spots.get(id), false),
            }
        }
        (self.spots.get(id), true)
    }

    /// Turns a stage's problem into a located issue of `file`.
    pub(crate) fn place(&self, file: &str, problem: Problem) -> ConfigIssue {
        let at = self.position(&problem.path, problem.anchor);
        ConfigIssue {
            file: file.to_owned(),
            line: at.line,
            column: at.column,
            path: problem.path,
            message: problem.message,
            hint: problem.hint,
        }
    }
}

/// The steps of a field path as `field_path` spells it: `certs[2].install` → `certs`, 2,
/// `install`.
fn steps(path: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(inner) = rest.strip_prefix('[') {
            let close = inner.find(']').unwrap_or(inner.len());
            match inner[..close].parse() {
                Ok(index) => steps.push(Step::Item(index)),
                Err(_) => steps.push(Step::Key(inner[..close].into())),
            }
            rest = inner.get(close + 1..).unwrap_or("");
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            steps.push(Step::Key(rest[..end].into()));
            rest = &rest[end..];
        }
        rest = rest.strip_prefix('.').unwrap_or(rest);
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_steps() {
        let key = |k: &str| Step::Key(k.into());
        for (path, expected, why) in [
            ("", vec![], "the root"),
            ("certs", vec![key("certs")], "one field"),
            (
                "certs[2].install",
                vec![key("certs"), Step::Item(2), key("install")],
                "item then field",
            ),
            (
                "a.b[0][1]",
                vec![key("a"), key("b"), Step::Item(0), Step::Item(1)],
                "nested lists",
            ),
        ] {
            assert_eq!(steps(path), expected, "{path}: {why}");
        }
    }
}
