//! Deserializes `rota.yaml` one top-level block at a time, and `certs` and `alerts` one entry
//! at a time, so that a mistake in one block does not hide the mistakes in the others. What
//! parsed is kept (with the rows it came from) for the semantic checks that follow.

use std::collections::BTreeSet;

use serde::de::DeserializeOwned;
use serde_yaml::Value;

use super::diagnose::{did_you_mean, quoted_list, scalar_text, serde_problem, tagged_problems};
use super::error::Problem;
use super::field_path;
use super::schema::{
    AlertSpec, AuditConfig, CaSpec, CertSpec, Config, DaemonConfig, DcvSpec, InstallSpec,
    LocalCaConfig, Tagged,
};

/// Every top-level block, in the order of the configuration reference.
const BLOCKS: &[&str] = &[
    "daemon",
    "audit",
    "local_ca",
    "namecheap",
    "cloudflare",
    "acme",
    "dsm",
    "cluster",
    "alerts",
    "certs",
];

/// Checks one `kind`-tagged node at a path.
type TaggedCheck = fn(&Value, &str) -> Vec<Problem>;

/// The `kind`-tagged fields of a cert, checked on their own so an error in one is found even
/// when serde stopped at another.
const CERT_TAGGED_FIELDS: &[(&str, TaggedCheck)] = &[
    ("ca", tagged_problems::<CaSpec>),
    ("dcv", tagged_problems::<DcvSpec>),
    ("install", tagged_problems::<InstallSpec>),
];

/// What deserialized, with enough bookkeeping to point back into the file.
#[derive(Debug)]
pub(crate) struct Parsed {
    /// The config; a block that failed holds its default, a cert or alert that failed is left out.
    pub config: Config,
    /// `config.certs[k]` was written as `certs[cert_rows[k]]`.
    pub cert_rows: Vec<usize>,
    /// `config.alerts[k]` was written as `alerts[alert_rows[k]]`.
    pub alert_rows: Vec<usize>,
    /// Top-level blocks that were written but did not deserialize; checks that need them are
    /// skipped, since their problem is already reported.
    pub broken: BTreeSet<&'static str>,
}

impl Parsed {
    /// Whether `block` deserialized (or was left out and defaulted).
    pub(crate) fn usable(&self, block: &str) -> bool {
        !self.broken.contains(block)
    }

    /// Every parsed cert with its field path.
    pub(crate) fn certs(&self) -> impl Iterator<Item = (String, &CertSpec)> {
        let rows = self.cert_rows.iter();
        rows.zip(&self.config.certs)
            .map(|(row, cert)| (field_path::item("certs", *row), cert))
    }

    /// Every parsed alert sink with its field path.
    pub(crate) fn alerts(&self) -> impl Iterator<Item = (String, &AlertSpec)> {
        let rows = self.alert_rows.iter();
        rows.zip(&self.config.alerts)
            .map(|(row, alert)| (field_path::item("alerts", *row), alert))
    }
}

/// Deserializes the document `root` (already interpolated) block by block.
pub(crate) fn deserialize_blocks(root: Value) -> (Parsed, Vec<Problem>) {
    let mut parsed = Parsed {
        config: empty_config(),
        cert_rows: Vec::new(),
        alert_rows: Vec::new(),
        broken: BTreeSet::new(),
    };
    let mut problems = Vec::new();
    let Value::Mapping(top) = root else {
        problems.push(
            Problem::value("", "the config must be a mapping of blocks, like `certs:`")
                .hint(format!("top-level blocks are {}", quoted_list(BLOCKS))),
        );
        parsed.broken.extend(BLOCKS);
        return (parsed, problems);
    };
    if !top.contains_key("certs") {
        problems.push(
            Problem::value("", "the config has no `certs:` list")
                .hint("add `certs:` with the certs to keep fresh (`certs: []` for none yet)"),
        );
    }
    for (key, value) in top {
        let Some(name) = key.as_str().and_then(|k| BLOCKS.iter().find(|b| **b == k)) else {
            problems.push(unknown_block(&key));
            continue;
        };
        if let Err(found) = read_block(&mut parsed, name, value) {
            parsed.broken.insert(name);
            problems.extend(found);
        }
    }
    (parsed, problems)
}

/// Stores block `name` into `parsed.config`, or returns its problems. A list keeps the
/// entries that parsed even when others did not.
fn read_block(parsed: &mut Parsed, name: &'static str, value: Value) -> Result<(), Vec<Problem>> {
    // An empty block (`daemon:` with nothing under it) means the defaults.
    if value.is_null() {
        return Ok(());
    }
    let config = &mut parsed.config;
    match name {
        "daemon" => config.daemon = plain(value, name)?,
        "audit" => config.audit = tagged(&value, name)?,
        "local_ca" => config.local_ca = plain(value, name)?,
        "namecheap" => config.namecheap = Some(plain(value, name)?),
        "cloudflare" => config.cloudflare = Some(plain(value, name)?),
        "acme" => config.acme = Some(plain(value, name)?),
        "dsm" => config.dsm = Some(plain(value, name)?),
        "cluster" => config.cluster = Some(plain(value, name)?),
        "alerts" => {
            let list = list(value, name, tagged::<AlertSpec>);
            (config.alerts, parsed.alert_rows) = (list.entries, list.rows);
            return none_or_err(list.problems);
        }
        // `certs`, the one block left in `BLOCKS`.
        _ => {
            let list = list(value, name, cert);
            (config.certs, parsed.cert_rows) = (list.entries, list.rows);
            return none_or_err(list.problems);
        }
    }
    Ok(())
}

/// A block with no `kind`-tagged fields: serde's path is exact.
fn plain<T: DeserializeOwned>(value: Value, path: &str) -> Result<T, Vec<Problem>> {
    serde_path_to_error::deserialize(value).map_err(|err| vec![serde_problem(path, &err)])
}

/// A `kind`-tagged block: on failure, look inside the variant for the real path.
fn tagged<T: Tagged + DeserializeOwned>(value: &Value, path: &str) -> Result<T, Vec<Problem>> {
    serde_path_to_error::deserialize(value.clone()).map_err(|err| {
        let problems = tagged_problems::<T>(value, path);
        if problems.is_empty() {
            vec![serde_problem(path, &err)]
        } else {
            problems
        }
    })
}

/// The entries of a list that parsed, the rows they came from, and the problems of the rest.
struct List<T> {
    entries: Vec<T>,
    rows: Vec<usize>,
    problems: Vec<Problem>,
}

/// A list whose entries are deserialized one by one.
fn list<T>(
    value: Value,
    path: &str,
    entry: impl Fn(&Value, &str) -> Result<T, Vec<Problem>>,
) -> List<T> {
    let mut list = List {
        entries: Vec::new(),
        rows: Vec::new(),
        problems: Vec::new(),
    };
    let Value::Sequence(items) = value else {
        list.problems.push(
            Problem::value(path, format!("`{path}` must be a list"))
                .hint("write one `- ` entry per line under it, or `[]` for none"),
        );
        return list;
    };
    for (row, item) in items.iter().enumerate() {
        match entry(item, &field_path::item(path, row)) {
            Ok(value) => {
                list.entries.push(value);
                list.rows.push(row);
            }
            Err(found) => list.problems.extend(found),
        }
    }
    list
}

/// `Err` when there are problems.
fn none_or_err(problems: Vec<Problem>) -> Result<(), Vec<Problem>> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// One cert. serde stops at its first error; the tagged fields are checked on their own too,
/// so one cert can report a bad `ca` and a bad `install` together.
fn cert(value: &Value, path: &str) -> Result<CertSpec, Vec<Problem>> {
    let err = match serde_path_to_error::deserialize(value.clone()) {
        Ok(cert) => return Ok(cert),
        Err(err) => err,
    };
    let serde_field = match err.path().iter().next() {
        Some(serde_path_to_error::Segment::Map { key }) => Some(key.as_str()),
        _ => None,
    };
    let mut problems = Vec::new();
    let mut covered = false;
    for (field, check) in CERT_TAGGED_FIELDS {
        // `dcv` is optional; an empty one is the same as none.
        let Some(node) = value.get(field).filter(|n| !n.is_null() || *field != "dcv") else {
            continue;
        };
        let found = check(node, &field_path::child(path, field));
        covered |= serde_field == Some(*field) && !found.is_empty();
        problems.extend(found);
    }
    if !covered {
        problems.push(serde_problem(path, &err));
    }
    Err(problems)
}

fn unknown_block(key: &Value) -> Problem {
    let name = scalar_text(key);
    let message = format!(
        "unknown top-level block `{name}`{}",
        did_you_mean(&name, BLOCKS)
    );
    Problem::key(field_path::child("", &name), message)
        .hint(format!("top-level blocks are {}", quoted_list(BLOCKS)))
}

/// The config every block starts from: what an omitted block means (the same defaults the
/// schema's `#[serde(default)]` attributes use).
fn empty_config() -> Config {
    Config {
        daemon: DaemonConfig::default(),
        audit: AuditConfig::default(),
        local_ca: LocalCaConfig::default(),
        namecheap: None,
        cloudflare: None,
        acme: None,
        dsm: None,
        cluster: None,
        alerts: Vec::new(),
        certs: Vec::new(),
    }
}
