//! The certs of a loaded config as the operator wrote them, for `rota get cert -o json`'s
//! `spec`. They are read again from the file's text rather than serialized from the typed
//! tree, because the typed tree holds what `${VAR}` expanded to and DESIGN decision 2 says no
//! resolved value is ever echoed; `*_file` paths and `env:VAR` references are not secrets and
//! stay as typed. Merge keys (`<<`) are applied, as the loader applies them. The entries stay
//! YAML values, whose mappings keep the order the keys were written in (an entry with a `<<`
//! merge aside: serde_yaml moves its keys when it applies the merge).

use serde_yaml::Value;

use super::LoadedConfig;

/// Why the running config's text could not be shown as written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AsWrittenError {
    /// The text no longer parses, although it did when it was loaded.
    #[error("the running config's text no longer parses as YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    /// The text's `certs:` list does not line up with the certs that were loaded.
    #[error(
        "the running config's text lists {written} certs where {loaded} were loaded; \
         reload the config (`rota apply -f`) to bring them back in line"
    )]
    Mismatch {
        /// Entries under `certs:` in the text.
        written: usize,
        /// Certs in the typed config.
        loaded: usize,
    },
}

impl LoadedConfig {
    /// Every cert's entry as written, in the order of `self.config.certs`.
    pub fn certs_as_written(&self) -> Result<Vec<Value>, AsWrittenError> {
        let mut root: Value = serde_yaml::from_str(&self.text)?;
        root.apply_merge()?;
        let written = match root.get_mut("certs").map(std::mem::take) {
            Some(Value::Sequence(items)) => items,
            _ => Vec::new(),
        };
        // A loaded config is valid, so every entry became a cert, in order.
        if written.len() != self.config.certs.len() {
            return Err(AsWrittenError::Mismatch {
                written: written.len(),
                loaded: self.config.certs.len(),
            });
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::load_str_with_env;

    const CONFIG: &str = "\
certs:
  - id: web
    description: owned by ${TEAM}
    domains: [Web.Example.com]
    key_path: keys/web.key
    ca: &local { kind: local }
    install: &fs { kind: filesystem, directory: '${CERT_ROOT}/web' }
  - <<: { key_path: keys/api.key, ca: *local }
    id: api
    domains: [api.example.com]
    install: *fs
";

    fn env(name: &str) -> Option<String> {
        match name {
            "TEAM" => Some("hunter2".into()),
            "CERT_ROOT" => Some("/srv/secret-place".into()),
            _ => None,
        }
    }

    #[test]
    fn certs_are_shown_as_typed_with_merges_applied_and_nothing_expanded() {
        let loaded = load_str_with_env(Path::new("/etc/rota/rota.yaml"), CONFIG.into(), &env)
            .expect("the config loads");
        assert_eq!(
            loaded.config.certs[0].description.as_deref(),
            Some("owned by hunter2"),
            "the typed tree holds the expanded value"
        );
        let written = loaded.certs_as_written().expect("shown as written");
        let entry = written[0].as_mapping().expect("a mapping");
        let keys: Vec<&str> = entry.keys().filter_map(serde_yaml::Value::as_str).collect();
        let typed_order = ["id", "description", "domains", "key_path", "ca", "install"];
        assert_eq!(keys, typed_order, "keys keep their written order");
        let install = serde_json::json!({ "kind": "filesystem", "directory": "${CERT_ROOT}/web" });
        assert_eq!(
            serde_json::to_value(&written).expect("JSON"),
            serde_json::json!([
                serde_json::json!({
                    "id": "web",
                    "description": "owned by ${TEAM}",
                    "domains": ["Web.Example.com"],
                    "key_path": "keys/web.key",
                    "ca": { "kind": "local" },
                    "install": install,
                }),
                serde_json::json!({
                    "id": "api",
                    "domains": ["api.example.com"],
                    "key_path": "keys/api.key",
                    "ca": { "kind": "local" },
                    "install": install,
                }),
            ])
        );
    }
}
