//! Where every node of `rota.yaml` was written. serde loses positions (internally tagged enums
//! buffer their content, and serde_yaml reports no line for duplicate keys or empty files), so
//! the loader walks yaml-rust2's parser events once and keeps a field path → position index;
//! every later stage reports problems by field path and this index places them in the file.
//!
//! This walk is also the first to see the text, so it enforces the bounds on its shape before
//! anything builds a tree from it: nesting depth, and the number of nodes counting every
//! alias as the nodes it stands for (a "billion laughs" file is a few lines of aliases that
//! expand to billions of nodes). It pulls events one at a time rather than through
//! `Parser::load`, which recurses once per nesting level and would overflow the stack on a
//! deeply nested file before any bound could be checked.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, ScanError, TScalarStyle};

use super::error::{Anchor, Problem};
use super::field_path;
use super::position::Position;
pub(crate) use super::position_index::PositionIndex;
use super::position_index::{NodeId, Spot, Step};

/// The deepest nesting accepted. rota's schema is five levels deep; YAML parsers and serde
/// recurse per level, so this bound is what keeps them off the end of the stack.
pub(crate) const MAX_DEPTH: usize = 64;

/// The most nodes a config may have, an alias counting as every node it repeats: about ten
/// times what 1,000 certs take (18 nodes each), and a tree serde_yaml builds in well under
/// 100 MiB.
pub(crate) const MAX_NODES: usize = 200_000;

/// Indexes `text`, or returns why it is not a usable YAML document: syntax errors, duplicate
/// keys (reported at the second occurrence), several documents, or no content at all.
pub(crate) fn locate(text: &str) -> Result<PositionIndex, Vec<Problem>> {
    let mut indexer = Indexer::default();
    let mut parser = Parser::new_from_str(text);
    // Every document is read, so that a second one is seen and refused rather than dropped.
    loop {
        match parser.next_token() {
            Err(err) => {
                let path = indexer.current_path();
                indexer.problems.push(syntax_problem(text, path, &err));
                break;
            }
            Ok((Event::StreamEnd, _)) => break,
            Ok((event, marker)) => {
                if let Err(too_big) = indexer.on_event(event, &marker) {
                    indexer.problems.push(too_big);
                    break;
                }
            }
        }
    }
    if indexer.problems.is_empty() && (indexer.documents == 0 || indexer.root_is_null) {
        indexer.problems.push(
            Problem {
                anchor: Anchor::At(Position::START),
                ..Problem::value("", "the config is empty: it must at least list `certs:`")
            }
            .hint("start with `certs: []` and add a cert; see the configuration reference"),
        );
    }
    if indexer.problems.is_empty() {
        Ok(indexer.index)
    } else {
        Err(indexer.problems)
    }
}

fn syntax_problem(text: &str, path: String, err: &ScanError) -> Problem {
    let at = Position::from_marker(err.marker());
    // yaml-rust2's scanner stops flow collections (`[`, `{`) at 255 levels, ahead of the
    // parser events that `MAX_DEPTH` is checked on.
    if err.info() == "recursion limit exceeded" {
        return too_deep(path, at);
    }
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
        anchor: Anchor::At(at),
        ..Problem::value(path, format!("YAML syntax error: {}", err.info()))
    }
    .hint(hint)
}

fn too_deep(path: String, at: Position) -> Problem {
    Problem {
        anchor: Anchor::At(at),
        ..Problem::value(
            path,
            format!("the config nests lists and mappings more than {MAX_DEPTH} levels deep"),
        )
    }
    .hint("rota's settings are at most five levels deep: check for unclosed `[` or `{`")
}

/// One open collection while walking the events.
struct Frame {
    path: String,
    /// The node in the index; `None` inside a collection used as a key, which no field path
    /// can name.
    id: Option<NodeId>,
    /// The anchor on this collection, and the node count when it opened, to learn how many
    /// nodes an alias to it repeats.
    anchor: Option<(usize, usize)>,
    kind: FrameKind,
}

enum FrameKind {
    Map {
        /// The key just read, waiting for its value.
        pending: Option<(String, Position)>,
        /// Keys already seen in this mapping, to catch duplicates.
        seen: HashMap<String, Position>,
        keys_read: usize,
    },
    Seq {
        next: usize,
    },
}

#[derive(Default)]
struct Indexer {
    frames: Vec<Frame>,
    index: PositionIndex,
    problems: Vec<Problem>,
    documents: usize,
    root_is_null: bool,
    /// Nodes read so far, each alias counting as the nodes it repeats.
    nodes: usize,
    /// Anchor id → how many nodes the anchored node holds.
    anchored_sizes: HashMap<usize, usize>,
}

/// What a node event says about the node.
struct NodeStart<'a> {
    at: Position,
    /// The text of a scalar key, which becomes the field name.
    text: Option<&'a str>,
    /// An empty plain scalar: YAML reports it at the next token, often on a later line.
    empty: bool,
}

/// Where a node sits: its path, and its id in the index unless it is (inside) a key.
struct Placed {
    path: String,
    id: Option<NodeId>,
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
            Some(Frame {
                path,
                kind:
                    FrameKind::Map {
                        pending: Some((key, _)),
                        ..
                    },
                ..
            }) => field_path::child(path, key),
            Some(frame) => frame.path.clone(),
            None => String::new(),
        }
    }

    /// Records a node (keys get a path no field can have, so collections used as keys do not
    /// shadow real fields).
    fn node(&mut self, node: &NodeStart<'_>) -> Placed {
        let Some(frame) = self.frames.last_mut() else {
            let spot = Spot {
                value: node.at,
                key: None,
            };
            let id = Some(self.index.set_root(spot));
            return Placed {
                path: String::new(),
                id,
            };
        };
        let (path, step, key_at) = match &mut frame.kind {
            FrameKind::Seq { next } => {
                *next += 1;
                let path = field_path::item(&frame.path, *next - 1);
                (path, Step::Item(*next - 1), None)
            }
            FrameKind::Map {
                pending,
                seen,
                keys_read,
            } => {
                if let Some((key, key_at)) = pending.take() {
                    let path = field_path::child(&frame.path, &key);
                    (path, Step::Key(key.into()), Some(key_at))
                } else {
                    let name = node.text.unwrap_or("?").to_owned();
                    *keys_read += 1;
                    if *keys_read == 1
                        && let Some(id) = frame.id
                    {
                        // A block mapping's start event comes one character after its first
                        // key; the key is where the operator sees the mapping begin.
                        self.index.start_no_later_than(id, node.at);
                    }
                    let key_path = field_path::child(&frame.path, &name);
                    if let Some(first) = seen.get(&name) {
                        self.problems
                            .push(duplicate_key(&key_path, &name, *first, node.at));
                    } else {
                        seen.insert(name.clone(), node.at);
                    }
                    *pending = Some((name, node.at));
                    return Placed {
                        path: format!("{key_path}<key>"),
                        id: None,
                    };
                }
            }
        };
        let value = match key_at {
            Some(key_at) if node.empty => key_at,
            _ => node.at,
        };
        let spot = Spot { value, key: key_at };
        let id = frame.id.map(|parent| self.index.add(parent, step, spot));
        Placed { path, id }
    }

    /// Counts `added` more nodes, refusing the document once it holds too many.
    fn count(&mut self, added: usize, at: Position) -> Result<(), Problem> {
        self.nodes = self.nodes.saturating_add(added);
        if self.nodes <= MAX_NODES {
            return Ok(());
        }
        Err(Problem {
            anchor: Anchor::At(at),
            ..Problem::value(
                self.current_path(),
                format!(
                    "the config has more than {MAX_NODES} values, counting each alias (`*name`) as \
                     the values it repeats"
                ),
            )
        }
        .hint("write each value once; a file this large is not a rota.yaml (aliases that repeat aliases grow exponentially)"))
    }

    /// Opens a collection, refusing one nested too deep.
    fn open(&mut self, at: Position, anchor: usize, kind: FrameKind) -> Result<(), Problem> {
        if self.frames.len() >= MAX_DEPTH {
            return Err(too_deep(self.current_path(), at));
        }
        let placed = self.node(&NodeStart {
            at,
            text: None,
            empty: false,
        });
        self.frames.push(Frame {
            path: placed.path,
            id: placed.id,
            anchor: (anchor != 0).then_some((anchor, self.nodes)),
            kind,
        });
        Ok(())
    }

    /// Takes one parser event; `Err` when the document is over a bound and reading stops.
    fn on_event(&mut self, event: Event, marker: &Marker) -> Result<(), Problem> {
        let at = Position::from_marker(marker);
        if event == Event::DocumentStart {
            self.document_start(at);
            return Ok(());
        }
        if self.documents != 1 {
            return Ok(());
        }
        match event {
            Event::Scalar(text, style, anchor, _) => {
                self.count(1, at)?;
                if anchor != 0 {
                    self.anchored_sizes.insert(anchor, 1);
                }
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
            Event::Alias(anchor) => {
                // yaml-rust2 refuses an alias to an anchor not yet defined; one still open
                // (an alias inside its own anchor) counts as itself.
                let repeats = self.anchored_sizes.get(&anchor).copied().unwrap_or(1);
                self.count(repeats, at)?;
                self.node(&NodeStart {
                    at,
                    text: None,
                    empty: false,
                });
            }
            Event::MappingStart(anchor, _) => {
                self.count(1, at)?;
                let kind = FrameKind::Map {
                    pending: None,
                    seen: HashMap::new(),
                    keys_read: 0,
                };
                self.open(at, anchor, kind)?;
            }
            Event::SequenceStart(anchor, _) => {
                self.count(1, at)?;
                self.open(at, anchor, FrameKind::Seq { next: 0 })?;
            }
            Event::MappingEnd | Event::SequenceEnd => {
                if let Some(Frame {
                    anchor: Some((anchor, before)),
                    ..
                }) = self.frames.pop()
                {
                    // The collection's own node was counted before it opened.
                    self.anchored_sizes.insert(anchor, self.nodes - before + 1);
                }
            }
            _ => {}
        }
        Ok(())
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
