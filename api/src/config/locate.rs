//! Where every node of `rota.yaml` was written. serde loses positions (internally tagged enums
//! buffer their content, and serde_yaml reports no line for duplicate keys or empty files), so
//! the loader walks yaml-rust2's parser events once and keeps a field path → position index;
//! every later stage reports problems by field path and this index places them in the file.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, ScanError, TScalarStyle};

use super::error::{Anchor, ConfigIssue, Problem};
use super::field_path;

/// A 1-based line and column in the config text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Position {
    /// The first character of the file, for problems about the document as a whole.
    pub(crate) const START: Self = Self { line: 1, column: 1 };

    fn from_marker(marker: &Marker) -> Self {
        // yaml-rust2 counts lines from 1 but columns from 0.
        Self {
            line: marker.line().max(1),
            column: marker.col() + 1,
        }
    }
}

/// Where one node was written: its value and, for a mapping entry, its key.
#[derive(Debug, Clone, Copy)]
struct Spot {
    value: Position,
    key: Option<Position>,
}

/// Field path → position of every node in the document.
#[derive(Debug, Clone, Default)]
pub(crate) struct PositionIndex {
    spots: HashMap<String, Spot>,
}

impl PositionIndex {
    /// Whether the node at `path` was written in the file (rather than defaulted).
    pub(crate) fn contains(&self, path: &str) -> bool {
        self.spots.contains_key(path)
    }

    /// The position `anchor` names for `path`. A node that was not written (a missing field, a
    /// merged-in value) is placed at its nearest written ancestor, which is where the operator
    /// has to add or change something.
    pub(crate) fn position(&self, path: &str, anchor: Anchor) -> Position {
        if let Anchor::At(position) = anchor {
            return position;
        }
        let mut current = Some(path);
        while let Some(at) = current {
            if let Some(spot) = self.spots.get(at) {
                return match anchor {
                    Anchor::Key if at == path => spot.key.unwrap_or(spot.value),
                    _ => spot.value,
                };
            }
            current = field_path::parent(at);
        }
        Position::START
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

/// Indexes `text`, or returns why it is not a usable YAML document: syntax errors, duplicate
/// keys (reported at the second occurrence), several documents, or no content at all.
pub(crate) fn locate(text: &str) -> Result<PositionIndex, Vec<Problem>> {
    let mut indexer = Indexer::default();
    let mut parser = Parser::new_from_str(text);
    // `multi` so that a second document is seen and refused rather than silently dropped.
    if let Err(err) = parser.load(&mut indexer, true) {
        let path = indexer.current_path();
        indexer.problems.push(syntax_problem(text, path, &err));
    } else if indexer.documents == 0 || indexer.root_is_null {
        indexer.problems.push(
            Problem {
                anchor: Anchor::At(Position::START),
                ..Problem::value("", "the config is empty: it must at least list `certs:`")
            }
            .hint("start with `certs: []` and add a cert; see the configuration reference"),
        );
    }
    if indexer.problems.is_empty() {
        Ok(PositionIndex {
            spots: indexer.spots,
        })
    } else {
        Err(indexer.problems)
    }
}

fn syntax_problem(text: &str, path: String, err: &ScanError) -> Problem {
    let line = text
        .lines()
        .nth(err.marker().line().saturating_sub(1))
        .unwrap_or("");
    let hint = if err.info().contains("tab") {
        "indent with spaces: YAML does not allow tabs for indentation"
    } else if line.contains("${") {
        // `{` and `}` delimit flow mappings, so an unquoted `${VAR}` inside `[…]` or `{…}`
        // breaks the YAML before interpolation can run.
        "quote values that use `${VAR}` inside `[…]` or `{…}`, e.g. `['${HOST}']`"
    } else {
        "check the indentation and the quoting on this line and the line before it"
    };
    Problem {
        anchor: Anchor::At(Position::from_marker(err.marker())),
        ..Problem::value(path, format!("YAML syntax error: {}", err.info()))
    }
    .hint(hint)
}

/// One open collection while walking the events.
enum Frame {
    Map {
        path: String,
        /// The key just read, waiting for its value.
        pending: Option<(String, Position)>,
        /// Keys already seen in this mapping, to catch duplicates.
        seen: HashMap<String, Position>,
        keys_read: usize,
    },
    Seq {
        path: String,
        next: usize,
    },
}

#[derive(Default)]
struct Indexer {
    frames: Vec<Frame>,
    spots: HashMap<String, Spot>,
    problems: Vec<Problem>,
    documents: usize,
    root_is_null: bool,
}

/// What a node event says about the node.
struct NodeStart<'a> {
    at: Position,
    /// The text of a scalar key, which becomes the field name.
    text: Option<&'a str>,
    /// An empty plain scalar: YAML reports it at the next token, often on a later line.
    empty: bool,
}

impl Indexer {
    /// Counts documents; a second one is refused (serde_yaml would say so without a line).
    fn document_start(&mut self, at: Position) {
        self.documents += 1;
        if self.documents == 2 {
            self.problems.push(
                Problem {
                    anchor: Anchor::At(at),
                    ..Problem::value("", "the file holds more than one YAML document")
                }
                .hint("rota reads one document: remove the `---` line and merge the blocks"),
            );
        }
    }

    /// The path of the innermost node being read, for a syntax error inside it.
    fn current_path(&self) -> String {
        match self.frames.last() {
            Some(Frame::Map {
                path,
                pending: Some((key, _)),
                ..
            }) => field_path::child(path, key),
            Some(Frame::Map { path, .. } | Frame::Seq { path, .. }) => path.clone(),
            None => String::new(),
        }
    }

    /// Records a node; returns its path (keys get a path no field can have, so collections
    /// used as keys do not shadow real fields).
    fn node(&mut self, node: &NodeStart<'_>) -> String {
        let (path, key_at) = match self.frames.last_mut() {
            None => (String::new(), None),
            Some(Frame::Seq { path, next }) => {
                *next += 1;
                (field_path::item(path, *next - 1), None)
            }
            Some(Frame::Map {
                path,
                pending,
                seen,
                keys_read,
            }) => {
                if let Some((key, key_at)) = pending.take() {
                    (field_path::child(path, &key), Some(key_at))
                } else {
                    let name = node.text.unwrap_or("?").to_owned();
                    *keys_read += 1;
                    if *keys_read == 1 {
                        // A block mapping's start event comes one character after its first
                        // key; the key is where the operator sees the mapping begin.
                        if let Some(spot) = self.spots.get_mut(path.as_str()) {
                            spot.value = spot.value.min(node.at);
                        }
                    }
                    let key_path = field_path::child(path, &name);
                    if let Some(first) = seen.get(&name) {
                        self.problems
                            .push(duplicate_key(&key_path, &name, *first, node.at));
                    } else {
                        seen.insert(name.clone(), node.at);
                    }
                    *pending = Some((name, node.at));
                    return format!("{key_path}<key>");
                }
            }
        };
        let value = match key_at {
            Some(key_at) if node.empty => key_at,
            _ => node.at,
        };
        self.spots.insert(path.clone(), Spot { value, key: key_at });
        path
    }
}

fn duplicate_key(path: &str, name: &str, first: Position, again: Position) -> Problem {
    Problem {
        anchor: Anchor::At(again),
        ..Problem::key(
            path,
            format!(
                "duplicate key `{name}`: it is already set on line {}",
                first.line
            ),
        )
    }
    .hint("keep only one of the two: YAML would silently use one value and drop the other")
}

impl MarkedEventReceiver for Indexer {
    fn on_event(&mut self, event: Event, marker: Marker) {
        let at = Position::from_marker(&marker);
        if event == Event::DocumentStart {
            self.document_start(at);
            return;
        }
        if self.documents != 1 {
            return;
        }
        let collection = NodeStart {
            at,
            text: None,
            empty: false,
        };
        match event {
            Event::Scalar(text, style, ..) => {
                let null = style == TScalarStyle::Plain && is_null(&text);
                if self.frames.is_empty() {
                    self.root_is_null = null;
                }
                self.node(&NodeStart {
                    at,
                    text: Some(&text),
                    empty: null && text.is_empty(),
                });
            }
            Event::Alias(_) => {
                self.node(&collection);
            }
            Event::MappingStart(..) => {
                let path = self.node(&collection);
                self.frames.push(Frame::Map {
                    path,
                    pending: None,
                    seen: HashMap::new(),
                    keys_read: 0,
                });
            }
            Event::SequenceStart(..) => {
                let path = self.node(&collection);
                self.frames.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.frames.pop();
            }
            _ => {}
        }
    }
}

/// YAML 1.2's core schema nulls, as serde_yaml reads them.
fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(index: &PositionIndex, path: &str) -> (usize, usize) {
        let p = index.position(path, Anchor::Value);
        (p.line, p.column)
    }

    #[test]
    fn block_and_flow_nodes() {
        let text = "a: 1\nb:\n  c: [x, 'y']\n  d: {k: v}\ne:\n  - f: 1\n    g: 2\n  - h\n";
        let index = locate(text).unwrap();
        assert_eq!(at(&index, ""), (1, 1));
        assert_eq!(at(&index, "a"), (1, 4));
        assert_eq!(
            at(&index, "b"),
            (3, 3),
            "a block mapping starts at its first key"
        );
        assert_eq!(at(&index, "b.c[1]"), (3, 10));
        assert_eq!(
            at(&index, "b.d"),
            (4, 6),
            "a flow mapping starts at its brace"
        );
        assert_eq!(at(&index, "e[0]"), (6, 5));
        assert_eq!(at(&index, "e[0].g"), (7, 8));
        assert_eq!(at(&index, "e[1]"), (8, 5));
        assert_eq!(
            at(&index, "e[0].missing"),
            (6, 5),
            "falls back to the parent"
        );
        let key = index.position("b.d", Anchor::Key);
        assert_eq!((key.line, key.column), (4, 3));
    }

    #[test]
    fn an_empty_value_points_at_its_key() {
        let index = locate("a:\nb: 1\n").unwrap();
        assert_eq!(at(&index, "a"), (1, 1));
    }

    #[test]
    fn refusals() {
        let dup = locate("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(dup[0].anchor, Anchor::At(Position { line: 3, column: 1 }));
        assert!(dup[0].message.contains("line 1"));
        for empty in ["", "# nothing\n", "---\n", "~\n"] {
            let problems = locate(empty).unwrap_err();
            assert!(problems[0].message.contains("empty"), "{empty:?}");
        }
        let two = locate("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(two[0].anchor, Anchor::At(Position { line: 2, column: 1 }));
        let syntax = locate("a:\n  b: [1,\nc: 2\n").unwrap_err();
        assert_eq!(syntax[0].path, "a.b");
        let flow = locate("a: [x.${HOST}]\n").unwrap_err();
        assert!(flow[0].hint.as_deref().unwrap_or("").contains("quote"));
    }
}
