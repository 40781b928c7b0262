//! The settings that decide who may reach rotad and where a config may make it write: the
//! TCP listener's allowed hosts and TLS cert, the socket's group, and `daemon.allowed_paths`,
//! the directories every cert's key, webroot and install directory must lie under.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::blocks::Parsed;
use super::error::Problem;
use super::field_path::{child, item};
use super::schema::{
    CertSpec, Config, DaemonConfig, DcvSpec, FilesystemInstall, InstallSpec, Tagged,
};
use crate::clean_path::join_clean;
use crate::names::{CertId, DomainName};

/// Every problem with the access settings of `parsed`.
pub(crate) fn check_access(parsed: &Parsed) -> Vec<Problem> {
    let mut found = Vec::new();
    if !parsed.usable("daemon") {
        return found;
    }
    let daemon = &parsed.config.daemon;
    check_allowed_hosts(daemon, &mut found);
    check_socket_group(daemon, &mut found);
    if parsed.usable("certs") {
        found.extend(tls_problem(&parsed.config));
        found.extend(paths_outside(&daemon.allowed_paths, parsed.certs()));
    }
    found
}

fn check_allowed_hosts(daemon: &DaemonConfig, found: &mut Vec<Problem>) {
    for (i, host) in daemon.allowed_hosts.iter().enumerate() {
        let is_ip = host.parse::<IpAddr>().is_ok();
        let is_name = DomainName::new(host).is_ok_and(|name| !name.is_wildcard());
        if !is_ip && !is_name {
            found.push(
                Problem::value(
                    item("daemon.allowed_hosts", i),
                    format!("`{host}` is not a host name or an IP address"),
                )
                .hint("write the bare name a client puts in the Host header, without scheme, port or wildcard, e.g. `rota.example.com` or `192.0.2.10`"),
            );
        }
    }
}

fn check_socket_group(daemon: &DaemonConfig, found: &mut Vec<Problem>) {
    let Some(group) = &daemon.socket_group else {
        return;
    };
    let numeric = !group.is_empty() && group.chars().all(|c| c.is_ascii_digit());
    let name = group
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && group
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if (numeric && group.parse::<u32>().is_err()) || (!numeric && !name) {
        found.push(
            Problem::value(
                "daemon.socket_group",
                format!("`{group}` is not a group name or a numeric group id"),
            )
            .hint("name an existing group, e.g. `rota` (create it with `groupadd rota`), or give its gid"),
        );
    }
}

/// The TLS cert must be one rota manages and installs as PEM files rotad can read back.
pub(crate) fn tls_problem(config: &Config) -> Option<Problem> {
    let tls = config.daemon.tls.as_ref()?;
    let path = "daemon.tls.cert_id";
    let Some(cert) = config.certs.iter().find(|c| c.id == tls.cert_id) else {
        let ids: Vec<&str> = config.certs.iter().map(|c| c.id.as_str()).collect();
        let configured = if ids.is_empty() {
            "none".to_owned()
        } else {
            ids.join(", ")
        };
        return Some(
            Problem::value(path, format!("no cert `{}` in `certs:`", tls.cert_id)).hint(format!(
                "name the id of a cert rota manages (configured: {configured}); the TCP listener serves it until rotad restarts, so keep it while `daemon.tls` is in force"
            )),
        );
    };
    if cert.install.pem_directory().is_some() {
        return None;
    }
    Some(
        Problem::value(
            path,
            format!(
                "cert `{}` is installed by `{}`, which writes no `fullchain.pem` and `privkey.pem` for rotad to serve",
                cert.id,
                cert.install.kind()
            ),
        )
        .hint("pick a cert installed with `install: { kind: filesystem }`, `nginx` or `haproxy`"),
    )
}

/// The TLS listener reads its cert from the install directory it was bound with, so that
/// directory cannot move until rotad restarts (the listener would go on serving the old,
/// expiring cert).
pub(crate) fn tls_directory_moved(running: &Config, next: &Config) -> Option<Problem> {
    let tls = running.daemon.tls.as_ref()?;
    let (_, served) = served_directory(running, &tls.cert_id)?;
    let (row, moved) = served_directory(next, &tls.cert_id)?;
    if served == moved {
        return None;
    }
    Some(
        Problem::value(
            child(&item("certs", row), "install.directory"),
            format!(
                "the TCP listener serves cert `{}` from {} until rotad restarts, so its install directory cannot move before then",
                tls.cert_id,
                served.display()
            ),
        )
        .hint("keep the directory for now, or edit the file and restart rotad: the new directory is used from the start"),
    )
}

/// The row of cert `id` and the directory its PEM files are installed in.
fn served_directory<'a>(config: &'a Config, id: &CertId) -> Option<(usize, &'a Path)> {
    let row = config.certs.iter().position(|c| &c.id == id)?;
    Some((row, config.certs[row].install.pem_directory()?))
}

/// A problem for every path a cert writes that is not under one of `allowed` (an empty list
/// allows every path). The comparison is lexical, on cleaned absolute paths.
pub(crate) fn paths_outside<'a>(
    allowed: &[PathBuf],
    certs: impl Iterator<Item = (String, &'a CertSpec)>,
) -> Vec<Problem> {
    if allowed.is_empty() {
        return Vec::new();
    }
    let root = Path::new("/");
    let allowed: Vec<PathBuf> = allowed.iter().map(|a| join_clean(root, a)).collect();
    let listed: Vec<String> = allowed.iter().map(|a| a.display().to_string()).collect();
    let mut found = Vec::new();
    for (path, cert) in certs {
        for (field, written) in written_paths(cert) {
            let clean = join_clean(root, written);
            if allowed.iter().any(|a| clean.starts_with(a)) {
                continue;
            }
            found.push(
                Problem::value(
                    child(&path, field),
                    format!(
                        "`{}` is outside `daemon.allowed_paths` ({})",
                        clean.display(),
                        listed.join(", ")
                    ),
                )
                .hint("move it under one of those directories, or add its directory to `daemon.allowed_paths` by editing the file on the server (the list in force changes when rotad restarts)"),
            );
        }
    }
    found
}

/// The paths rotad writes for `cert`, with their field names inside the cert.
fn written_paths(cert: &CertSpec) -> Vec<(&'static str, &Path)> {
    let mut paths = vec![("key_path", cert.key_path.as_path())];
    if let Some(DcvSpec::Webroot(webroot)) = &cert.dcv {
        paths.push(("dcv.directory", &webroot.directory));
    }
    let install = match &cert.install {
        InstallSpec::Filesystem(fs) => Some(&fs.directory),
        InstallSpec::Nginx(nginx) => Some(&nginx.directory),
        InstallSpec::Haproxy(haproxy) => Some(&haproxy.directory),
        InstallSpec::Dsm(_) | InstallSpec::K8sSecret(_) => None,
    };
    paths.extend(install.map(|dir| ("install.directory", dir.as_path())));
    if let InstallSpec::Filesystem(FilesystemInstall {
        certbot_archive: Some(archive),
        ..
    }) = &cert.install
    {
        paths.push(("install.certbot_archive", archive));
    }
    if let InstallSpec::Haproxy(haproxy) = &cert.install {
        // The combined PEM, private key included, is written there too.
        let storage = Path::new(&haproxy.cert_storage_name);
        paths.push(("install.cert_storage_name", storage));
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema::{CaSpec, LocalCa};

    #[test]
    fn allowed_paths_compare_whole_components_after_dot_dot() {
        let cert = |key: &str| CertSpec {
            id: CertId::new("a").unwrap(),
            description: None,
            domains: vec![DomainName::new("a.test").unwrap()],
            key_path: PathBuf::from(key),
            key: crate::config::schema::KeySpec::default(),
            ca: CaSpec::Local(LocalCa::default()),
            dcv: None,
            install: InstallSpec::Filesystem(FilesystemInstall {
                directory: PathBuf::from("/srv/rota/a"),
                certbot_archive: None,
                formats: vec![crate::config::schema::OutputFormat::Pem],
                pkcs12_password_file: None,
                post_command: None,
                post_command_timeout_seconds: 60,
            }),
            renew_before_days: None,
        };
        let allowed = [PathBuf::from("/srv/rota")];
        for (key, inside, why) in [
            ("/srv/rota/keys/a.key", true, "below the allowed directory"),
            ("/srv/rota2/a.key", false, "a sibling that shares a prefix"),
            ("/srv/rota/../../etc/a.key", false, "`..` climbs out"),
            ("/srv/./rota/a.key", true, "`.` is dropped"),
        ] {
            let spec = cert(key);
            let found = paths_outside(&allowed, std::iter::once(("certs[0]".to_owned(), &spec)));
            assert_eq!(found.is_empty(), inside, "{key}: {why}: {found:?}");
        }
        let spec = cert("/anywhere/a.key");
        assert!(
            paths_outside(&[], std::iter::once(("certs[0]".to_owned(), &spec))).is_empty(),
            "no list allows every path"
        );
    }
}
