//! `rota.yaml` as a JSON Schema, derived from the serde types in [`super::schema`] (field docs
//! become descriptions, [`super::ranges`] become `minimum`/`maximum`), and the list of every
//! key path in it. `rota config schema` prints the schema for editors; the operator's manual
//! is checked against the key paths, so a key added to the types without a line in the
//! reference fails a test.
//!
//! A key path is written the way the reference writes it: `daemon.listen_addr`, `certs[].id`
//! for a field of every list entry, and `certs[].install[kind=nginx].reload_command` for a
//! field that only one `kind` of a tagged block has (`alerts[kind=webhook].url` for a list of
//! tagged entries). `pattern` is the same path without the `kind` qualifiers, as
//! [`super::ranges`] writes it.

use serde_json::{Map, Value};

use super::ranges::BOUNDS;
use super::schema::Config;

/// The JSON Schema (draft 2020-12) of `rota.yaml`, with every range of the config.
#[must_use]
pub fn config_schema() -> Value {
    let mut schema = schemars::schema_for!(Config).to_value();
    for found in walk_schema(&schema) {
        if let Some(bound) = BOUNDS.iter().find(|b| b.path == found.pattern)
            && let Some(Value::Object(node)) = schema.pointer_mut(&found.pointer)
        {
            node.insert("minimum".into(), Value::from(*bound.range.start()));
            node.insert("maximum".into(), Value::from(*bound.range.end()));
        }
    }
    if let Value::Object(top) = &mut schema {
        top.insert(
            "title".into(),
            Value::String("rota.yaml, the configuration of rotad".into()),
        );
    }
    schema
}

/// How the description of a `kind` field starts; the kinds follow.
const KIND_LIST: &str = "which backend: ";

/// One key of `rota.yaml`, found by walking [`config_schema`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPath {
    /// Where the key is, e.g. `certs[].install[kind=nginx].reload_command`.
    pub path: String,
    /// The same path without `kind` qualifiers, as ranges are written: `alerts[].timeout_seconds`.
    pub pattern: String,
    /// The field's doc comment.
    pub description: String,
    /// JSON pointer of the field's schema inside [`config_schema`].
    pointer: String,
}

/// Every key of `rota.yaml`, blocks and `kind` fields included, in schema order.
#[must_use]
pub fn key_paths() -> Vec<KeyPath> {
    walk_schema(&config_schema())
}

fn walk_schema(schema: &Value) -> Vec<KeyPath> {
    let defs = schema
        .get("$defs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::new();
    let root = Scope {
        path: String::new(),
        pattern: String::new(),
    };
    walk(schema, "", &defs, &root, &mut out);
    // Each variant reports its own `kind` value; the first row lists them all.
    let mut merged: Vec<KeyPath> = Vec::with_capacity(out.len());
    for key in out {
        match merged.iter_mut().find(|k| k.path == key.path) {
            Some(first) if first.path.split('.').next_back() == Some("kind") => {
                let kind = key.description.trim_start_matches(KIND_LIST);
                first.description = format!("{}, {kind}", first.description);
            }
            Some(_) => {}
            None => merged.push(key),
        }
    }
    merged
}

/// Where the walk is: the key path so far, with and without `kind` qualifiers.
struct Scope {
    path: String,
    pattern: String,
}

impl Scope {
    fn field(&self, name: &str) -> Self {
        Self {
            path: join(&self.path, name),
            pattern: join(&self.pattern, name),
        }
    }

    fn items(&self) -> Self {
        Self {
            path: format!("{}[]", self.path),
            pattern: format!("{}[]", self.pattern),
        }
    }

    /// `install` → `install[kind=nginx]`; a list entry `alerts[]` → `alerts[kind=email]`.
    fn variant(&self, kind: &str) -> Self {
        let base = self.path.strip_suffix("[]").unwrap_or(&self.path);
        Self {
            path: format!("{base}[kind={kind}]"),
            pattern: self.pattern.clone(),
        }
    }
}

/// The alternatives a node may take, each with its JSON pointer: itself, its `$ref` target,
/// and its `anyOf`/`oneOf`/`allOf` members (an `Option` is `anyOf [T, null]`, a tagged enum
/// `oneOf` its variants).
fn alternatives<'a>(
    node: &'a Value,
    pointer: &str,
    defs: &'a Map<String, Value>,
    out: &mut Vec<(&'a Value, String)>,
) {
    out.push((node, pointer.to_owned()));
    if let Some(name) = node
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
        && let Some(target) = defs.get(name)
    {
        alternatives(target, &format!("/$defs/{name}"), defs, out);
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        for (i, member) in node
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            alternatives(member, &format!("{pointer}/{key}/{i}"), defs, out);
        }
    }
}

/// The `kind` value a variant schema is pinned to, if it is one.
fn variant_kind(node: &Value) -> Option<&str> {
    node.pointer("/properties/kind/const")
        .and_then(Value::as_str)
}

fn walk(
    node: &Value,
    pointer: &str,
    defs: &Map<String, Value>,
    scope: &Scope,
    out: &mut Vec<KeyPath>,
) {
    let mut found = Vec::new();
    alternatives(node, pointer, defs, &mut found);
    for (alternative, at) in found {
        let kind = variant_kind(alternative);
        let inner = match kind {
            Some(kind) => {
                let mut field = key(
                    &scope.field("kind"),
                    &format!("{at}/properties/kind"),
                    alternative,
                );
                field.description = format!("{KIND_LIST}`{kind}`");
                out.push(field);
                scope.variant(kind)
            }
            None => scope.field(""),
        };
        let fields = alternative.get("properties").and_then(Value::as_object);
        for (name, field) in fields.into_iter().flatten() {
            if kind.is_some() && name == "kind" {
                continue;
            }
            let child = inner.field(name);
            let child_at = format!("{at}/properties/{name}");
            out.push(key(&child, &child_at, alternative));
            walk(field, &child_at, defs, &child, out);
        }
        if let Some(items) = alternative.get("items") {
            walk(items, &format!("{at}/items"), defs, &scope.items(), out);
        }
    }
}

fn join(prefix: &str, name: &str) -> String {
    match (prefix.is_empty(), name.is_empty()) {
        (_, true) => prefix.to_owned(),
        (true, false) => name.to_owned(),
        (false, false) => format!("{prefix}.{name}"),
    }
}

/// The key at `scope`, described by the `description` of its property in `owner`.
fn key(scope: &Scope, pointer: &str, owner: &Value) -> KeyPath {
    let name = scope.path.rsplit('.').next().unwrap_or_default();
    KeyPath {
        path: scope.path.clone(),
        pattern: scope.pattern.clone(),
        // Doc comments wrap; a description is one line.
        description: owner
            .pointer(&format!("/properties/{name}/description"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
        pointer: pointer.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_range_lands_on_a_number_of_the_schema() {
        let schema = config_schema();
        let keys = walk_schema(&schema);
        for bound in BOUNDS {
            let key = keys
                .iter()
                .find(|k| k.pattern == bound.path)
                .unwrap_or_else(|| panic!("range {} names no key of the schema", bound.path));
            let node = schema.pointer(&key.pointer).expect("the key's schema");
            assert_eq!(
                node.get("maximum").and_then(Value::as_u64),
                Some(*bound.range.end()),
                "{}",
                bound.path
            );
        }
    }

    #[test]
    fn tagged_blocks_are_qualified_by_kind() {
        let paths: Vec<String> = key_paths().into_iter().map(|k| k.path).collect();
        for expected in [
            "daemon.listen_addr",
            "daemon.dns_propagation.timeout_seconds",
            "acme.external_account_binding.hmac_key_file",
            "certs[].install.kind",
            "certs[].install[kind=nginx].reload_command",
            "alerts[].kind",
            "alerts[kind=webhook].timeout_seconds",
            "audit[kind=surrealdb].endpoint",
        ] {
            assert!(
                paths.iter().any(|p| p == expected),
                "{expected} missing from {paths:#?}"
            );
        }
    }
}
