//! `${VAR}` interpolation: every string value in the config may name environment variables,
//! which are substituted before the typed schema sees the text. An unset variable is fatal,
//! so a misconfigured deploy fails at load rather than calling a vendor with an empty value.

use serde_yaml::Value;

use super::diagnose::scalar_text;
use super::error::Problem;
use super::field_path;

/// Looks up an environment variable; injected so tests never touch the process environment.
pub(crate) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Replaces `${VAR}` (and `$$` by `$`) in every string under `value`, which sits at `path`.
/// A string with a problem is left as written and its problems are returned.
pub(crate) fn interpolate(value: &mut Value, path: &str, env: EnvLookup<'_>) -> Vec<Problem> {
    match value {
        Value::String(text) => match expand(text, env) {
            Ok(expanded) => {
                *text = expanded;
                Vec::new()
            }
            Err(errors) => errors.into_iter().map(|e| e.problem(path)).collect(),
        },
        Value::Sequence(items) => items
            .iter_mut()
            .enumerate()
            .flat_map(|(i, item)| interpolate(item, &field_path::item(path, i), env))
            .collect(),
        // Keys are field names, never interpolated.
        Value::Mapping(map) => map
            .iter_mut()
            .flat_map(|(key, item)| {
                interpolate(item, &field_path::child(path, &scalar_text(key)), env)
            })
            .collect(),
        Value::Tagged(tagged) => interpolate(&mut tagged.value, path, env),
        Value::Null | Value::Bool(_) | Value::Number(_) => Vec::new(),
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

/// Expands one string. A `$` not followed by `{` or `$` stays as written, so passwords and
/// URLs with a lone `$` need no escaping.
fn expand(text: &str, env: EnvLookup<'_>) -> Result<String, Vec<ExpandError>> {
    let mut out = String::with_capacity(text.len());
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
                Ok(value) => out.push_str(&value),
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
        Ok(out)
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
            assert_eq!(expand(input, &env), expected, "{input}");
        }
    }

    #[test]
    fn problems_name_the_field() {
        let mut value: Value = serde_yaml::from_str("certs:\n  - description: ${FOO}\n").unwrap();
        let problems = interpolate(&mut value, "", &env);
        assert_eq!(problems[0].path, "certs[0].description");
        assert!(problems[0].message.contains("`FOO`"));
    }
}
