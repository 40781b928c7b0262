//! Configs that load: every block, the documented defaults, relative paths, `${VAR}`
//! interpolation, the config path's precedence, and how several problems are reported together.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rota_api::config::{
    AlertSpec, AuditConfig, CONFIG_ENV, CaSpec, Config, DEFAULT_CONFIG_PATH, DcvSpec, InstallSpec,
    LoadedConfig, TsigAlgorithm, config_path_with_env, load_file, load_str_with_env,
};
use rota_api::names::{DomainName, SecretSource};

fn fake_env(name: &str) -> Option<String> {
    match name {
        "TOKEN" => Some("s3cret".into()),
        "HOST" => Some("example.com".into()),
        "NC_USER" => Some("ada".into()),
        _ => None,
    }
}

/// A config directory holding the secret files the configs below name.
fn config_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    for name in [
        "cloudflare.token",
        "surreal.password",
        "eab.hmac",
        "smtp.password",
        "api.token",
        "dsm.password",
    ] {
        std::fs::write(dir.path().join("secrets").join(name), "s3cret\n").unwrap();
    }
    // A TSIG secret is base64, as `tsig-keygen` prints it.
    std::fs::write(
        dir.path().join("secrets/tsig.key"),
        "zI3Ye2Q8Tn0aRg3qGgVv7mQ2c8L1uXK9h0bqW1f4yPw=\n",
    )
    .unwrap();
    let path = dir.path().join("rota.yaml");
    (dir, path)
}

fn load(path: &Path, yaml: &str) -> LoadedConfig {
    load_str_with_env(path, yaml.to_owned(), &fake_env).unwrap_or_else(|e| panic!("{e}"))
}

/// Every block of the configuration reference, and every backend kind.
const EVERY_BLOCK: &str = include_str!("every_block.yaml");

#[test]
fn every_block_parses_and_only_backends_left_out_of_the_build_are_refused() {
    let (_dir, path) = config_dir();
    let loaded = load_str_with_env(&path, EVERY_BLOCK.to_owned(), &fake_env);
    // `k8s_secret` runs when the build has the `k8s` feature (rota-providers turns it on).
    if cfg!(feature = "k8s") {
        let config = loaded.unwrap_or_else(|e| panic!("{e}")).config;
        assert!(config.cluster.is_some_and(|c| c.enabled));
        return;
    }
    let errors = loaded.unwrap_err();
    let paths: Vec<&str> = errors.0.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(paths, ["certs[4].install.kind"], "{errors}");
    assert!(
        errors.0[0].message.contains("built without feature `k8s`"),
        "{errors}"
    );
}

#[test]
fn an_rfc2136_block_loads_typed_with_its_secret_file_rebased() {
    let (dir, path) = config_dir();
    let yaml = concat!(
        "acme: { directory_url: 'https://ca.test/dir', account_credentials_file: acct.json }\n",
        "certs:\n",
        "  - id: home\n",
        "    domains: ['*.home.test', home.test]\n",
        "    key_path: keys/home.key\n",
        "    ca: { kind: acme }\n",
        "    dcv:\n",
        "      kind: rfc2136\n",
        "      server: '[::1]:5353'\n",
        "      zone: Home.Test\n",
        "      tsig_key_name: rota-update.\n",
        "      tsig_algorithm: hmac-sha512\n",
        "      tsig_secret_file: secrets/tsig.key\n",
        "    install: { kind: filesystem, directory: out }\n",
    );
    let config = load(&path, yaml).config;
    let Some(DcvSpec::Rfc2136(dcv)) = &config.certs[0].dcv else {
        panic!("not an rfc2136 block: {:?}", config.certs[0].dcv);
    };
    assert_eq!((dcv.server.host(), dcv.server.port()), ("::1", 5353));
    assert_eq!(dcv.zone.as_str(), "home.test", "zones compare without case");
    assert_eq!(dcv.tsig_key_name, "rota-update.");
    assert_eq!(dcv.tsig_algorithm, TsigAlgorithm::HmacSha512);
    assert_eq!(
        dcv.tsig_secret_file,
        SecretSource::File(dir.path().join("secrets/tsig.key"))
    );

    // The DCV journal stores the block as JSON so a restart can remove what a crash left
    // published: it must come back the same, holding the key's path and never the key.
    let spec = config.certs[0].dcv.clone().unwrap();
    let json = serde_json::to_string(&spec).unwrap();
    assert!(
        json.contains("\"tsig_algorithm\":\"hmac-sha512\""),
        "{json}"
    );
    assert!(
        !json.contains("zI3Ye2Q8"),
        "the secret is not stored: {json}"
    );
    assert_eq!(serde_json::from_str::<DcvSpec>(&json).unwrap(), spec);
}

/// The Kubernetes `Lease` settings: defaults filled in, the kubeconfig taken from the config
/// file's directory, and the SurrealDB lock still the default coordinator.
#[cfg(feature = "k8s")]
#[test]
fn a_kubernetes_lease_coordinator_loads_with_its_defaults() {
    use rota_api::config::{Coordinator, DEFAULT_LEASE_NAME};

    let (dir, path) = config_dir();
    let yaml = "cluster:\n  node_id: host-a\n  coordinator: kubernetes_lease\n  namespace: rota\n  kubeconfig_path: kube/config\ncerts: []\n";
    let cluster = load(&path, yaml).config.cluster.expect("cluster block");
    assert_eq!(cluster.coordinator, Coordinator::KubernetesLease);
    assert_eq!(cluster.namespace.as_deref(), Some("rota"));
    assert_eq!(cluster.lease_name, DEFAULT_LEASE_NAME);
    assert_eq!(
        cluster.kubeconfig_path,
        Some(dir.path().join("kube/config"))
    );
    let plain = load(&path, "cluster: { node_id: host-a }\ncerts: []\n").config;
    assert_eq!(
        plain.cluster.expect("cluster block").coordinator,
        Coordinator::SurrealLock
    );
}

#[test]
fn a_config_of_available_backends_loads() {
    let (dir, path) = config_dir();
    let yaml = concat!(
        "# comments are kept in the text\n",
        "daemon:\n",
        "  listen_addr: 0.0.0.0:9000\n",
        "  api_token_file: env:TOKEN\n",
        "  max_concurrent_renewals: 2\n",
        "audit: { kind: sqlite }\n",
        "local_ca: { directory: ca, validity_days: 60 }\n",
        "cloudflare: { api_token_file: secrets/cloudflare.token }\n",
        "cluster: { enabled: false, node_id: host-a }\n",
        "certs:\n",
        "  - id: lan\n",
        "    description: LAN services on ${HOST}\n",
        "    domains: ['*.lan.${HOST}', 'nas.lan.${HOST}']\n",
        "    key_path: keys/lan.key\n",
        "    ca: { kind: local }\n",
        "    install: { kind: filesystem, directory: /etc/ssl/lan }\n",
    );
    let loaded = load(&path, yaml);
    assert_eq!(loaded.text, yaml, "the text is kept exactly as written");
    let config = &loaded.config;
    assert_eq!(
        config.daemon.listen_addr,
        "0.0.0.0:9000".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        config.daemon.api_token_file,
        Some(SecretSource::Env("TOKEN".into()))
    );
    assert_eq!(config.daemon.max_concurrent_renewals, 2);
    assert_eq!(config.audit, AuditConfig::default());
    assert_eq!(config.local_ca.directory, Some(dir.path().join("ca")));
    assert!(!config.cluster.as_ref().unwrap().enabled);
    let cert = &config.certs[0];
    assert_eq!(
        cert.description.as_deref(),
        Some("LAN services on example.com")
    );
    let domains: Vec<&str> = cert.domains.iter().map(DomainName::as_str).collect();
    assert_eq!(domains, ["*.lan.example.com", "nas.lan.example.com"]);
    assert!(matches!(cert.ca, CaSpec::Local(_)));
}

#[test]
fn defaults_follow_the_configuration_reference() {
    let (_dir, path) = config_dir();
    for yaml in ["certs: []\n", "certs:\n", "daemon:\ncerts: []\n"] {
        let config = load(&path, yaml).config;
        let daemon = &config.daemon;
        assert_eq!(
            daemon.database_path,
            Path::new("/var/lib/rota/rota.db"),
            "{yaml}"
        );
        assert_eq!(
            daemon.listen_addr,
            "127.0.0.1:7878".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(daemon.socket_path, Path::new("/var/run/rota.sock"));
        assert_eq!(daemon.check_interval_seconds, 3600);
        assert_eq!(daemon.renew_threshold_days, 30);
        assert_eq!(daemon.max_concurrent_renewals, 4);
        assert_eq!(daemon.alert_before_days, 14);
        assert_eq!(daemon.api_token_file, None);
        assert_eq!(config.audit, AuditConfig::default());
        assert_eq!(config.local_ca.validity_days, 90);
        assert_eq!(
            config.local_ca_directory(),
            Path::new("/var/lib/rota/local-ca")
        );
        assert!(config.certs.is_empty() && config.alerts.is_empty());
        assert!(config.acme.is_none() && config.cluster.is_none());
    }
}

#[test]
fn relative_paths_are_taken_from_the_config_directory() {
    let (dir, path) = config_dir();
    let yaml = concat!(
        "daemon:\n",
        "  database_path: state/rota.db\n",
        "  socket_path: /run/rota.sock\n",
        "  api_token_file: secrets/api.token\n",
        "cloudflare: { api_token_file: secrets/cloudflare.token }\n",
        "acme: { directory_url: 'https://ca.test/dir', account_credentials_file: secrets/acct.json }\n",
        "alerts:\n",
        "  - { kind: email, smtp_host: smtp.test, smtp_port: 587, tls: starttls, from: r@a.test,\n",
        "      to: [o@a.test], username: u, password_file: secrets/smtp.password, ca_file: smtp-ca.pem }\n",
        "certs:\n",
        "  - id: web\n",
        "    domains: [a.test]\n",
        "    key_path: keys/web.key\n",
        "    ca: { kind: local }\n",
        "    install: { kind: filesystem, directory: out }\n",
    );
    let config: Config = load(&path, yaml).config;
    let base = dir.path();
    assert_eq!(config.daemon.database_path, base.join("state/rota.db"));
    assert_eq!(
        config.daemon.socket_path,
        Path::new("/run/rota.sock"),
        "absolute stays"
    );
    assert_eq!(config.local_ca_directory(), base.join("state/local-ca"));
    let token = SecretSource::File(base.join("secrets/api.token"));
    assert_eq!(config.daemon.api_token_file, Some(token));
    let cloudflare = SecretSource::File(base.join("secrets/cloudflare.token"));
    assert_eq!(config.cloudflare.unwrap().api_token_file, cloudflare);
    let acme = config.acme.unwrap();
    assert_eq!(
        acme.account_credentials_file,
        base.join("secrets/acct.json")
    );
    let AlertSpec::Email(email) = &config.alerts[0] else {
        panic!("an email sink: {:?}", config.alerts)
    };
    let password = SecretSource::File(base.join("secrets/smtp.password"));
    assert_eq!(email.password_file, Some(password));
    assert_eq!(email.ca_file, Some(base.join("smtp-ca.pem")));
    assert_eq!(config.certs[0].key_path, base.join("keys/web.key"));
    let InstallSpec::Filesystem(fs) = &config.certs[0].install else {
        panic!()
    };
    assert_eq!(fs.directory, base.join("out"));
}

#[test]
fn a_relative_config_path_still_gives_absolute_paths() {
    let yaml = "certs:\n  - { id: w, domains: [a.test], key_path: w.key, ca: { kind: local }, install: { kind: filesystem, directory: /o } }\n";
    let config = load(Path::new("rota.yaml"), yaml).config;
    assert!(config.certs[0].key_path.is_absolute());
    assert!(config.certs[0].key_path.ends_with("w.key"));
}

#[test]
fn interpolation_and_escapes() {
    let (_dir, path) = config_dir();
    let yaml = concat!(
        "namecheap: { api_key_file: env:TOKEN, username: '${NC_USER}', client_ip: 192.0.2.1 }\n",
        "certs:\n",
        "  - id: web\n",
        "    description: costs $$5 at ${HOST}, ${NC_USER}$${HOST} pa$word\n",
        "    domains: [a.test]\n",
        "    key_path: k\n",
        "    ca: { kind: local }\n",
        "    install: { kind: filesystem, directory: out }\n",
    );
    let config = load(&path, yaml).config;
    assert_eq!(config.namecheap.unwrap().username, "ada");
    let description = config.certs[0].description.clone().unwrap();
    assert_eq!(description, "costs $5 at example.com, ada${HOST} pa$word");
}

#[test]
fn merge_keys_share_settings_between_certs() {
    let (dir, path) = config_dir();
    let yaml = concat!(
        "certs:\n",
        "  - &lan\n",
        "    id: a\n",
        "    domains: [a.lan]\n",
        "    key_path: a.key\n",
        "    ca: { kind: local }\n",
        "    install: { kind: filesystem, directory: out }\n",
        "  - <<: *lan\n",
        "    id: b\n",
        "    domains: [b.lan]\n",
    );
    let config = load(&path, yaml).config;
    assert_eq!(config.certs[1].id.as_str(), "b");
    assert_eq!(config.certs[1].key_path, dir.path().join("a.key"));
}

#[test]
fn config_path_precedence() {
    let set = |name: &str| (name == CONFIG_ENV).then(|| "/srv/rota.yaml".to_owned());
    let unset = |_: &str| None;
    let empty = |_: &str| Some(String::new());
    let cli = Some(PathBuf::from("./mine.yaml"));
    assert_eq!(
        config_path_with_env(cli.clone(), &set),
        Path::new("./mine.yaml"),
        "--config wins"
    );
    assert_eq!(
        config_path_with_env(None, &set),
        Path::new("/srv/rota.yaml"),
        "then ROTA_CONFIG"
    );
    assert_eq!(
        config_path_with_env(None, &unset),
        Path::new(DEFAULT_CONFIG_PATH),
        "then the default"
    );
    assert_eq!(
        config_path_with_env(None, &empty),
        Path::new(DEFAULT_CONFIG_PATH),
        "empty = unset"
    );
    assert_eq!(DEFAULT_CONFIG_PATH, "/etc/rota/rota.yaml");
}

#[test]
fn several_problems_are_reported_together_in_document_order() {
    let (_dir, path) = config_dir();
    let yaml = concat!(
        "daemon:\n",
        "  listen_addr: 0.0.0.0:7878\n",
        "namecheap:\n",
        "  api_key_file: env:NOPE\n",
        "  username: u\n",
        "  client_ip: 192.0.2.1\n",
        "certs:\n",
        "  - id: web\n",
        "    description: ${FOO}\n",
        "    domains: [a.test, a.test]\n",
        "    key_path: k\n",
        "    ca: { kind: local }\n",
        "    install: { kind: filesystem, directory: out }\n",
        "  - id: web\n",
        "    domains: [b.test]\n",
        "    key_path: k2\n",
        "    ca: { kind: local }\n",
        "    install: { kind: filesystem, directory: out2 }\n",
        "  - id: api\n",
        "    domains: [c.test]\n",
        "    key_path: k3\n",
        "    ca: { kind: local }\n",
        "    install: { kind: filesytem, directory: out3 }\n",
        "extra: true\n",
    );
    let errors = load_str_with_env(&path, yaml.to_owned(), &fake_env).unwrap_err();
    let got: Vec<(usize, usize, &str)> = errors
        .0
        .iter()
        .map(|i| (i.line, i.column, i.path.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (2, 16, "daemon.listen_addr"),
            (4, 17, "namecheap.api_key_file"),
            (9, 18, "certs[0].description"),
            (10, 23, "certs[0].domains[1]"),
            (14, 9, "certs[1].id"),
            (23, 22, "certs[2].install.kind"),
            (24, 1, "extra"),
        ],
        "{errors}"
    );
    assert!(errors.0[5].message.contains("did you mean `filesystem`?"));
    let shown = errors.to_string();
    assert!(shown.starts_with("7 problems in the config:\n"), "{shown}");
    let file = path.display();
    assert!(shown.contains(&format!("  {file}:9:18: certs[0].description: environment variable `FOO` is not set\n    hint: export FOO")));
}

#[test]
fn issues_found_after_loading_are_located_too() {
    let (_dir, path) = config_dir();
    let yaml = "certs:\n  - id: web\n    domains: [a.test]\n    key_path: k\n    ca: { kind: local }\n    install: { kind: filesystem, directory: out }\n";
    let loaded = load(&path, yaml);
    let issue = loaded.issue_at(
        "certs[0].install",
        "cannot set up this backend".into(),
        None,
    );
    assert_eq!(
        (issue.line, issue.column, issue.path.as_str()),
        (6, 14, "certs[0].install")
    );
    assert_eq!(issue.file, path.display().to_string());
    let fallback = loaded.issue_at("certs[0].dcv", "x".into(), Some("y".into()));
    assert_eq!(
        (fallback.line, fallback.column),
        (2, 5),
        "an unwritten field points at its cert"
    );
}

#[test]
fn load_file_reads_the_file_or_says_why_not() {
    let (dir, path) = config_dir();
    std::fs::write(&path, "certs: []\n").unwrap();
    assert!(load_file(&path).unwrap().config.certs.is_empty());
    let missing = dir.path().join("nope.yaml");
    let errors = load_file(&missing).unwrap_err();
    assert_eq!((errors.0[0].line, errors.0[0].column), (1, 1));
    assert!(errors.0[0].message.starts_with("cannot read the config"));
}

#[test]
fn the_locked_down_example_loads_with_its_access_settings() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/locked-down.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let env = |name: &str| (name == "ROTA_API_TOKEN").then(|| "s3cret".to_owned());
    let loaded = load_str_with_env(&path, text, &env).unwrap_or_else(|e| panic!("{e}"));
    let daemon = &loaded.config.daemon;
    assert_eq!(
        daemon.tls.as_ref().map(|t| t.cert_id.as_str()),
        Some("rota-api")
    );
    assert_eq!(daemon.allowed_hosts, ["rota.home.arpa"]);
    assert_eq!(daemon.socket_group.as_deref(), Some("rota"));
    assert_eq!(
        daemon.allowed_paths,
        [
            PathBuf::from("/var/lib/rota"),
            PathBuf::from("/etc/ssl/rota")
        ]
    );
}
