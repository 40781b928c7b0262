//! `${VAR}` interpolation: every string value in the config may name environment variables,
//! which are substituted before the typed schema sees the text. An unset variable is fatal,
//! so a misconfigured deploy fails at load rather than calling a vendor with an empty value.
//!
//! A variable may hold a secret (a key id, a URL with a token in it), and the stages after
//! this one quote the values they refuse (serde's `found string "…"`), so every substitution
//! is recorded and [`scrub`] puts the text as written (`${EAB_KID}`) back into each problem
//! before it leaves the loader.

use serde_yaml::Value;

use super::diagnose::scalar_text;
use super::error::Problem;
use super::field_path;

/// Looks up an environment variable; injected so tests never touch the process environment.
pub(crate) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// One string that `${VAR}` changed. Its `Debug` shows the text as written only: the
/// values may be secrets.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Substitution {
    /// The field it is at.
    path: String,
    /// The string as written in the file.
    written: String,
    /// The string after substitution.
    expanded: String,
    /// Each variable used in it, with its value.
    values: Vec<(String, String)>,
}

impl std::fmt::Debug for Substitution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Substitution")
            .field("path", &self.path)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

/// Values shorter than this are only scrubbed from problems about their own field: replacing
/// every `1` or `on` in every message would garble them, and so short a value is no secret.
const MIN_SCRUBBED_ANYWHERE: usize = 6;

/// Replaces `${VAR}` (and `$$` by `$`) in every string under `value`, which sits at `path`,
/// recording each change in `substituted`. A string with a problem is left as written and
/// its problems are returned.
pub(crate) fn interpolate(
    value: &mut Value,
    path: &str,
    env: EnvLookup<'_>,
    substituted: &mut Vec<Substitution>,
) -> Vec<Problem> {
    match value {
        Value::String(text) => match expand(text, env) {
            Ok((expanded, values)) => {
                if !values.is_empty() {
                    substituted.push(Substitution {
                        path: path.to_owned(),
                        written: text.clone(),
                        expanded: expanded.clone(),
                        values,
                    });
                }
                *text = expanded;
                Vec::new()
            }
            Err(errors) => errors.into_iter().map(|e| e.problem(path)).collect(),
        },
        Value::Sequence(items) => items
            .iter_mut()
            .enumerate()
            .flat_map(|(i, item)| interpolate(item, &field_path::item(path, i), env, substituted))
            .collect(),
        // Keys are field names, never interpolated.
        Value::Mapping(map) => map
            .iter_mut()
            .flat_map(|(key, item)| {
                let path = field_path::child(path, &scalar_text(key));
                interpolate(item, &path, env, substituted)
            })
            .collect(),
        Value::Tagged(tagged) => interpolate(&mut tagged.value, path, env, substituted),
        Value::Null | Value::Bool(_) | Value::Number(_) => Vec::new(),
    }
}

/// Puts the text as written back where a problem quotes a substituted value: the whole
/// string in problems about its own field (or inside it), and each variable's value
/// everywhere once it is long enough to be told apart from ordinary words.
pub(crate) fn scrub(problems: &mut [Problem], substituted: &[Substitution]) {
    for problem in problems {
        for sub in substituted {
            let own_field = field_path::is_within(&problem.path, &sub.path);
            let mut replace = |from: &str, to: &str| {
                if from.is_empty() {
                    return;
                }
                problem.message = problem.message.replace(from, to);
                if let Some(hint) = &mut problem.hint {
                    *hint = hint.replace(from, to);
                }
            };
            if own_field {
                replace(&sub.expanded, &sub.written);
            }
            for (var, value) in &sub.values {
                if own_field || value.chars().count() >= MIN_SCRUBBED_ANYWHERE {
                    replace(value, &format!("${{{var}}}"));
                }
            }
        }
    }
}

/// Why one `${…}` could not be substituted.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ExpandError {
    Unset(String),
    Unterminated,
    Empty,
    BadName(String),
}

impl ExpandError {
    fn problem(self, path: &str) -> Problem {
        match self {
            Self::Unset(var) => Problem::value(
                path,
                format!("environment variable `{var}` is not set"),
            )
            .hint(format!(
                "export {var} in rotad's environment (systemd `Environment=`, an env file, a secrets \
                 manager), or write `$${{{var}}}` for a literal `${{{var}}}`"
            )),
            Self::Unterminated => Problem::value(path, "`${` is not closed by a `}`")
                .hint("write `${VAR}`, or `$$` for a literal `$`"),
            Self::Empty => Problem::value(path, "`${}` names no variable")
                .hint("write `${VAR}`, or `$$` for a literal `$`"),
            Self::BadName(name) => Problem::value(
                path,
                format!("`${{{name}}}` is not a valid environment variable reference"),
            )
            .hint("variable names are letters, digits and `_`, not starting with a digit; `$$` is a literal `$`"),
        }
    }
}

/// A variable's name and value.
type Resolved = (String, String);

/// Expands one string, returning it with every variable used. A `$` not followed by `{` or
/// `$` stays as written, so passwords and URLs with a lone `$` need no escaping.
fn expand(text: &str, env: EnvLookup<'_>) -> Result<(String, Vec<Resolved>), Vec<ExpandError>> {
    let mut out = String::with_capacity(text.len());
    let mut values = Vec::new();
    let mut errors = Vec::new();
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let Some(close) = inner.find('}') else {
                errors.push(ExpandError::Unterminated);
                return Err(errors);
            };
            let name = &inner[..close];
            match lookup(name, env) {
                Ok(value) => {
                    out.push_str(&value);
                    values.push((name.to_owned(), value));
                }
                Err(e) => errors.push(e),
            }
            rest = &inner[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    if errors.is_empty() {
        Ok((out, values))
    } else {
        Err(errors)
    }
}

fn lookup(name: &str, env: EnvLookup<'_>) -> Result<String, ExpandError> {
    if name.is_empty() {
        return Err(ExpandError::Empty);
    }
    if !is_var_name(name) {
        return Err(ExpandError::BadName(name.to_owned()));
    }
    env(name).ok_or_else(|| ExpandError::Unset(name.to_owned()))
}

/// POSIX shell variable names: what every secrets manager and init system can export.
fn is_var_name(name: &str) -> bool {
    name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "USER").then(|| "ada".to_owned())
    }

    #[test]
    fn expansions() {
        for (input, expected) in [
            ("plain", Ok("plain".to_owned())),
            ("${USER}@host", Ok("ada@host".to_owned())),
            ("$${USER}", Ok("${USER}".to_owned())),
            ("pa$word $", Ok("pa$word $".to_owned())),
            ("a$$b", Ok("a$b".to_owned())),
            ("${NOPE}", Err(vec![ExpandError::Unset("NOPE".into())])),
            ("${USER", Err(vec![ExpandError::Unterminated])),
            ("${}", Err(vec![ExpandError::Empty])),
            ("${1X}", Err(vec![ExpandError::BadName("1X".into())])),
            (
                "${A}-${B}",
                Err(vec![
                    ExpandError::Unset("A".into()),
                    ExpandError::Unset("B".into()),
                ]),
            ),
        ] {
            let expanded = expand(input, &env).map(|(text, _)| text);
            assert_eq!(expanded, expected, "{input}");
        }
    }

    #[test]
    fn problems_name_the_field() {
        let mut value: Value = serde_yaml::from_str("certs:\n  - description: ${FOO}\n").unwrap();
        let problems = interpolate(&mut value, "", &env, &mut Vec::new());
        assert_eq!(problems[0].path, "certs[0].description");
        assert!(problems[0].message.contains("`FOO`"));
    }

    #[test]
    fn problems_quote_the_text_as_written() {
        let env = |name: &str| match name {
            "KID" => Some("kid-s3cr3t-value".to_owned()),
            "N" => Some("7".to_owned()),
            _ => None,
        };
        let mut value: Value =
            serde_yaml::from_str("a: { kid: 'x-${KID}', n: '${N}' }\nb: 1\n").unwrap();
        let mut substituted = Vec::new();
        assert!(interpolate(&mut value, "", &env, &mut substituted).is_empty());
        let mut problems = vec![
            Problem::value("a.kid", "found string \"x-kid-s3cr3t-value\""),
            Problem::value("b", "must differ from `kid-s3cr3t-value`").hint("or kid-s3cr3t-value"),
            Problem::value("a.n", "expected a number, found string \"7\""),
            Problem::value("b", "must be from 1 to 7"),
        ];
        scrub(&mut problems, &substituted);
        assert!(
            !format!("{substituted:?}").contains("s3cr3t"),
            "Debug hides the values"
        );
        let shown: Vec<_> = problems
            .iter()
            .map(|p| (p.message.as_str(), p.hint.as_deref()))
            .collect();
        assert_eq!(
            shown,
            [
                ("found string \"x-${KID}\"", None),
                ("must differ from `${KID}`", Some("or ${KID}")),
                ("expected a number, found string \"${N}\"", None),
                ("must be from 1 to 7", None),
            ],
            "a whole string in its own field, a long value anywhere, a short one only in its own field"
        );
    }
}
