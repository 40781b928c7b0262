//! Semantic checks on the typed config: what serde cannot see (references between blocks,
//! numbers out of their range, settings that only make sense together). Each check
//! returns problems by field path; blocks that failed to parse are skipped, their problem
//! is already reported.

use std::collections::{HashMap, HashSet};

use super::access::check_access;
use super::availability::check_availability;
use super::blocks::Parsed;
use super::error::Problem;
use super::field_path::{child, item};
use super::interpolate::EnvLookup;
use super::locate::PositionIndex;
use super::range_check::check_ranges;
use super::schema::{
    AlertSpec, AuditConfig, CaSpec, CertSpec, ClusterConfig, Config, Coordinator,
    DEFAULT_LEASE_NAME, DaemonConfig, DcvSpec, FileOutputs, InstallSpec, KeyRotation, OutputFormat,
    Rfc2136Dcv, Tagged,
};
use super::secrets::check_secrets;
use crate::names::CertId;

/// Every semantic problem of `parsed`; `index` tells which fields were written in the file.
pub(crate) fn validate(parsed: &Parsed, index: &PositionIndex, env: EnvLookup<'_>) -> Vec<Problem> {
    let config = &parsed.config;
    let mut found = Vec::new();
    if parsed.usable("daemon") {
        check_daemon(&config.daemon, &mut found);
    }
    if parsed.usable("local_ca") {
        check_local_ca(parsed, index, &mut found);
    }
    if let Some(cluster) = &config.cluster {
        let audit = parsed.usable("audit").then_some(&config.audit);
        check_cluster(cluster, audit, &mut found);
        if cluster.enabled {
            check_cluster_keys(parsed, &mut found);
        }
    }
    if let Some(acme) = &config.acme {
        let example = "https://acme-v02.api.letsencrypt.org/directory";
        check_url(
            "acme.directory_url",
            &acme.directory_url,
            example,
            &mut found,
        );
        if let Some(url) = &acme.staging_directory_url {
            let example = super::schema::LETS_ENCRYPT_STAGING;
            check_url("acme.staging_directory_url", url, example, &mut found);
        }
    }
    if let Some(dsm) = &config.dsm {
        check_url(
            "dsm.url",
            &dsm.url,
            "https://nas.home.arpa:5001",
            &mut found,
        );
    }
    if let Some(namecheap) = &config.namecheap
        && let Some(url) = &namecheap.api_url
    {
        let example = "https://api.sandbox.namecheap.com/xml.response";
        check_url("namecheap.api_url", url, example, &mut found);
    }
    if let Some(cloudflare) = &config.cloudflare
        && let Some(url) = &cloudflare.api_url
    {
        let example = "https://api.cloudflare.com/client/v4";
        check_url("cloudflare.api_url", url, example, &mut found);
    }
    check_unique_ids(parsed, &mut found);
    for (path, cert) in parsed.certs() {
        check_cert(&path, cert, &mut found);
        check_accounts(parsed, &path, cert, &mut found);
    }
    for (path, alert) in parsed.alerts() {
        check_alert(&path, alert, &mut found);
    }
    found.extend(check_access(parsed));
    found.extend(check_ranges(parsed));
    found.extend(check_secrets(parsed, env));
    found.extend(check_availability(parsed));
    found
}

/// Ids name certs in logs, the CLI and the store; the second use of one is the mistake.
fn check_unique_ids(parsed: &Parsed, found: &mut Vec<Problem>) {
    let mut first_use: HashMap<&CertId, String> = HashMap::new();
    for (path, cert) in parsed.certs() {
        if let Some(first) = first_use.get(&cert.id) {
            let message = format!("cert id `{}` is already used by {first}", cert.id);
            found.push(Problem::value(child(&path, "id"), message).hint(
                "give every cert its own id: it names the cert in logs, the CLI and the audit store",
            ));
        } else {
            first_use.insert(&cert.id, path);
        }
    }
}

fn check_daemon(daemon: &DaemonConfig, found: &mut Vec<Problem>) {
    let dns = &daemon.dns_propagation;
    for (i, server) in dns.nameservers.iter().enumerate() {
        if server.parse::<std::net::SocketAddr>().is_err() {
            found.push(
                Problem::value(
                    format!("daemon.dns_propagation.nameservers[{i}]"),
                    format!("`{server}` is not an `address:port` pair"),
                )
                .hint(
                    "write an IP address and a port, e.g. `192.0.2.53:53` or `[2001:db8::53]:53`",
                ),
            );
        }
    }
    let addr = daemon.listen_addr;
    if !addr.ip().is_loopback() && daemon.api_token_file.is_none() {
        found.push(
            Problem::value(
                "daemon.listen_addr",
                format!("`{addr}` is reachable from other hosts, so the API needs a bearer token, and `daemon.api_token_file` is not set"),
            )
            .hint("set `daemon.api_token_file` to a token file (or `env:VAR`), or listen on `127.0.0.1` behind a reverse proxy"),
        );
    }
}

/// The local CA's lifetime against the renewal threshold, per cert (either may be overridden
/// there): a local-CA cert due for renewal the moment it is issued would be renewed on every
/// sweep. The error points at the setting the operator wrote, the cert's own first.
fn check_local_ca(parsed: &Parsed, index: &PositionIndex, found: &mut Vec<Problem>) {
    let config = &parsed.config;
    if !parsed.usable("daemon") {
        return;
    }
    let mut global_reported = false;
    for (path, cert) in parsed.certs() {
        let Some(validity) = cert.local_validity_days(&config.local_ca) else {
            continue;
        };
        let threshold = cert.renew_before_days(&config.daemon);
        if validity == 0 || threshold < validity {
            continue;
        }
        let own_threshold = child(&path, "renew_before_days");
        let own_validity = child(&child(&path, "ca"), "validity_days");
        let at = if index.contains(&own_threshold) {
            own_threshold
        } else if index.contains(&own_validity) {
            own_validity
        } else if global_reported {
            continue;
        } else {
            global_reported = true;
            if index.contains("daemon.renew_threshold_days")
                || !index.contains("local_ca.validity_days")
            {
                "daemon.renew_threshold_days".to_owned()
            } else {
                "local_ca.validity_days".to_owned()
            }
        };
        found.push(
            Problem::value(
                at,
                format!(
                    "the renewal threshold ({threshold} days) must be smaller than the local CA's validity ({validity} days): \
                     every cert from the local CA would be due as soon as it is issued and be renewed forever"
                ),
            )
            .hint("lower `renew_before_days` (per cert) or `daemon.renew_threshold_days`, or raise `validity_days` in the cert's `ca:` block or `local_ca.validity_days` (90 by default)"),
        );
    }
}

/// `audit` is `None` when its block failed to parse.
fn check_cluster(cluster: &ClusterConfig, audit: Option<&AuditConfig>, found: &mut Vec<Problem>) {
    match cluster.coordinator {
        Coordinator::SurrealLock => check_surreal_lock(cluster, audit, found),
        Coordinator::KubernetesLease => check_kubernetes_lease(cluster, found),
    }
    if cluster.node_id.trim().is_empty() {
        found.push(
            Problem::value("cluster.node_id", "`node_id` is empty")
                .hint("give each node a unique name, e.g. `host-a`"),
        );
    }
}

/// In a cluster every node holds a copy of each cert's key, provisioned by the operator; a
/// key rota rotates on the leader would leave the followers' copies behind.
fn check_cluster_keys(parsed: &Parsed, found: &mut Vec<Problem>) {
    for (path, cert) in parsed.certs() {
        if cert.key.rotation != KeyRotation::Never {
            found.push(
                Problem::value(
                    child(&child(&path, "key"), "rotation"),
                    format!(
                        "`{}` rotates its key, but with `cluster.enabled: true` every node holds its own copy of the key, and a key rotated on the leader would not match the followers' copies",
                        cert.id
                    ),
                )
                .hint("set `key.rotation: never` (rotate by hand: replace `key_path` on every node, then `rota renew`), or set `cluster.enabled: false`"),
            );
        }
    }
}

/// The SurrealDB lock lives in the audit store, so every node must share a SurrealDB one;
/// the `Lease` settings would be ignored, so they are refused rather than silently dropped.
fn check_surreal_lock(
    cluster: &ClusterConfig,
    audit: Option<&AuditConfig>,
    found: &mut Vec<Problem>,
) {
    let lease_keys = [
        ("namespace", cluster.namespace.is_some()),
        ("lease_name", cluster.lease_name != DEFAULT_LEASE_NAME),
        ("kubeconfig_path", cluster.kubeconfig_path.is_some()),
    ];
    for (key, set) in lease_keys {
        if set {
            found.push(
                Problem::value(
                    child("cluster", key),
                    format!("`{key}` is only used by `coordinator: kubernetes_lease`"),
                )
                .hint("set `coordinator: kubernetes_lease` to keep the leader lease in a Kubernetes `Lease`, or remove this key"),
            );
        }
    }
    if cluster.enabled && audit.is_some_and(|a| !matches!(a, AuditConfig::Surrealdb(_))) {
        found.push(
            Problem::value(
                "cluster.enabled",
                "federation needs `audit: { kind: surrealdb }`: the leader lock and the issued certs live there",
            )
            .hint("add an `audit:` block of kind `surrealdb` shared by every node, set `coordinator: kubernetes_lease`, or set `cluster.enabled: false`"),
        );
    }
}

/// The `Lease` needs a namespace, and both names must be ones the API server accepts
/// (<https://kubernetes.io/docs/concepts/overview/working-with-objects/names/>): a namespace
/// is an RFC 1123 label, a `Lease` name an RFC 1123 subdomain.
fn check_kubernetes_lease(cluster: &ClusterConfig, found: &mut Vec<Problem>) {
    match &cluster.namespace {
        None => found.push(
            Problem::value(
                "cluster.namespace",
                "`coordinator: kubernetes_lease` needs the namespace of its `Lease`",
            )
            .hint("add `namespace:`, e.g. the namespace rotad runs in"),
        ),
        Some(namespace) if !is_dns_label(namespace) => found.push(
            Problem::value(
                "cluster.namespace",
                format!("`{namespace}` is not a Kubernetes namespace name"),
            )
            .hint("at most 63 lower-case letters, digits and `-`, starting and ending with a letter or digit"),
        ),
        Some(_) => {}
    }
    let name = &cluster.lease_name;
    if name.len() > 253 || !name.split('.').all(is_dns_label) {
        found.push(
            Problem::value(
                "cluster.lease_name",
                format!("`{name}` is not a Kubernetes object name"),
            )
            .hint(format!(
                "lower-case letters, digits, `-` and `.`, e.g. `{DEFAULT_LEASE_NAME}`"
            )),
        );
    }
}

/// An RFC 1123 label as Kubernetes checks it: 1–63 of `[a-z0-9-]`, alphanumeric at both ends.
fn is_dns_label(label: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    (1..=63).contains(&label.len())
        && label.chars().all(|c| alnum(c) || c == '-')
        && label.starts_with(alnum)
        && label.ends_with(alnum)
}

fn check_url(path: &str, url: &str, example: &str, found: &mut Vec<Problem>) {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        found.push(
            Problem::value(path, format!("`{url}` is not an http(s) URL"))
                .hint(format!("write the full URL, e.g. `{example}`")),
        );
    }
}

fn check_cert(path: &str, cert: &CertSpec, found: &mut Vec<Problem>) {
    let domains = child(path, "domains");
    if cert.domains.is_empty() {
        found.push(
            Problem::value(&domains, "a cert needs at least one domain")
                .hint("list the names it covers, e.g. `domains: [example.com, www.example.com]`"),
        );
    }
    let mut seen = HashSet::new();
    for (i, domain) in cert.domains.iter().enumerate() {
        if !seen.insert(domain) {
            found.push(
                Problem::value(item(&domains, i), format!("`{domain}` is listed twice"))
                    .hint("remove the repeated name (names are compared without case)"),
            );
        }
    }
    match &cert.dcv {
        None if cert.ca.needs_dcv() => found.push(
            Problem::value(
                child(path, "dcv"),
                format!("`ca: {}` must prove domain control, so this cert needs a `dcv:` block", cert.ca.kind()),
            )
            .hint("add e.g. `dcv: { kind: cloudflare }` (DNS-01) or `dcv: { kind: webroot, directory: /var/www/example }` (HTTP-01)"),
        ),
        None => {}
        Some(dcv) => check_dcv(path, cert, dcv, found),
    }
    if let Some(DcvSpec::Rfc2136(rfc2136)) = &cert.dcv {
        check_rfc2136(&child(path, "dcv"), rfc2136, found);
    }
    check_install(&child(path, "install"), &cert.install, found);
}

/// What serde cannot see in the installers that run commands or talk to a socket.
fn check_install(path: &str, install: &InstallSpec, found: &mut Vec<Problem>) {
    if let Some(outputs) = install.file_outputs() {
        check_formats(path, &outputs, found);
    }
    if let Some(hook) = install.post_command() {
        check_argv(
            path,
            "post_command",
            Some(hook.argv),
            "[systemctl, restart, myservice]",
            "leave it out to run nothing after an install",
            found,
        );
    }
    match install {
        InstallSpec::Nginx(nginx) => {
            check_argv(
                path,
                "test_command",
                nginx.test_command.as_deref(),
                "[/usr/sbin/nginx, -t]",
                "or leave it out for `[nginx, -t]`",
                found,
            );
            check_argv(
                path,
                "reload_command",
                nginx.reload_command.as_deref(),
                "[systemctl, reload, nginx]",
                "or leave it out for `[nginx, -s, reload]`",
                found,
            );
        }
        InstallSpec::Haproxy(haproxy) => {
            if let Some(why) = storage_name_problem(&haproxy.cert_storage_name) {
                found.push(
                    Problem::value(child(path, "cert_storage_name"), format!("`{}` {why}", haproxy.cert_storage_name))
                        .hint("write the absolute path HAProxy loads the cert from (its `crt` argument), e.g. `/etc/haproxy/certs/example.pem`: rota sends it over the admin socket and writes the combined PEM there so a restart keeps the new cert"),
                );
            }
        }
        InstallSpec::Dsm(dsm) if dsm.description.trim().is_empty() => {
            found.push(
                Problem::value(child(path, "description"), "`description` is empty")
                    .hint("name the certificate as DSM's Control Panel shows it, e.g. `description: My Public Site`; rota replaces the one with that label"),
            );
        }
        InstallSpec::Filesystem(_) | InstallSpec::Dsm(_) | InstallSpec::K8sSecret(_) => {}
    }
}

/// certbot's files are always written (rota reads `cert.pem` back), and a PKCS#12 file needs
/// its password.
fn check_formats(path: &str, outputs: &FileOutputs<'_>, found: &mut Vec<Problem>) {
    let formats = child(path, "formats");
    if !outputs.formats.contains(&OutputFormat::Pem) {
        found.push(
            Problem::value(&formats, "`formats` must include `pem`")
                .hint("certbot's four files are always written: rota reads `cert.pem` back to know what is installed; write e.g. `formats: [pem, pkcs12]`"),
        );
    }
    let pkcs12 = outputs.formats.contains(&OutputFormat::Pkcs12);
    match (pkcs12, outputs.pkcs12_password_file) {
        (true, None) => found.push(
            Problem::value(&formats, "`pkcs12` needs `pkcs12_password_file`")
                .hint("add `pkcs12_password_file: /etc/rota/secrets/p12.password` (or `env:VAR`) next to `formats`: cert.p12 is always encrypted"),
        ),
        (false, Some(_)) => found.push(
            Problem::value(child(path, "pkcs12_password_file"), "`pkcs12_password_file` is set but `formats` has no `pkcs12`")
                .hint("add `pkcs12` to `formats`, or remove the password"),
        ),
        _ => {}
    }
}

/// An argv list that names no program cannot run.
fn check_argv(
    path: &str,
    field: &str,
    argv: Option<&[String]>,
    example: &str,
    otherwise: &str,
    found: &mut Vec<Problem>,
) {
    if argv.is_some_and(|argv| argv.first().is_none_or(|p| p.trim().is_empty())) {
        found.push(
            Problem::value(
                child(path, field),
                format!("`{field}` has no command to run"),
            )
            .hint(format!(
                "give the argv as a list, e.g. `{example}`, {otherwise}"
            )),
        );
    }
}

/// Why `name` cannot be an HAProxy storage name rota writes and sends, if it cannot: the
/// admin socket splits commands at whitespace and `;` and unescapes `\`, so such a name
/// would be read as something else.
fn storage_name_problem(name: &str) -> Option<&'static str> {
    if !name.starts_with('/') {
        Some("is not an absolute path")
    } else if name.ends_with('/') {
        Some("names a directory, not a file")
    } else if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, ';' | '\\'))
    {
        Some(
            "contains whitespace, a control character, `;` or `\\`, which HAProxy's admin socket would not pass through",
        )
    } else {
        None
    }
}

/// A DNS-01-only CA, and wildcards (which only DNS-01 can prove), need a DNS-01 solver.
fn check_dcv(path: &str, cert: &CertSpec, dcv: &DcvSpec, found: &mut Vec<Problem>) {
    if dcv.is_dns01() {
        // RFC 8738 §7: an address has no zone for a TXT record; only HTTP-01 proves it.
        for (i, domain) in cert.domains.iter().enumerate() {
            if domain.ip().is_some() {
                found.push(
                    Problem::value(
                        item(&child(path, "domains"), i),
                        format!("IP address `{domain}` can only be validated by HTTP-01, but `dcv: {}` answers DNS-01", dcv.kind()),
                    )
                    .hint("use `dcv: { kind: webroot, directory: ... }` for certs that hold IP addresses, or move the address to a cert of its own"),
                );
            }
        }
        return;
    }
    let solver = format!("`dcv: {}` answers HTTP-01", dcv.kind());
    let dns_hint = "use a DNS-01 solver: `dcv: { kind: cloudflare }`, `dcv: { kind: namecheap }` or `dcv: { kind: rfc2136, ... }`";
    if matches!(cert.ca, CaSpec::Namecheap(_)) {
        found.push(
            Problem::value(
                child(path, "dcv.kind"),
                format!("`ca: namecheap` validates by DNS-01 only, but {solver}"),
            )
            .hint(dns_hint),
        );
    }
    for (i, domain) in cert.domains.iter().enumerate() {
        if domain.is_wildcard() {
            found.push(
                Problem::value(
                    item(&child(path, "domains"), i),
                    format!("wildcard `{domain}` can only be validated by DNS-01, but {solver}"),
                )
                .hint(format!(
                    "{dns_hint}; or list the host names instead of the wildcard"
                )),
            );
        }
    }
}

/// What serde cannot see in an RFC 2136 block: a zone is never a wildcard, and the key name
/// must be a DNS name, which is how it travels in the TSIG record.
fn check_rfc2136(path: &str, dcv: &Rfc2136Dcv, found: &mut Vec<Problem>) {
    if dcv.zone.is_wildcard() {
        found.push(
            Problem::value(child(path, "zone"), format!("zone `{}` is a wildcard", dcv.zone))
                .hint("write the zone's apex as the server's `zone` clause names it, e.g. `zone: example.com`"),
        );
    }
    if let Some(why) = key_name_problem(&dcv.tsig_key_name) {
        found.push(
            Problem::value(
                child(path, "tsig_key_name"),
                format!("`{}` {why}", dcv.tsig_key_name),
            )
            .hint("write the name of the server's `key` clause, e.g. `tsig_key_name: rota-update` for `key \"rota-update\" { ... };`"),
        );
    }
}

/// Why `name` cannot be a TSIG key name, if it cannot: it is sent as a DNS name.
fn key_name_problem(name: &str) -> Option<&'static str> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.is_empty() {
        Some("is empty")
    } else if bare.len() > 253 {
        Some("is longer than 253 characters")
    } else if bare.split('.').any(str::is_empty) {
        Some("has an empty label (two dots in a row, or a leading dot)")
    } else if bare.split('.').any(|label| label.len() > 63) {
        Some("has a label longer than 63 characters")
    } else if !bare
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Some("may only contain letters, digits, `-`, `_` and `.`")
    } else {
        None
    }
}

/// Each CA or DCV kind that talks to a vendor needs that vendor's top-level account block.
fn check_accounts(parsed: &Parsed, path: &str, cert: &CertSpec, found: &mut Vec<Problem>) {
    let ca = Account::for_ca(&cert.ca).map(|account| ("ca", cert.ca.kind(), account));
    let dcv = cert
        .dcv
        .as_ref()
        .and_then(|dcv| Some(("dcv", dcv.kind(), Account::for_dcv(dcv)?)));
    let install = Account::for_install(&cert.install)
        .map(|account| ("install", cert.install.kind(), account));
    for (surface, kind, account) in ca.into_iter().chain(dcv).chain(install) {
        let block = account.block();
        // A block that was written but failed to parse has its own problem already.
        if account.is_configured(&parsed.config) || !parsed.usable(block) {
            continue;
        }
        found.push(
            Problem::value(
                child(path, &format!("{surface}.kind")),
                format!("`{surface}: {kind}` needs the top-level `{block}:` account block, which is missing"),
            )
            .hint(format!("add at the top level: {}", account.example())),
        );
    }
}

/// A vendor account block at the top level of the config.
#[derive(Debug, Clone, Copy)]
enum Account {
    Acme,
    Namecheap,
    Cloudflare,
    Dsm,
}

impl Account {
    fn for_ca(ca: &CaSpec) -> Option<Self> {
        match ca {
            CaSpec::Local(_) => None,
            CaSpec::Namecheap(_) => Some(Self::Namecheap),
            CaSpec::Acme(_) => Some(Self::Acme),
        }
    }

    fn for_dcv(dcv: &DcvSpec) -> Option<Self> {
        match dcv {
            DcvSpec::Namecheap(_) => Some(Self::Namecheap),
            DcvSpec::Cloudflare(_) => Some(Self::Cloudflare),
            DcvSpec::Webroot(_) | DcvSpec::Rfc2136(_) => None,
        }
    }

    fn for_install(install: &InstallSpec) -> Option<Self> {
        matches!(install, InstallSpec::Dsm(_)).then_some(Self::Dsm)
    }

    fn block(self) -> &'static str {
        match self {
            Self::Acme => "acme",
            Self::Namecheap => "namecheap",
            Self::Cloudflare => "cloudflare",
            Self::Dsm => "dsm",
        }
    }

    fn is_configured(self, config: &Config) -> bool {
        match self {
            Self::Acme => config.acme.is_some(),
            Self::Namecheap => config.namecheap.is_some(),
            Self::Cloudflare => config.cloudflare.is_some(),
            Self::Dsm => config.dsm.is_some(),
        }
    }

    fn example(self) -> &'static str {
        match self {
            Self::Acme => {
                "`acme: { directory_url: https://acme-v02.api.letsencrypt.org/directory, \
                 account_credentials_file: /etc/rota/secrets/acme-account.json }`"
            }
            Self::Namecheap => {
                "`namecheap: { api_key_file: /etc/rota/secrets/namecheap-api.key, \
                 username: <user>, client_ip: <whitelisted IP> }`"
            }
            Self::Cloudflare => {
                "`cloudflare: { api_token_file: /etc/rota/secrets/cloudflare.token }`"
            }
            Self::Dsm => {
                "`dsm: { url: https://nas.home.arpa:5001, username: rota, \
                 password_file: /etc/rota/secrets/dsm.password }`"
            }
        }
    }
}

fn check_alert(path: &str, alert: &AlertSpec, found: &mut Vec<Problem>) {
    match alert {
        AlertSpec::Email(email) => {
            if email.to.is_empty() {
                found.push(
                    Problem::value(
                        child(path, "to"),
                        "an email alert needs at least one recipient",
                    )
                    .hint("e.g. `to: [oncall@example.com]`"),
                );
            }
        }
        AlertSpec::Webhook(hook) => {
            let example = "https://hooks.example.com/incoming/abc";
            check_url(&child(path, "url"), &hook.url, example, found);
        }
    }
}
