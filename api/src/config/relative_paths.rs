//! Makes every relative filesystem path in the config relative to the config file's directory,
//! so that a config means the same whatever directory rotad was started from. Names that only
//! look like paths (HAProxy's `cert_storage_name`) are left alone.

use std::path::{Path, PathBuf};

use crate::clean_path::join_clean;

use super::blocks::Parsed;
use super::error::Problem;
use super::field_path::{child, item};
use super::schema::{AlertSpec, AuditConfig, CertSpec, DcvSpec, InstallSpec};
use crate::names::SecretSource;

/// Rebases the relative paths of `parsed` onto `base`; refuses empty paths, which would
/// otherwise silently mean the config directory itself.
pub(crate) fn resolve_relative(parsed: &mut Parsed, base: &Path) -> Vec<Problem> {
    let mut rebase = Rebase {
        base,
        problems: Vec::new(),
    };
    let config = &mut parsed.config;
    let daemon = &mut config.daemon;
    rebase.path("daemon.database_path", &mut daemon.database_path);
    rebase.path("daemon.socket_path", &mut daemon.socket_path);
    for (i, allowed) in daemon.allowed_paths.iter_mut().enumerate() {
        rebase.path(&item("daemon.allowed_paths", i), allowed);
    }
    rebase.secret(daemon.api_token_file.as_mut());
    if let Some(directory) = &mut config.local_ca.directory {
        rebase.path("local_ca.directory", directory);
    }
    if let Some(namecheap) = &mut config.namecheap {
        rebase.secret(Some(&mut namecheap.api_key_file));
        if let Some(bundle) = &mut namecheap.ca_bundle_file {
            rebase.path("namecheap.ca_bundle_file", bundle);
        }
    }
    if let Some(cloudflare) = &mut config.cloudflare {
        rebase.secret(Some(&mut cloudflare.api_token_file));
        if let Some(bundle) = &mut cloudflare.ca_bundle_file {
            rebase.path("cloudflare.ca_bundle_file", bundle);
        }
    }
    if let Some(acme) = &mut config.acme {
        rebase.path(
            "acme.account_credentials_file",
            &mut acme.account_credentials_file,
        );
        if let Some(bundle) = &mut acme.ca_bundle_file {
            rebase.path("acme.ca_bundle_file", bundle);
        }
        if let Some(eab) = &mut acme.external_account_binding {
            rebase.secret(Some(&mut eab.hmac_key_file));
        }
    }
    if let Some(dsm) = &mut config.dsm {
        rebase.secret(Some(&mut dsm.password_file));
        rebase.secret(dsm.device_token_file.as_mut());
        if let Some(bundle) = &mut dsm.ca_bundle_file {
            rebase.path("dsm.ca_bundle_file", bundle);
        }
    }
    if let Some(kubeconfig) = config
        .cluster
        .as_mut()
        .and_then(|c| c.kubeconfig_path.as_mut())
    {
        rebase.path("cluster.kubeconfig_path", kubeconfig);
    }
    match &mut config.audit {
        AuditConfig::Sqlite(_) => {}
        AuditConfig::Surrealdb(surreal) => rebase.secret(surreal.password_file.as_mut()),
    }
    for (row, alert) in parsed.alert_rows.iter().zip(&mut config.alerts) {
        match alert {
            AlertSpec::Email(email) => {
                rebase.secret(email.password_file.as_mut());
                if let Some(ca_file) = &mut email.ca_file {
                    rebase.path(&child(&item("alerts", *row), "ca_file"), ca_file);
                }
            }
            AlertSpec::Webhook(webhook) => rebase.secret(webhook.bearer_token_file.as_mut()),
        }
    }
    for (row, cert) in parsed.cert_rows.iter().zip(&mut config.certs) {
        rebase.cert(&item("certs", *row), cert);
    }
    rebase.problems
}

struct Rebase<'a> {
    base: &'a Path,
    problems: Vec<Problem>,
}

impl Rebase<'_> {
    fn path(&mut self, field: &str, path: &mut PathBuf) {
        if path.as_os_str().is_empty() {
            self.problems.push(
                Problem::value(field, "the path is empty")
                    .hint("give a path; a relative one is taken from the config file's directory"),
            );
        } else if path.is_relative() {
            *path = join_clean(self.base, path);
        }
    }

    fn secret(&self, source: Option<&mut SecretSource>) {
        if let Some(source) = source {
            *source = source.relative_to(self.base);
        }
    }

    fn cert(&mut self, path: &str, cert: &mut CertSpec) {
        self.path(&child(path, "key_path"), &mut cert.key_path);
        let dcv = child(path, "dcv");
        match &mut cert.dcv {
            Some(DcvSpec::Webroot(webroot)) => {
                self.path(&child(&dcv, "directory"), &mut webroot.directory);
            }
            Some(DcvSpec::Rfc2136(rfc2136)) => {
                self.secret(Some(&mut rfc2136.tsig_secret_file));
            }
            Some(DcvSpec::Namecheap(_) | DcvSpec::Cloudflare(_)) | None => {}
        }
        let install = child(path, "install");
        let directory = child(&install, "directory");
        match &mut cert.install {
            InstallSpec::Filesystem(fs) => {
                self.path(&directory, &mut fs.directory);
                if let Some(archive) = &mut fs.certbot_archive {
                    self.path(&child(&install, "certbot_archive"), archive);
                }
                self.secret(fs.pkcs12_password_file.as_mut());
            }
            InstallSpec::Nginx(nginx) => {
                self.path(&directory, &mut nginx.directory);
                self.secret(nginx.pkcs12_password_file.as_mut());
            }
            InstallSpec::Haproxy(haproxy) => {
                self.path(&directory, &mut haproxy.directory);
                self.secret(haproxy.pkcs12_password_file.as_mut());
                self.path(&child(&install, "socket_path"), &mut haproxy.socket_path);
            }
            InstallSpec::K8sSecret(k8s) => {
                if let Some(kubeconfig) = &mut k8s.kubeconfig_path {
                    self.path(&child(&install, "kubeconfig_path"), kubeconfig);
                }
            }
            InstallSpec::Dsm(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::blocks::deserialize_blocks;

    /// These backends are refused later in this build, so check their paths here directly.
    #[test]
    fn every_backend_path_is_rebased_but_haproxy_names_are_not() {
        let yaml = concat!(
            "certs:\n",
            "  - { id: a, domains: [a.t], key_path: a.key, ca: { kind: local },\n",
            "      dcv: { kind: webroot, directory: www },\n",
            "      install: { kind: nginx, directory: nginx } }\n",
            "  - { id: b, domains: [b.t], key_path: /abs/b.key, ca: { kind: local },\n",
            "      install: { kind: haproxy, directory: hap, socket_path: admin.sock,\n",
            "                 cert_storage_name: certs/b.pem } }\n",
            "  - { id: c, domains: [c.t], key_path: c.key, ca: { kind: local },\n",
            "      install: { kind: k8s_secret, namespace: n, secret_name: s, kubeconfig_path: kube } }\n",
        );
        let (mut parsed, problems) = deserialize_blocks(serde_yaml::from_str(yaml).unwrap());
        assert_eq!(problems, []);
        assert_eq!(resolve_relative(&mut parsed, Path::new("/etc/rota")), []);
        let certs = &parsed.config.certs;
        let Some(DcvSpec::Webroot(webroot)) = &certs[0].dcv else {
            panic!()
        };
        assert_eq!(webroot.directory, Path::new("/etc/rota/www"));
        let InstallSpec::Nginx(nginx) = &certs[0].install else {
            panic!()
        };
        assert_eq!(nginx.directory, Path::new("/etc/rota/nginx"));
        assert_eq!(certs[1].key_path, Path::new("/abs/b.key"));
        let InstallSpec::Haproxy(haproxy) = &certs[1].install else {
            panic!()
        };
        assert_eq!(haproxy.directory, Path::new("/etc/rota/hap"));
        assert_eq!(haproxy.socket_path, Path::new("/etc/rota/admin.sock"));
        assert_eq!(
            haproxy.cert_storage_name, "certs/b.pem",
            "an HAProxy name, not a path"
        );
        let InstallSpec::K8sSecret(k8s) = &certs[2].install else {
            panic!()
        };
        assert_eq!(
            k8s.kubeconfig_path.as_deref(),
            Some(Path::new("/etc/rota/kube"))
        );
    }
}

#[cfg(test)]
mod join_tests {
    use super::*;

    #[test]
    fn dot_segments_are_resolved_lexically() {
        for (base, rel, want) in [
            ("/etc/rota", "keys/a.key", "/etc/rota/keys/a.key"),
            ("/etc/rota", "../state/rota.db", "/etc/state/rota.db"),
            ("/etc/rota", "./a/../b", "/etc/rota/b"),
            ("/", "../../x", "/x"),
            ("rel/dir", "../../../x", "../x"),
        ] {
            assert_eq!(
                join_clean(Path::new(base), Path::new(rel)),
                Path::new(want),
                "{base} + {rel}"
            );
        }
    }
}
