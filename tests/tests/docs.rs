//! The operator's manual (`docs/`) cannot drift from the code:
//! - every key the config types define (walked from the JSON Schema derived from them) has a
//!   row in `docs/configuration.md`, and every row names a real key;
//! - every ```yaml example in `docs/` loads with rotad's own loader (a fragment is first put
//!   where it belongs: cert-level keys into a cert, blocks into a config); an example of a
//!   kind this build refuses is fenced ```yaml not-available and must still be refused so;
//! - `schemas/rota.schema.json` is what `rota config schema` prints, and the examples in
//!   `examples/` and the manifests validate against it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn docs() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(repo("docs"))
        .expect("docs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).expect("read doc"))
        })
        .collect();
    files.sort();
    files
}

/// The first cell of every table row whose first cell is a backticked key.
fn documented_keys(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`'))
        .map(|(key, _)| key.to_owned())
        .collect()
}

#[test]
fn every_config_key_has_a_row_in_the_reference() {
    let reference =
        std::fs::read_to_string(repo("docs/configuration.md")).expect("docs/configuration.md");
    let documented = documented_keys(&reference);
    let keys: BTreeSet<String> = rota_api::config::key_paths()
        .into_iter()
        .map(|k| k.path)
        .collect();
    let missing: Vec<_> = keys.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&keys).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "docs/configuration.md is out of step with the config types.\n\
         keys without a row ({}):\n  {}\nrows naming no key ({}):\n  {}\n\
         (`rota config keys` lists every key with its description)",
        missing.len(),
        missing
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join("\n  "),
        unknown.len(),
        unknown
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join("\n  "),
    );
}

/// One fenced YAML example: where it is, whether it is marked not-available, its text.
struct Example {
    at: String,
    not_available: bool,
    text: String,
}

fn yaml_examples() -> Vec<Example> {
    let mut found = Vec::new();
    for (name, text) in docs() {
        let mut lines = text.lines().enumerate();
        while let Some((n, line)) = lines.next() {
            let Some(info) = line.strip_prefix("```yaml") else {
                continue;
            };
            let body: Vec<&str> = lines
                .by_ref()
                .map(|(_, l)| l)
                .take_while(|l| !l.starts_with("```"))
                .collect();
            found.push(Example {
                at: format!("docs/{name}:{}", n + 1),
                not_available: info.trim() == "not-available",
                text: body.join("\n"),
            });
        }
    }
    found
}

const CERT_KEYS: &[&str] = &[
    "id",
    "description",
    "domains",
    "key_path",
    "ca",
    "dcv",
    "install",
];

/// The example as a whole rota.yaml: cert-level keys go into a cert on the local CA that
/// installs into a directory (each replaced by the example's own), top-level blocks stay where
/// they are, and a config without `certs:` gets an empty list.
fn as_config(text: &str) -> String {
    let value: Value = serde_yaml::from_str(text).expect("the example is YAML");
    let Value::Mapping(top) = value else {
        panic!("an example is a mapping")
    };
    let (cert_level, mut config): (Mapping, Mapping) = top
        .into_iter()
        .partition(|(k, _)| k.as_str().is_some_and(|k| CERT_KEYS.contains(&k)));
    if !cert_level.is_empty() {
        let mut cert: Mapping = serde_yaml::from_str(
            "{ id: example, domains: [example.home.arpa], key_path: /var/lib/rota/keys/example.key, \
             ca: { kind: local }, install: { kind: filesystem, directory: /var/lib/rota/certs/example } }",
        )
        .expect("skeleton");
        cert.extend(cert_level);
        config.insert("certs".into(), Value::Sequence(vec![Value::Mapping(cert)]));
    }
    config
        .entry("certs".into())
        .or_insert(Value::Sequence(Vec::new()));
    serde_yaml::to_string(&config).expect("yaml")
}

#[test]
fn every_yaml_example_in_the_docs_loads() {
    let examples = yaml_examples();
    assert!(
        examples.len() >= 10,
        "found only {} examples",
        examples.len()
    );
    let mut failures = Vec::new();
    for example in examples {
        let text = as_config(&example.text);
        // `${VAR}` and `env:VAR` read the operator's environment: any variable is set here.
        let env = |_: &str| Some("example-value".to_owned());
        let loaded =
            rota_api::config::load_str_with_env(Path::new("/etc/rota/rota.yaml"), text, &env);
        // Secret files exist on the operator's machine only; every other problem counts.
        let problems: Vec<String> = match loaded {
            Ok(_) => Vec::new(),
            Err(errors) => errors
                .0
                .into_iter()
                .filter(|i| {
                    !(i.message.starts_with("secret file") && i.message.ends_with("does not exist"))
                })
                .map(|i| format!("{}: {}", i.path, i.message))
                .collect(),
        };
        let refused_as_not_available =
            !problems.is_empty() && problems.iter().all(|p| p.contains("not available"));
        match (example.not_available, problems.is_empty()) {
            (false, true) => {}
            (true, false) if refused_as_not_available => {}
            (true, _) => failures.push(format!(
                "{}: marked not-available, but this build says: {problems:?} (drop the marker once the kind has landed)",
                example.at
            )),
            (false, false) => failures.push(format!("{}: {}", example.at, problems.join("; "))),
        }
    }
    assert!(
        failures.is_empty(),
        "examples that do not load:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_committed_schema_is_what_rota_prints_and_the_examples_validate() {
    let schema = rota_api::config::config_schema();
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo("schemas/rota.schema.json"))
            .expect("schemas/rota.schema.json"),
    )
    .expect("json");
    assert!(
        committed == schema,
        "schemas/rota.schema.json is stale: regenerate it with `rota config schema > schemas/rota.schema.json`"
    );
    let validator = jsonschema::draft202012::new(&schema).expect("a valid draft 2020-12 schema");
    let mut configs: Vec<(String, String)> = std::fs::read_dir(repo("examples"))
        .expect("examples/")
        .map(|e| e.expect("entry").path())
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read_to_string(&p).expect("read"),
            )
        })
        .collect();
    for example in yaml_examples().into_iter().filter(|e| !e.not_available) {
        configs.push((example.at, as_config(&example.text)));
    }
    for (at, text) in configs {
        let value: serde_json::Value = serde_yaml::from_str(&text).expect("yaml");
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{at} does not validate: {errors:#?}");
    }
}
