//! Malformed configs, one row each: every problem must come back with the line, column and
//! field path an operator needs to find it, and a message that says what is wrong.

use std::path::{Path, PathBuf};

use rota_api::config::{ConfigErrors, ConfigIssue, load_str_with_env};

/// A cert that is valid in this build, appended to rows about other blocks so that the row's
/// own lines come first.
macro_rules! ok_cert {
    () => {
        concat!(
            "certs:\n",
            "  - id: web\n",
            "    domains: [a.test]\n",
            "    key_path: web.key\n",
            "    ca: { kind: local }\n",
            "    install: { kind: filesystem, directory: out }\n",
        )
    };
}

/// An ACME cert proved by `dcv: rfc2136` with the given server, zone, key name, algorithm and
/// secret file; the dcv fields sit on lines 9 to 13.
macro_rules! rfc2136_cert {
    ($server:literal, $zone:literal, $key:literal, $algorithm:literal, $secret:literal) => {
        concat!(
            "acme: { directory_url: 'https://ca.test/dir', account_credentials_file: acct.json }\n",
            "certs:\n",
            "  - id: web\n",
            "    domains: [a.test]\n",
            "    key_path: k\n",
            "    ca: { kind: acme }\n",
            "    dcv:\n",
            "      kind: rfc2136\n",
            "      server: ",
            $server,
            "\n",
            "      zone: ",
            $zone,
            "\n",
            "      tsig_key_name: ",
            $key,
            "\n",
            "      tsig_algorithm: ",
            $algorithm,
            "\n",
            "      tsig_secret_file: ",
            $secret,
            "\n",
            "    install: { kind: filesystem, directory: out }\n",
        )
    };
}

/// One malformed config and the problem it must produce.
struct Row {
    why: &'static str,
    yaml: &'static str,
    /// How many problems in all (catches cascades and missed problems).
    count: usize,
    /// The problem under test: its path, a piece of its message, and where it points.
    path: &'static str,
    says: &'static str,
    line: usize,
    column: usize,
}

/// The extra problem a build without the `k8s` feature reports for `coordinator: kubernetes_lease`.
const K8S_OFF: usize = if cfg!(feature = "k8s") { 0 } else { 1 };

const fn row(
    why: &'static str,
    yaml: &'static str,
    count: usize,
    path: &'static str,
    says: &'static str,
    (line, column): (usize, usize),
) -> Row {
    Row {
        why,
        yaml,
        count,
        path,
        says,
        line,
        column,
    }
}

/// The environment the loader sees: no test touches the real one.
fn fake_env(name: &str) -> Option<String> {
    match name {
        "TOKEN" => Some("s3cret".into()),
        "HOST" => Some("example.com".into()),
        "BLANK" => Some(String::new()),
        _ => None,
    }
}

/// A config directory with a readable secret (`token`), an empty one (`empty`) and a TSIG key
/// (`tsig.key`, base64).
fn config_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
    std::fs::write(dir.path().join("empty"), "\n").unwrap();
    std::fs::write(dir.path().join("tsig.key"), "c2VjcmV0LXRzaWcta2V5\n").unwrap();
    let path = dir.path().join("rota.yaml");
    (dir, path)
}

fn load_errors(path: &Path, yaml: &str) -> ConfigErrors {
    match load_str_with_env(path, yaml.to_owned(), &fake_env) {
        Ok(_) => panic!("expected problems, the config loaded:\n{yaml}"),
        Err(errors) => errors,
    }
}

fn show(issues: &[ConfigIssue]) -> String {
    let lines: Vec<String> = issues.iter().map(|i| format!("  {i}")).collect();
    lines.join("\n")
}

#[rustfmt::skip]
const ROWS: &[Row] = &[
    // --- the document as a whole ---
    row("unclosed flow list is a syntax error at the next line",
        "daemon:\n  listen_addr: [a,\nb: 1\n", 1, "daemon.listen_addr", "YAML syntax error", (3, 1)),
    row("an unquoted ${VAR} inside a flow list breaks the YAML",
        "certs:\n  - id: web\n    domains: [www.${HOST}]\n", 1, "certs[0].domains", "YAML syntax error", (3, 20)),
    row("tabs cannot indent YAML; the parser points just past the tab",
        "daemon:\n\tlisten_addr: 127.0.0.1:7878\n", 1, "daemon", "tabs", (2, 2)),
    row("a duplicate key is reported at its second occurrence",
        concat!("daemon:\n  check_interval_seconds: 60\n  check_interval_seconds: 90\n", ok_cert!()),
        1, "daemon.check_interval_seconds", "duplicate key `check_interval_seconds`: it is already set on line 2", (3, 3)),
    row("a duplicate key inside a cert",
        "certs:\n  - id: a\n    id: b\n", 1, "certs[0].id", "duplicate key `id`", (3, 5)),
    row("an empty file",
        "", 1, "", "the config is empty", (1, 1)),
    row("a file of comments only is empty too",
        "# rota config\n# nothing yet\n", 1, "", "must at least list `certs:`", (1, 1)),
    row("two YAML documents",
        concat!(ok_cert!(), "---\ndaemon: {}\n"), 1, "", "more than one YAML document", (7, 1)),
    row("the top level must be a mapping",
        "- certs\n", 1, "", "must be a mapping of blocks", (1, 1)),
    row("an unknown top-level block, with a suggestion",
        concat!("deamon:\n  check_interval_seconds: 60\n", ok_cert!()),
        1, "deamon", "unknown top-level block `deamon`: did you mean `daemon`?", (1, 1)),
    row("`certs:` is required",
        "daemon:\n  check_interval_seconds: 60\n", 1, "", "no `certs:` list", (1, 1)),
    row("`certs` must be a list",
        "certs:\n  web: {}\n", 1, "certs", "must be a list", (2, 3)),
    row("a block must be a mapping",
        concat!("daemon: [1, 2]\n", ok_cert!()), 1, "daemon", "expected a mapping, found a list", (1, 9)),

    // --- certs: schema ---
    row("an unknown cert field points at the key, with a suggestion",
        "certs:\n  - id: web\n    domian: [a.test]\n", 1, "certs[0].domian", "did you mean `domains`?", (3, 5)),
    row("`registrar` was renamed in v0.6",
        "certs:\n  - id: web\n    registrar: { kind: cloudflare }\n", 1,
        "certs[0].registrar", "`registrar` was renamed to `dcv` in v0.6: rename the key", (3, 5)),
    row("an unknown `kind` points at its value and names the valid ones",
        "certs:\n  - id: web\n    domains: [a.test]\n    key_path: k\n    ca: { kind: acm }\n    install: { kind: filesystem, directory: out }\n",
        1, "certs[0].ca.kind", "unknown `ca` kind `acm`: did you mean `acme`?", (5, 17)),
    row("a missing `kind` points at the block",
        "certs:\n  - id: web\n    domains: [a.test]\n    key_path: k\n    ca: { kind: local }\n    install:\n      directory: out\n",
        1, "certs[0].install", "`install` has no `kind`", (7, 7)),
    row("a missing field inside a variant points at the variant's mapping",
        "certs:\n  - id: web\n    domains: [a.test]\n    key_path: k\n    ca: { kind: local }\n    install:\n      kind: filesystem\n",
        1, "certs[0].install", "missing required field `directory`", (7, 7)),
    row("a wrong type inside a variant gets the variant's inner path",
        "certs:\n  - id: web\n    domains: [a.test]\n    key_path: k\n    ca: { kind: local }\n    install:\n      kind: filesystem\n      directory: [out]\n",
        1, "certs[0].install.directory", "expected a path, found a list", (8, 18)),
    row("an unknown field inside a variant points at that key",
        "certs:\n  - id: web\n    domains: [a.test]\n    key_path: k\n    ca: { kind: local, ttl: 5 }\n    install: { kind: filesystem, directory: out }\n",
        1, "certs[0].ca.ttl", "unknown field `ttl`", (5, 24)),
    row("a scalar where a tagged block belongs",
        "certs:\n  - id: web\n    domains: [a.test]\n    key_path: k\n    ca: local\n    install: { kind: filesystem, directory: out }\n",
        1, "certs[0].ca", "`ca` must be a mapping with a `kind`, found `local`", (5, 9)),
    row("two bad tagged blocks in one cert are both reported",
        "certs:\n  - id: web\n    domains: [a.test]\n    key_path: k\n    ca: { kind: lokal }\n    install: { kind: file }\n",
        2, "certs[0].install.kind", "unknown `install` kind `file`", (6, 22)),
    row("a bad domain points at the list item",
        "certs:\n  - id: web\n    domains: [a.test, exa_mple.com]\n    key_path: k\n",
        1, "certs[0].domains[1]", "may only contain letters, digits", (3, 23)),
    row("a trailing dot on a domain",
        "certs:\n  - id: web\n    domains:\n      - example.com.\n    key_path: k\n",
        1, "certs[0].domains[0]", "ends with a dot", (4, 9)),
    row("a cert id must start with a letter or digit",
        "certs:\n  - id: -web\n", 1, "certs[0].id", "must start with a letter or a digit", (2, 9)),
    row("a numeric id must be quoted",
        "certs:\n  - id: 2024\n", 1, "certs[0].id", "expected text, found integer `2024`", (2, 9)),
    row("an empty key_path would mean the config directory",
        "certs:\n  - id: web\n    domains: [a.test]\n    key_path: ''\n    ca: { kind: local }\n    install: { kind: filesystem, directory: out }\n",
        1, "certs[0].key_path", "the path is empty", (4, 15)),

    // --- certs: semantics ---
    row("a cert needs a domain",
        "certs:\n  - id: web\n    domains: []\n    key_path: k\n    ca: { kind: local }\n    install: { kind: filesystem, directory: out }\n",
        1, "certs[0].domains", "at least one domain", (3, 14)),
    row("a domain listed twice (case-insensitively)",
        "certs:\n  - id: web\n    domains: [a.test, A.test]\n    key_path: k\n    ca: { kind: local }\n    install: { kind: filesystem, directory: out }\n",
        1, "certs[0].domains[1]", "`a.test` is listed twice", (3, 23)),
    row("a wildcard cannot be proven by webroot (HTTP-01)",
        "certs:\n  - id: web\n    domains: ['*.a.test']\n    key_path: k\n    ca: { kind: local }\n    dcv: { kind: webroot, directory: /var/www }\n    install: { kind: filesystem, directory: out }\n",
        1, "certs[0].domains[0]", "wildcard `*.a.test` can only be validated by DNS-01", (3, 15)),
    row("ids are unique; the second one is pointed at",
        concat!(ok_cert!(), "  - id: web\n    domains: [b.test]\n    key_path: b.key\n    ca: { kind: local }\n    install: { kind: filesystem, directory: b }\n"),
        1, "certs[1].id", "cert id `web` is already used by certs[0]", (7, 9)),
    row("an ACME cert needs a dcv block",
        "acme: { directory_url: 'https://ca.test/dir', account_credentials_file: acct.json }\ncerts:\n  - id: web\n    domains: [a.test]\n    key_path: k\n    ca: { kind: acme }\n    install: { kind: filesystem, directory: out }\n",
        1, "certs[0].dcv", "`ca: acme` must prove domain control, so this cert needs a `dcv:` block", (3, 5)),
    row("ca: acme needs the acme account block",
        "cloudflare: { api_token_file: token }\ncerts:\n  - id: web\n    domains: [a.test]\n    key_path: k\n    ca: { kind: acme }\n    dcv: { kind: cloudflare }\n    install: { kind: filesystem, directory: out }\n",
        1, "certs[0].ca.kind", "needs the top-level `acme:` account block", (6, 17)),
    row("dcv: cloudflare needs the cloudflare account block",
        "acme: { directory_url: 'https://ca.test/dir', account_credentials_file: acct.json }\ncerts:\n  - id: web\n    domains: [a.test]\n    key_path: k\n    ca: { kind: acme }\n    dcv: { kind: cloudflare }\n    install: { kind: filesystem, directory: out }\n",
        1, "certs[0].dcv.kind", "`dcv: cloudflare` needs the top-level `cloudflare:` account block", (7, 18)),
    row("the namecheap CA only does DNS-01",
        "namecheap: { api_key_file: token, username: u, client_ip: 192.0.2.1 }\ncerts:\n  - id: web\n    domains: [a.test]\n    key_path: k\n    ca: { kind: namecheap, ssl_id: 7 }\n    dcv: { kind: webroot, directory: /var/www }\n    install: { kind: filesystem, directory: out }\n",
        1, "certs[0].dcv.kind", "`ca: namecheap` validates by DNS-01 only", (7, 18)),
    row("namecheap's client_ip must be an IP address",
        concat!("namecheap: { api_key_file: token, username: u, client_ip: my-host }\n", ok_cert!()),
        1, "namecheap.client_ip", "not a valid IP address", (1, 59)),

    // --- dcv: rfc2136 ---
    row("an RFC 2136 server needs a port",
        rfc2136_cert!("ns1.a.test", "a.test", "rota", "hmac-sha256", "tsig.key"),
        1, "certs[0].dcv.server", "is not `host:port`", (9, 15)),
    row("a zone is written without the trailing dot",
        rfc2136_cert!("127.0.0.1:53", "a.test.", "rota", "hmac-sha256", "tsig.key"),
        1, "certs[0].dcv.zone", "ends with a dot", (10, 13)),
    row("a zone is never a wildcard",
        rfc2136_cert!("127.0.0.1:53", "'*.a.test'", "rota", "hmac-sha256", "tsig.key"),
        1, "certs[0].dcv.zone", "is a wildcard", (10, 13)),
    row("a TSIG key name travels as a DNS name",
        rfc2136_cert!("127.0.0.1:53", "a.test", "'rota key'", "hmac-sha256", "tsig.key"),
        1, "certs[0].dcv.tsig_key_name", "may only contain letters", (11, 22)),
    row("only the SHA-2 HMACs sign updates",
        rfc2136_cert!("127.0.0.1:53", "a.test", "rota", "hmac-md5", "tsig.key"),
        1, "certs[0].dcv.tsig_algorithm", "`hmac-md5` is not an accepted value", (12, 23)),
    row("a missing TSIG secret file",
        rfc2136_cert!("127.0.0.1:53", "a.test", "rota", "hmac-sha256", "missing.key"),
        1, "certs[0].dcv.tsig_secret_file", "missing.key` does not exist", (13, 25)),
    row("a TSIG secret that is not base64",
        rfc2136_cert!("127.0.0.1:53", "a.test", "rota", "hmac-sha256", "token"),
        1, "certs[0].dcv.tsig_secret_file", "is unusable: it is not base64", (13, 25)),
    row("a TSIG secret from an empty variable",
        rfc2136_cert!("127.0.0.1:53", "a.test", "rota", "hmac-sha256", "env:BLANK"),
        1, "certs[0].dcv.tsig_secret_file", "environment variable `BLANK` is empty", (13, 25)),

    // --- daemon ---
    row("a bad listen address",
        concat!("daemon:\n  listen_addr: localhost:7878\n", ok_cert!()), 1, "daemon.listen_addr", "not a valid socket address", (2, 16)),
    row("a non-loopback listen address needs an API token",
        concat!("daemon:\n  listen_addr: 0.0.0.0:7878\n", ok_cert!()), 1, "daemon.listen_addr", "`daemon.api_token_file` is not set", (2, 16)),
    row("an allowed host is a bare name, without a port",
        concat!("daemon:\n  allowed_hosts: [rota.example:443]\n", ok_cert!()), 1, "daemon.allowed_hosts[0]", "not a host name or an IP address", (2, 19)),
    row("an allowed host cannot be a wildcard",
        concat!("daemon:\n  allowed_hosts: ['*.example.com']\n", ok_cert!()), 1, "daemon.allowed_hosts[0]", "not a host name", (2, 19)),
    row("a socket group is a name or a gid",
        concat!("daemon:\n  socket_group: bad group\n", ok_cert!()), 1, "daemon.socket_group", "not a group name or a numeric group id", (2, 17)),
    row("TLS must name a configured cert",
        concat!("daemon:\n  tls: { cert_id: nope }\n", ok_cert!()), 1, "daemon.tls.cert_id", "no cert `nope` in `certs:`", (2, 19)),
    row("TLS needs a cert installed as PEM files rotad can read",
        "daemon:\n  tls: { cert_id: web }\ncerts:\n  - id: web\n    domains: [a.test]\n    key_path: web.key\n    ca: { kind: local }\n    install: { kind: dsm, description: d }\n",
        2, "daemon.tls.cert_id", "writes no `fullchain.pem`", (2, 19)),
    row("a key outside daemon.allowed_paths (and its install directory too)",
        concat!("daemon:\n  allowed_paths: [/srv/rota]\n", ok_cert!()), 2, "certs[0].key_path", "is outside `daemon.allowed_paths` (/srv/rota)", (6, 15)),
    row("a zero sweep interval",
        concat!("daemon:\n  check_interval_seconds: 0\n", ok_cert!()), 1, "daemon.check_interval_seconds", "must be from 1 to 604800, found 0", (2, 27)),
    row("a negative interval is out of range",
        concat!("daemon:\n  check_interval_seconds: -5\n", ok_cert!()), 1, "daemon.check_interval_seconds", "integer `-5` is out of range: expected a whole number from 1 to 604800", (2, 27)),
    row("a sweep interval that would overflow time arithmetic",
        concat!("daemon:\n  check_interval_seconds: 18446744073709551615\n", ok_cert!()), 1, "daemon.check_interval_seconds", "must be from 1 to 604800, found 18446744073709551615", (2, 27)),
    row("a threshold past any cert's lifetime",
        concat!("daemon:\n  renew_threshold_days: 4294967295\n", ok_cert!()), 2, "daemon.renew_threshold_days", "must be from 1 to 365, found 4294967295", (2, 25)),
    row("a number past 64 bits, which serde_yaml cannot hold",
        concat!("daemon:\n  check_interval_seconds: 99999999999999999999\n", ok_cert!()), 1, "", "larger than any setting takes", (2, 27)),
    row("a threshold past u32 names the config range, not u32's",
        concat!("daemon:\n  renew_threshold_days: 4294967296\n", ok_cert!()), 1, "daemon.renew_threshold_days", "expected a whole number from 1 to 365", (2, 25)),
    row("a semaphore of every permit there is",
        concat!("daemon:\n  max_concurrent_renewals: 18446744073709551615\n", ok_cert!()), 1, "daemon.max_concurrent_renewals", "must be from 1 to 1024", (2, 28)),
    row("a DNS wait that would overflow the deadline",
        concat!("daemon:\n  dns_propagation: { timeout_seconds: 18446744073709551615 }\n", ok_cert!()), 1, "daemon.dns_propagation.timeout_seconds", "must be from 1 to 86400", (2, 39)),
    row("a DNS poll interval of zero would spin",
        concat!("daemon:\n  dns_propagation: { interval_seconds: 0 }\n", ok_cert!()), 1, "daemon.dns_propagation.interval_seconds", "must be from 1 to 3600", (2, 40)),
    row("no renewals could ever run",
        concat!("daemon:\n  max_concurrent_renewals: 0\n", ok_cert!()), 1, "daemon.max_concurrent_renewals", "must be from 1 to 1024", (2, 28)),
    row("an unknown daemon field",
        concat!("daemon:\n  interval: 60\n", ok_cert!()), 1, "daemon.interval", "unknown field `interval`", (2, 3)),
    row("a local-CA cert inside the renewal window on issue would renew forever",
        concat!("daemon:\n  renew_threshold_days: 30\nlocal_ca:\n  validity_days: 30\n", ok_cert!()),
        1, "daemon.renew_threshold_days", "would be due as soon as it is issued", (2, 25)),
    row("the same, pointed at validity_days when only that is written",
        concat!("local_ca:\n  validity_days: 20\n", ok_cert!()),
        1, "local_ca.validity_days", "must be smaller than the local CA's validity (20 days)", (2, 18)),
    row("a cert's own threshold beyond its own local-CA validity points at the cert",
        "certs:\n  - id: web\n    domains: [a.test]\n    key_path: k\n    ca: { kind: local, validity_days: 7 }\n    renew_before_days: 10\n    install: { kind: filesystem, directory: out }\n",
        1, "certs[0].renew_before_days", "threshold (10 days) must be smaller than the local CA's validity (7 days)", (6, 24)),
    row("a cert's short validity under the daemon's threshold points at its ca block",
        "certs:\n  - id: web\n    domains: [a.test]\n    key_path: k\n    ca: { kind: local, validity_days: 7 }\n    install: { kind: filesystem, directory: out }\n",
        1, "certs[0].ca.validity_days", "threshold (30 days) must be smaller than the local CA's validity (7 days)", (5, 39)),
    row("validity_days is for the local CA only",
        "certs:\n  - id: web\n    domains: [a.test]\n    key_path: k\n    ca: { kind: acme, validity_days: 7 }\n    dcv: { kind: webroot, directory: w }\n    install: { kind: filesystem, directory: out }\n",
        1, "certs[0].ca.validity_days", "unknown field `validity_days`", (5, 23)),
    row("a key rotated after zero days",
        "certs:\n  - id: web\n    domains: [a.test]\n    key_path: k\n    key: { rotation: { after_days: 0 } }\n    ca: { kind: local }\n    install: { kind: filesystem, directory: out }\n",
        1, "certs[0].key.rotation.after_days", "must be from 1 to 3650, found 0", (5, 36)),
    row("an unknown key rotation",
        "certs:\n  - id: web\n    domains: [a.test]\n    key_path: k\n    key: { rotation: yearly }\n    ca: { kind: local }\n    install: { kind: filesystem, directory: out }\n",
        1, "certs[0].key.rotation", "`yearly` is not an accepted value", (5, 22)),
    row("a local CA validity that would overflow the not-after date",
        concat!("local_ca:\n  validity_days: 4294967295\n", ok_cert!()), 1, "local_ca.validity_days", "must be from 1 to 3650, found 4294967295", (2, 18)),
    row("a zero local CA validity",
        concat!("local_ca:\n  validity_days: 0\n", ok_cert!()), 1, "local_ca.validity_days", "must be from 1 to 3650", (2, 18)),

    // --- environment and secrets ---
    row("an unset ${VAR} names the variable and the field",
        "certs:\n  - id: web\n    description: ${FOO}\n    domains: [a.test]\n    key_path: k\n    ca: { kind: local }\n    install: { kind: filesystem, directory: out }\n",
        1, "certs[0].description", "environment variable `FOO` is not set", (3, 18)),
    row("an unterminated ${",
        concat!("daemon:\n  socket_path: /run/${HOST.sock\n", ok_cert!()), 1, "daemon.socket_path", "`${` is not closed", (2, 16)),
    row("an unset env:VAR secret",
        concat!("daemon:\n  api_token_file: env:NOPE\n", ok_cert!()), 1, "daemon.api_token_file", "environment variable `NOPE` is not set", (2, 19)),
    row("an empty env:VAR secret",
        concat!("daemon:\n  api_token_file: env:BLANK\n", ok_cert!()), 1, "daemon.api_token_file", "environment variable `BLANK` is empty", (2, 19)),
    row("a missing secret file",
        concat!("cloudflare:\n  api_token_file: missing.token\n", ok_cert!()), 1, "cloudflare.api_token_file", "missing.token` does not exist", (2, 19)),
    row("an empty secret file",
        concat!("cloudflare:\n  api_token_file: empty\n", ok_cert!()), 1, "cloudflare.api_token_file", "is empty", (2, 19)),
    row("a malformed env: reference",
        concat!("cloudflare:\n  api_token_file: 'env:'\n", ok_cert!()), 1, "cloudflare.api_token_file", "not a valid `env:VAR` reference", (2, 19)),

    // --- backends not in this build, federation, audit ---
    row("Cloudflare's api_url must be an http(s) URL",
        concat!("cloudflare: { api_token_file: token, api_url: api.cloudflare.com }\n", ok_cert!()),
        1, "cloudflare.api_url", "`api.cloudflare.com` is not an http(s) URL", (1, 47)),
    row("Namecheap's api_url must be an http(s) URL",
        concat!("namecheap:\n  api_key_file: token\n  username: u\n  client_ip: 192.0.2.1\n  api_url: api.sandbox.namecheap.com/xml.response\n", ok_cert!()),
        1, "namecheap.api_url", "is not an http(s) URL", (5, 12)),
    row("a Namecheap account without its API key file",
        concat!("namecheap:\n  api_key_file: nc.key\n  username: u\n  client_ip: 192.0.2.1\n", ok_cert!()),
        1, "namecheap.api_key_file", "nc.key` does not exist", (2, 17)),
    row("dcv: namecheap needs the namecheap account block",
        "acme: { directory_url: 'https://ca.test/dir', account_credentials_file: acct.json }\ncerts:\n  - id: web\n    domains: [a.test]\n    key_path: k\n    ca: { kind: acme }\n    dcv: { kind: namecheap }\n    install: { kind: filesystem, directory: out }\n",
        1, "certs[0].dcv.kind", "`dcv: namecheap` needs the top-level `namecheap:` account block", (7, 18)),
    row("a DSM install needs the top-level `dsm:` block",
        "certs:\n  - id: web\n    domains: [a.test]\n    key_path: k\n    ca: { kind: local }\n    install: { kind: dsm, description: NAS }\n",
        1, "certs[0].install.kind", "`install: dsm` needs the top-level `dsm:` account block", (6, 22)),
    row("DSM's address must be an http(s) URL",
        concat!("dsm: { url: nas.local, username: rota, password_file: token }\n", ok_cert!()),
        1, "dsm.url", "is not an http(s) URL", (1, 13)),
    row("a missing DSM password file",
        concat!("dsm:\n  url: https://nas.test:5001\n  username: rota\n  password_file: missing.pw\n", ok_cert!()),
        1, "dsm.password_file", "missing.pw` does not exist", (4, 18)),
    row("a DSM install needs a description to find its certificate by",
        "dsm: { url: 'https://nas.test', username: rota, password_file: token }\ncerts:\n  - id: web\n    domains: [a.test]\n    key_path: k\n    ca: { kind: local }\n    install: { kind: dsm, description: '' }\n",
        1, "certs[0].install.description", "`description` is empty", (7, 40)),
    row("federation needs SurrealDB",
        concat!("cluster:\n  enabled: true\n  node_id: a\n", ok_cert!()), 1, "cluster.enabled", "federation needs `audit: { kind: surrealdb }`", (2, 12)),
    row("in a cluster a key must not rotate: the followers hold copies of it",
        concat!("audit: { kind: surrealdb, endpoint: 'mem://', namespace: rota, database: prod }\n",
            "cluster:\n  enabled: true\n  node_id: a\n",
            "certs:\n  - id: web\n    domains: [a.test]\n    key_path: web.key\n    key: { rotation: every_renewal }\n",
            "    ca: { kind: local }\n    install: { kind: filesystem, directory: out }\n"),
        1, "certs[0].key.rotation", "every node holds its own copy of the key", (9, 22)),
    row("a Kubernetes Lease coordinator needs the Lease's namespace",
        concat!("cluster:\n  node_id: a\n  coordinator: kubernetes_lease\n", ok_cert!()),
        1 + K8S_OFF, "cluster.namespace", "needs the namespace of its `Lease`", (2, 3)),
    row("a namespace that is not a Kubernetes name",
        concat!("cluster:\n  node_id: a\n  coordinator: kubernetes_lease\n  namespace: Rota_NS\n", ok_cert!()),
        1 + K8S_OFF, "cluster.namespace", "`Rota_NS` is not a Kubernetes namespace name", (4, 14)),
    row("a Lease name that is not a Kubernetes name",
        concat!("cluster:\n  node_id: a\n  coordinator: kubernetes_lease\n  namespace: rota\n  lease_name: -leader\n", ok_cert!()),
        1 + K8S_OFF, "cluster.lease_name", "`-leader` is not a Kubernetes object name", (5, 15)),
    row("Lease settings with the SurrealDB lock would be ignored",
        concat!("cluster:\n  node_id: a\n  namespace: rota\n", ok_cert!()),
        1, "cluster.namespace", "only used by `coordinator: kubernetes_lease`", (3, 14)),
    row("an unknown coordinator lists the accepted ones",
        concat!("cluster:\n  node_id: a\n  coordinator: etcd\n", ok_cert!()),
        1, "cluster.coordinator", "`etcd` is not an accepted value", (3, 16)),
    row("an unknown audit kind",
        concat!("audit: { kind: postgres }\n", ok_cert!()), 1, "audit.kind", "unknown `audit` kind `postgres`", (1, 16)),
    row("a lease too short to refresh",
        concat!("cluster:\n  node_id: a\n  lease_seconds: 1\n", ok_cert!()), 1, "cluster.lease_seconds", "must be from 3 to 3600", (3, 18)),

    // --- alerts ---
    row("a webhook timeout of zero",
        concat!("alerts:\n  - kind: webhook\n    url: https://hooks.test/x\n    timeout_seconds: 0\n", ok_cert!()),
        1, "alerts[0].timeout_seconds", "must be from 1 to 300", (4, 22)),
    row("an SMTP port of zero",
        concat!("alerts:\n  - kind: email\n    smtp_host: smtp.test\n    smtp_port: 0\n    tls: starttls\n    from: rota@a.test\n    to: [a@a.test]\n", ok_cert!()),
        1, "alerts[0].smtp_port", "must be from 1 to 65535", (4, 16)),
    row("an email alert with nobody to send to",
        concat!("alerts:\n  - kind: email\n    smtp_host: smtp.test\n    smtp_port: 587\n    tls: starttls\n    from: rota@a.test\n    to: []\n", ok_cert!()),
        1, "alerts[0].to", "at least one recipient", (7, 9)),
    row("an unknown SMTP tls mode lists the accepted ones",
        concat!("alerts:\n  - kind: email\n    smtp_host: smtp.test\n    smtp_port: 587\n    tls: ssl\n    from: rota@a.test\n    to: [a@a.test]\n", ok_cert!()),
        1, "alerts[0].tls", "`ssl` is not an accepted value", (5, 10)),
    row("an SMTP port out of range",
        concat!("alerts:\n  - kind: email\n    smtp_host: smtp.test\n    smtp_port: 70000\n    tls: none\n    from: rota@a.test\n    to: [a@a.test]\n", ok_cert!()),
        1, "alerts[0].smtp_port", "from 1 to 65535", (4, 16)),
    row("an alert entry without kind",
        concat!("alerts:\n  - url: https://hooks.test/x\n", ok_cert!()), 1, "alerts[0]", "this `alerts` entry has no `kind`", (2, 5)),
    row("the ACME directory must be an http(s) URL",
        concat!("acme: { directory_url: acme-v02.api.letsencrypt.org, account_credentials_file: a.json }\n", ok_cert!()),
        1, "acme.directory_url", "is not an http(s) URL", (1, 24)),
    row("the dry-run ACME directory must be an http(s) URL",
        concat!("acme: { directory_url: 'https://ca.test/dir', account_credentials_file: a.json, staging_directory_url: ca.test/staging }\n", ok_cert!()),
        1, "acme.staging_directory_url", "`ca.test/staging` is not an http(s) URL", (1, 104)),
    row("an nginx reload_command with no program",
        "certs:\n  - id: web\n    domains: [a.test]\n    key_path: k\n    ca: { kind: local }\n    install: { kind: nginx, directory: out, reload_command: [] }\n",
        1, "certs[0].install.reload_command", "has no command to run", (6, 61)),
    row("formats without pem: cert.pem is what rota reads back",
        "certs:\n  - id: web\n    domains: [a.test]\n    key_path: k\n    ca: { kind: local }\n    install: { kind: filesystem, directory: out, formats: [combined] }\n",
        1, "certs[0].install.formats", "`formats` must include `pem`", (6, 59)),
    row("pkcs12 without its password",
        "certs:\n  - id: web\n    domains: [a.test]\n    key_path: k\n    ca: { kind: local }\n    install: { kind: filesystem, directory: out, formats: [pem, pkcs12] }\n",
        1, "certs[0].install.formats", "`pkcs12` needs `pkcs12_password_file`", (6, 59)),
    row("an unknown format",
        "certs:\n  - id: web\n    domains: [a.test]\n    key_path: k\n    ca: { kind: local }\n    install: { kind: filesystem, directory: out, formats: [pem, jks] }\n",
        1, "certs[0].install.formats[1]", "`jks` is not an accepted value", (6, 65)),
    row("a wildcard over an IP address",
        "certs:\n  - id: web\n    domains: ['*.192.0.2.1']\n    key_path: k\n    ca: { kind: local }\n    install: { kind: filesystem, directory: out }\n",
        1, "certs[0].domains[0]", "a wildcard covers DNS names only", (3, 15)),
    row("an IP address proven by DNS-01",
        "acme: { directory_url: 'https://ca.test/dir', account_credentials_file: a.json }\ncloudflare: { api_token_file: env:TOKEN }\ncerts:\n  - id: web\n    domains: [a.test, 192.0.2.1]\n    key_path: k\n    ca: { kind: acme }\n    dcv: { kind: cloudflare }\n    install: { kind: filesystem, directory: out }\n",
        1, "certs[0].domains[1]", "can only be validated by HTTP-01", (5, 23)),
    row("a deploy hook with no program",
        "certs:\n  - id: web\n    domains: [a.test]\n    key_path: k\n    ca: { kind: local }\n    install: { kind: filesystem, directory: out, post_command: [] }\n",
        1, "certs[0].install.post_command", "`post_command` has no command to run", (6, 64)),
    row("an nginx test_command with an empty program",
        "certs:\n  - id: web\n    domains: [a.test]\n    key_path: k\n    ca: { kind: local }\n    install: { kind: nginx, directory: out, test_command: [''] }\n",
        1, "certs[0].install.test_command", "`test_command` has no command to run", (6, 59)),
    row("a verify_address without a port",
        "certs:\n  - id: web\n    domains: [a.test]\n    key_path: k\n    ca: { kind: local }\n    install: { kind: nginx, directory: out, verify_address: a.test }\n",
        1, "certs[0].install.verify_address", "is not `host:port`", (6, 61)),
    row("an HAProxy storage name that is not an absolute path",
        "certs:\n  - id: web\n    domains: [a.test]\n    key_path: k\n    ca: { kind: local }\n    install: { kind: haproxy, directory: out, socket_path: s.sock, cert_storage_name: web.pem }\n",
        1, "certs[0].install.cert_storage_name", "`web.pem` is not an absolute path", (6, 87)),
    row("an HAProxy storage name the admin socket would split",
        "certs:\n  - id: web\n    domains: [a.test]\n    key_path: k\n    ca: { kind: local }\n    install: { kind: haproxy, directory: out, socket_path: s.sock, cert_storage_name: '/a;b.pem' }\n",
        1, "certs[0].install.cert_storage_name", "contains whitespace, a control character, `;`", (6, 87)),
];

#[test]
fn every_malformed_config_is_reported_where_it_is_written() {
    let (_dir, path) = config_dir();
    let file = path.display().to_string();
    let mut failures = Vec::new();
    for row in ROWS {
        let issues = load_errors(&path, row.yaml).0;
        let found = issues
            .iter()
            .find(|i| i.path == row.path && i.message.contains(row.says));
        let ok = issues.len() == row.count
            && found
                .is_some_and(|i| (i.line, i.column) == (row.line, row.column) && i.file == file);
        if !ok {
            failures.push(format!(
                "{}: want {} problem(s), `{}` at {}:{} saying {:?}; got:\n{}",
                row.why,
                row.count,
                row.path,
                row.line,
                row.column,
                row.says,
                show(&issues)
            ));
        }
    }
    assert!(ROWS.len() >= 40, "the table keeps at least 40 rows");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_problem_has_a_hint() {
    let (_dir, path) = config_dir();
    for row in ROWS {
        for issue in load_errors(&path, row.yaml).0 {
            assert!(issue.hint.is_some(), "{}: no hint for {issue}", row.why);
        }
    }
}

#[test]
fn a_tsig_secret_that_is_not_base64_is_never_quoted() {
    let (dir, path) = config_dir();
    std::fs::write(dir.path().join("bad.key"), "c2Vj!cmV0\n").unwrap();
    let yaml = rfc2136_cert!("127.0.0.1:53", "a.test", "rota", "hmac-sha256", "bad.key");
    let text = show(&load_errors(&path, yaml).0);
    assert!(text.contains("is not base64"), "{text}");
    // base64's own message would name the offending byte and its offset.
    for piece in ["c2Vj", "cmV0", "!", "symbol", "offset"] {
        assert!(!text.contains(piece), "`{piece}` leaked: {text}");
    }
}
