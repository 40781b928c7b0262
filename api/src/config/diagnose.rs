//! Turns serde's errors into problems an operator can act on: the real field path (looking
//! inside `kind`-tagged blocks, where serde loses it), what is wrong in config terms rather
//! than Rust types, and how to fix it.

use serde_yaml::Value;

use super::error::Problem;
use super::field_path;
use super::ranges::range_of;
use super::schema::{Availability, Tagged};

/// What `serde_path_to_error` returns for a block deserialized from a YAML value.
pub(crate) type SerdeError = serde_path_to_error::Error<serde_yaml::Error>;

/// Fields renamed in a release: (old name, new name, release). Only cert fields so far.
const RENAMED_CERT_FIELDS: &[(&str, &str, &str)] = &[("registrar", "dcv", "v0.6")];

/// The problem serde found in the block at `base`.
pub(crate) fn serde_problem(base: &str, err: &SerdeError) -> Problem {
    let path = field_path::join_serde(base, err.path());
    translate(path, &err.inner().to_string())
}

/// The problems of a `kind`-tagged block at `path`: its shape, its `kind`, and the first error
/// inside the variant with that variant's own field path.
pub(crate) fn tagged_problems<T: Tagged>(node: &Value, path: &str) -> Vec<Problem> {
    let what = block_name(path);
    let kinds = kind_list::<T>();
    let Value::Mapping(map) = node else {
        return vec![
            Problem::value(
                path,
                format!(
                    "{what} must be a mapping with a `kind`, found {}",
                    describe(node)
                ),
            )
            .hint(format!(
                "write e.g. `{{ kind: {} }}`; `kind` is one of {kinds}",
                example_kind::<T>()
            )),
        ];
    };
    let Some(kind) = map.get("kind") else {
        return vec![
            Problem::value(path, format!("{what} has no `kind`"))
                .hint(format!("add `kind:` with one of {kinds}")),
        ];
    };
    let Some(kind) = kind.as_str().filter(|k| T::KINDS.contains(k)) else {
        let written = scalar_text(kind);
        let message = format!(
            "unknown `{}` kind `{written}`{}",
            field_path::last_field(path),
            did_you_mean(&written, T::KINDS)
        );
        return vec![
            Problem::value(field_path::child(path, "kind"), message)
                .hint(format!("`kind` is one of {kinds}")),
        ];
    };
    let mut body = map.clone();
    // Keep the order of the remaining fields, so the error serde reports first is the first
    // one in the file.
    body.shift_remove("kind");
    T::variant_error(kind, Value::Mapping(body))
        .map(|err| serde_problem(path, &err))
        .into_iter()
        .collect()
}

/// The kinds of `T`, each marked when this build cannot run it yet.
fn kind_list<T: Tagged>() -> String {
    let names: Vec<String> = T::KINDS
        .iter()
        .map(|kind| match T::kind_availability(kind) {
            Some(Availability::NotYet) => format!("`{kind}` (not available yet)"),
            Some(Availability::BuiltWithout(feature)) => {
                format!("`{kind}` (built without feature `{feature}`)")
            }
            _ => format!("`{kind}`"),
        })
        .collect();
    names.join(", ")
}

fn example_kind<T: Tagged>() -> &'static str {
    T::KINDS
        .iter()
        .find(|kind| T::kind_availability(kind) == Some(Availability::Available))
        .or(T::KINDS.first())
        .copied()
        .unwrap_or("…")
}

/// "`ca`" for a field, "this `alerts` entry" for an item of a list.
fn block_name(path: &str) -> String {
    let field = field_path::last_field(path);
    if path.ends_with(']') {
        format!("this `{field}` entry")
    } else {
        format!("`{field}`")
    }
}

/// Rewrites serde's message about the node at `path`.
fn translate(path: String, raw: &str) -> Problem {
    if raw.starts_with("unknown field `") {
        return unknown_field(path, raw);
    }
    if raw.starts_with("missing field `") {
        let name = backticked(raw).first().copied().unwrap_or("?");
        return Problem::value(path, format!("missing required field `{name}`"))
            .hint(format!("add `{name}:` to this block"));
    }
    if raw.starts_with("unknown variant `") {
        let names = backticked(raw);
        let (written, accepted) = names.split_first().map_or(("?", &[][..]), |(w, a)| (*w, a));
        return Problem::value(path, format!("`{written}` is not an accepted value"))
            .hint(format!("write one of {}", quoted_list(accepted)));
    }
    if let Some(rest) = raw.strip_prefix("invalid type: ") {
        return in_config_range(invalid_type(path, rest));
    }
    if let Some(rest) = raw.strip_prefix("invalid value: ") {
        let (found, expected) = rest.split_once(", expected ").unwrap_or((rest, "?"));
        let problem = Problem::value(
            path,
            format!(
                "{found} is out of range: expected {}",
                expected_text(expected)
            ),
        )
        .hint(type_hint(expected, found));
        return in_config_range(problem);
    }
    match raw {
        "invalid socket address syntax" => Problem::value(path, "not a valid socket address").hint(
            "write IP:PORT, e.g. `127.0.0.1:7878`, `0.0.0.0:7878` or `[::1]:7878` (not a host name)",
        ),
        "invalid IP address syntax" => Problem::value(path, "not a valid IP address")
            .hint("write an IPv4 or IPv6 address, e.g. `192.0.2.1`"),
        // rota's own newtypes (ids, DNS names, secret sources) already say what is wrong.
        _ => {
            let hint = field_hint(&path);
            let problem = Problem::value(path, raw);
            match hint {
                Some(hint) => problem.hint(hint),
                None => problem,
            }
        }
    }
}

/// For a bounded number, the range rota accepts rather than the range of its Rust type.
fn in_config_range(problem: Problem) -> Problem {
    let Some(range) = range_of(&problem.path) else {
        return problem;
    };
    let (min, max) = (range.start(), range.end());
    let message = match problem.message.split_once(": expected ") {
        Some((found, _)) => format!("{found}: expected a whole number from {min} to {max}"),
        None => problem.message.clone(),
    };
    Problem { message, ..problem }.hint(format!(
        "write a whole number from {min} to {max}, without quotes or units"
    ))
}

fn unknown_field(path: String, raw: &str) -> Problem {
    let names = backticked(raw);
    let (name, allowed) = names.split_first().map_or(("?", &[][..]), |(n, a)| (*n, a));
    let in_cert = field_path::parent(&path).is_some_and(is_cert_path);
    if let Some((_, new, since)) = RENAMED_CERT_FIELDS
        .iter()
        .find(|(old, ..)| in_cert && *old == name)
    {
        return Problem::key(
            path,
            format!("`{name}` was renamed to `{new}` in {since}: rename the key"),
        )
        .hint(format!(
            "write `{new}:` instead of `{name}:`; its contents stay the same"
        ));
    }
    let message = format!("unknown field `{name}`{}", did_you_mean(name, allowed));
    let hint = if allowed.is_empty() {
        format!("nothing else is allowed here: remove `{name}`")
    } else {
        format!("fields allowed here: {}", quoted_list(allowed))
    };
    Problem::key(path, message).hint(hint)
}

/// `certs[3]`: a whole cert.
fn is_cert_path(path: &str) -> bool {
    path.strip_prefix("certs[")
        .and_then(|rest| rest.strip_suffix(']'))
        .is_some_and(|index| index.bytes().all(|b| b.is_ascii_digit()))
}

fn invalid_type(path: String, rest: &str) -> Problem {
    let (found, expected) = rest.split_once(", expected ").unwrap_or((rest, "?"));
    let message = if found == "unit value" {
        format!(
            "`{}` is empty: expected {}",
            field_path::last_field(&path),
            expected_text(expected)
        )
    } else {
        format!(
            "expected {}, found {}",
            expected_text(expected),
            found_text(found)
        )
    };
    Problem::value(path, message).hint(type_hint(expected, found))
}

/// serde's name for the expected type, in config words.
fn expected_text(expected: &str) -> String {
    match expected {
        "a string" => "text".into(),
        "path string" => "a path".into(),
        "a boolean" => "`true` or `false`".into(),
        "a sequence" => "a list".into(),
        "u16" => "a whole number from 0 to 65535".into(),
        "u32" => "a whole number from 0 to 4294967295".into(),
        "u64" | "usize" => "a whole number (0 or more)".into(),
        "socket address" => "an address such as `127.0.0.1:7878`".into(),
        "IP address" => "an IP address".into(),
        e if e.starts_with("struct ") || e.starts_with("a map") => "a mapping".into(),
        e if e.starts_with("internally tagged enum") => "a mapping with a `kind`".into(),
        e => e.to_owned(),
    }
}

fn found_text(found: &str) -> String {
    match found {
        "map" => "a mapping".into(),
        "sequence" => "a list".into(),
        f => f.to_owned(),
    }
}

fn type_hint(expected: &str, found: &str) -> String {
    match expected {
        "a string" | "path string" if !matches!(found, "map" | "sequence" | "unit value") => {
            "quote the value (e.g. `\"2024\"`) so YAML reads it as text".into()
        }
        "a sequence" => "write a list: `[a, b]`, or one `- item` per line".into(),
        "u16" | "u32" | "u64" | "usize" => "write a whole number without quotes or units".into(),
        "a boolean" => "write `true` or `false`".into(),
        e if e.starts_with("struct ") || e.starts_with("a map") => {
            "write the block's fields indented under its key".into()
        }
        _ => format!("write {} here", expected_text(expected)),
    }
}

/// Extra help for the messages of rota's own newtypes.
fn field_hint(path: &str) -> Option<&'static str> {
    let field = field_path::last_field(path);
    if field == "id" && path.starts_with("certs[") {
        Some("an id is 1–64 letters, digits, `-`, `_` or `.`, starting with a letter or digit")
    } else if field == "domains" {
        Some("list DNS names such as `example.com` or `*.example.com`")
    } else if field == "verify_address" {
        Some(
            "write where the server listens, e.g. `127.0.0.1:443`, `[::1]:443` or `www.example.com:443`",
        )
    } else if field == "server" && path.contains(".dcv.") {
        Some(
            "write where the DNS server takes updates, e.g. `ns1.example.com:53` or `192.0.2.53:53`",
        )
    } else if field == "zone" {
        Some("write the zone's apex as the DNS server names it, e.g. `example.com`")
    } else if field.ends_with("_file") {
        Some("give a file path, or `env:VAR` to read the secret from an environment variable")
    } else {
        None
    }
}

/// The names between backticks in serde's message, in order.
fn backticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// "`a`, `b`, `c`".
pub(crate) fn quoted_list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    quoted.join(", ")
}

/// A short description of a YAML value for messages.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing".into(),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(tagged) => describe(&tagged.value),
        scalar => format!("`{}`", scalar_text(scalar)),
    }
}

/// The text of a scalar as written (a key or a `kind`), or a description of a collection.
pub(crate) fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => String::new(),
        other => describe(other),
    }
}

/// ": did you mean `x`?" when `word` looks like a typo of one of `candidates`, else "".
pub(crate) fn did_you_mean(word: &str, candidates: &[&str]) -> String {
    closest(word, candidates).map_or_else(String::new, |near| format!(": did you mean `{near}`?"))
}

/// The candidate closest to a misspelt `word`, if it is close enough to be a typo.
fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = if word.chars().count() < 5 { 1 } else { 2 };
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance: edits, with a swap of two neighbours counting as one.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![vec![0_usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    rows[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_are_suggested() {
        let fields = ["id", "domains", "key_path", "install"];
        assert_eq!(closest("domian", &fields), Some("domains"));
        assert_eq!(closest("instal", &fields), Some("install"));
        assert_eq!(closest("zzz", &fields), None);
    }

    #[test]
    fn serde_messages_become_operator_messages() {
        let p = translate(
            "daemon.x".into(),
            "invalid type: integer `5`, expected a string",
        );
        assert_eq!(p.message, "expected text, found integer `5`");
        assert!(p.hint.unwrap().contains("quote"));
        let p = translate(
            "certs[0].registrar".into(),
            "unknown field `registrar`, expected `id`",
        );
        assert!(p.message.contains("renamed to `dcv`"));
        let p = translate(
            "daemon.registrar".into(),
            "unknown field `registrar`, expected `id`",
        );
        assert_eq!(p.message, "unknown field `registrar`");
    }
}
