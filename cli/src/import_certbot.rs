//! `rota import certbot [--dir /etc/letsencrypt]`: turns certbot's lineages into a `certs:`
//! block for rota.yaml. Each lineage keeps its key (`key_path` is the lineage's `privkey.pem`,
//! so key pinning survives) and its place on disk (a filesystem install into `live/NAME`
//! that keeps certbot's archive layout, so certbot and anything reading `live/` carry on).
//! certbot's renewal files are ConfigObj text: `key = value` lines, `[section]` and
//! `[[subsection]]` headers, lists written with commas. The domains are not in them: they are
//! read from the lineage's certificate.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::exit::CliError;

/// One `renewal/NAME.conf`: its top-level keys and its sections, flattened to
/// `section.key` (`renewalparams.authenticator`, `webroot_map.example.com`).
#[derive(Debug, Default)]
struct RenewalConf {
    values: BTreeMap<String, String>,
}

impl RenewalConf {
    fn parse(text: &str) -> Self {
        let mut section = String::new();
        let mut values = BTreeMap::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with('[') {
                line.trim_matches(|c| c == '[' || c == ']')
                    .clone_into(&mut section);
                continue;
            }
            if let Some((key, value)) = line.split_once('=') {
                let key = if section.is_empty() {
                    key.trim().to_owned()
                } else {
                    format!("{section}.{}", key.trim())
                };
                values.insert(key, value.trim().to_owned());
            }
        }
        Self { values }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A ConfigObj list (`a, b,`) as its items.
    fn list(&self, key: &str) -> Vec<String> {
        self.get(key)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `[[webroot_map]]`: domain → document root.
    fn webroot_map(&self) -> BTreeMap<&str, &str> {
        self.values
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("webroot_map.")?, v.as_str())))
            .collect()
    }
}

/// What one lineage becomes.
struct Lineage {
    name: String,
    conf: RenewalConf,
    domains: Vec<String>,
}

/// How a certbot authenticator maps onto rota's DCV: the `dcv:` flow mapping, and a comment
/// when the mapping is not exact.
fn dcv_for(lineage: &Lineage) -> (String, Option<String>) {
    let conf = &lineage.conf;
    let plugin = conf.get("renewalparams.authenticator").unwrap_or("webroot");
    let webroot = |dir: &str| format!("{{ kind: webroot, directory: {} }}", scalar(dir));
    match plugin {
        "webroot" => {
            let map = conf.webroot_map();
            let mut roots: Vec<&str> = lineage
                .domains
                .iter()
                .filter_map(|d| map.get(d.as_str()).copied())
                .collect();
            let paths = conf.list("renewalparams.webroot_path");
            roots.extend(paths.iter().map(String::as_str));
            roots.dedup();
            match roots.as_slice() {
                [] => (
                    webroot("/var/www/html"),
                    Some(
                        "certbot named no webroot: set the document root your web server serves"
                            .into(),
                    ),
                ),
                [one] => (webroot(one), None),
                [first, ..] => (
                    webroot(first),
                    Some(format!(
                        "certbot used several webroots ({}); rota uses one per cert: serve \
                         /.well-known/acme-challenge/ of every domain from this one, or split the cert",
                        roots.join(", ")
                    )),
                ),
            }
        }
        "standalone" => (
            webroot("/var/www/html"),
            Some(
                "certbot answered HTTP-01 itself (standalone); rota writes the answer into a \
                  directory: serve this one on port 80 at /.well-known/acme-challenge/"
                    .into(),
            ),
        ),
        "nginx" | "apache" => (
            webroot("/var/www/html"),
            Some(format!(
                "certbot's {plugin} plugin answered through {plugin}; set the document root it \
                 serves for /.well-known/acme-challenge/"
            )),
        ),
        "dns-cloudflare" => (
            "{ kind: cloudflare }".into(),
            Some("add the `cloudflare:` account block (an API token with Zone.DNS:Edit)".into()),
        ),
        other => (
            webroot("/var/www/html"),
            Some(format!(
                "certbot plugin `{other}` has no rota counterpart; HTTP-01 through a webroot is \
                 the closest: set the document root your web server serves"
            )),
        ),
    }
}

/// A YAML scalar, quoted only when it must be.
fn scalar(text: &str) -> String {
    serde_yaml::to_string(text).map_or_else(|_| format!("{text:?}"), |s| s.trim_end().to_owned())
}

/// A cert id from a lineage name: certbot's names are domain-like (`example.com-0001`).
fn cert_id(name: &str) -> String {
    let id: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    id.trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// The SANs (DNS names) of the PEM certificate at `path`.
fn domains_of(path: &Path) -> Result<Vec<String>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (_, block) = x509_parser::pem::parse_x509_pem(&pem)
        .map_err(|e| format!("{} is not a PEM certificate: {e}", path.display()))?;
    let cert = block
        .parse_x509()
        .map_err(|e| format!("{} is not a certificate: {e}", path.display()))?;
    let names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        return Err(format!("{} names no DNS domains", path.display()));
    }
    Ok(names)
}

fn read_lineage(conf_path: &Path) -> Result<Lineage, String> {
    let name = conf_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let text = std::fs::read_to_string(conf_path)
        .map_err(|e| format!("cannot read {}: {e}", conf_path.display()))?;
    let conf = RenewalConf::parse(&text);
    for key in ["cert", "privkey", "archive_dir"] {
        if conf.get(key).is_none() {
            return Err(format!("{} has no `{key}`", conf_path.display()));
        }
    }
    let domains = domains_of(Path::new(conf.get("cert").unwrap_or_default()))?;
    Ok(Lineage {
        name,
        conf,
        domains,
    })
}

/// The `certs:` entry of one lineage.
fn cert_entry(lineage: &Lineage, out: &mut String) {
    let conf = &lineage.conf;
    let cert = Path::new(conf.get("cert").unwrap_or_default());
    let live = cert.parent().unwrap_or(Path::new("/"));
    let (dcv, note) = dcv_for(lineage);
    let domains: Vec<String> = lineage.domains.iter().map(|d| scalar(d)).collect();
    let _ = writeln!(out, "  # certbot lineage `{}`", lineage.name);
    let _ = writeln!(out, "  - id: {}", scalar(&cert_id(&lineage.name)));
    let _ = writeln!(out, "    domains: [{}]", domains.join(", "));
    let _ = writeln!(
        out,
        "    key_path: {}   # certbot's key: rota keeps it",
        scalar(conf.get("privkey").unwrap_or_default())
    );
    let _ = writeln!(out, "    ca: {{ kind: acme }}");
    if let Some(note) = note {
        let _ = writeln!(out, "    # {note}");
    }
    let _ = writeln!(out, "    dcv: {dcv}");
    let _ = writeln!(out, "    install:");
    let _ = writeln!(out, "      kind: filesystem");
    let _ = writeln!(
        out,
        "      directory: {}",
        scalar(&live.display().to_string())
    );
    let _ = writeln!(
        out,
        "      certbot_archive: {}",
        scalar(conf.get("archive_dir").unwrap_or_default())
    );
}

/// The `certs:` block for every lineage under `dir/renewal`, with a header naming the ACME
/// servers they renewed against; a lineage that cannot be read is reported and left out.
pub(crate) fn import(dir: &Path) -> Result<(String, Vec<String>), CliError> {
    let renewal = dir.join("renewal");
    let mut confs: Vec<PathBuf> = std::fs::read_dir(&renewal)
        .map_err(|e| {
            CliError::failed(format!(
                "cannot read {}: {e} (is --dir certbot's config directory?)",
                renewal.display()
            ))
        })?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .collect();
    confs.sort();
    let mut lineages = Vec::new();
    let mut problems = Vec::new();
    for conf in &confs {
        match read_lineage(conf) {
            Ok(lineage) => lineages.push(lineage),
            Err(problem) => problems.push(problem),
        }
    }
    let mut servers: Vec<&str> = lineages
        .iter()
        .filter_map(|l| l.conf.get("renewalparams.server"))
        .collect();
    servers.sort_unstable();
    servers.dedup();
    let mut out = format!("# Imported from certbot's lineages in {}.\n", dir.display());
    for server in &servers {
        let _ = writeln!(
            out,
            "# certbot renewed against {server}: set `acme.directory_url` to it."
        );
    }
    out.push_str("certs:\n");
    for lineage in &lineages {
        cert_entry(lineage, &mut out);
    }
    if lineages.is_empty() {
        out = out.replace("certs:\n", "certs: []\n");
    }
    Ok((out, problems))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_files_parse_as_certbot_writes_them() {
        let conf = RenewalConf::parse(
            "# renew_before_expiry = 30 days\nversion = 2.11.0\n\
             archive_dir = /etc/letsencrypt/archive/a.test\n\
             cert = /etc/letsencrypt/live/a.test/cert.pem\n\n\
             [renewalparams]\naccount = 0123\nauthenticator = webroot\n\
             webroot_path = /srv/a, /srv/b,\nserver = https://acme.test/dir\n\
             [[webroot_map]]\na.test = /srv/a\nwww.a.test = /srv/b\n",
        );
        assert_eq!(
            conf.get("archive_dir"),
            Some("/etc/letsencrypt/archive/a.test")
        );
        assert_eq!(conf.get("renewalparams.authenticator"), Some("webroot"));
        assert_eq!(
            conf.list("renewalparams.webroot_path"),
            ["/srv/a", "/srv/b"]
        );
        assert_eq!(conf.webroot_map().get("www.a.test"), Some(&"/srv/b"));
        let lineage = Lineage {
            name: "a.test".into(),
            conf,
            domains: vec!["a.test".into(), "www.a.test".into()],
        };
        let (dcv, note) = dcv_for(&lineage);
        assert_eq!(dcv, "{ kind: webroot, directory: /srv/a }");
        assert!(note.expect("two webroots").contains("/srv/a, /srv/b"));
    }

    #[test]
    fn plugins_map_to_the_closest_solver_with_a_comment() {
        for (plugin, dcv, note) in [
            ("standalone", "webroot", Some("standalone")),
            ("nginx", "webroot", Some("nginx plugin")),
            ("dns-cloudflare", "cloudflare", Some("cloudflare:")),
            (
                "dns-route53",
                "webroot",
                Some("`dns-route53` has no rota counterpart"),
            ),
        ] {
            let lineage = Lineage {
                name: "a".into(),
                conf: RenewalConf::parse(&format!("[renewalparams]\nauthenticator = {plugin}\n")),
                domains: vec!["a.test".into()],
            };
            let (got, got_note) = dcv_for(&lineage);
            assert!(got.contains(dcv), "{plugin}: {got}");
            let got_note = got_note.unwrap_or_default();
            assert!(
                got_note.contains(note.unwrap_or_default()),
                "{plugin}: {got_note}"
            );
        }
    }

    #[test]
    fn lineage_names_become_valid_cert_ids() {
        for (name, id) in [
            ("example.com", "example.com"),
            ("example.com-0001", "example.com-0001"),
            ("*.x", "x"),
        ] {
            assert_eq!(cert_id(name), id);
            assert!(rota_api::CertId::new(id).is_ok());
        }
    }
}
