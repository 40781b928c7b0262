//! The typed shape of `rota.yaml`. Every block refuses unknown fields; every backend surface
//! is an internally tagged enum on `kind`. Paths stay as written until the loader makes
//! relative ones relative to the config file's directory.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::names::{CertId, DomainName, HostPort, SecretSource};

/// Whether a backend `kind` can run in this build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// Implemented and compiled in.
    Available,
    /// Part of the config reference, but its backend has not landed yet.
    NotYet,
    /// Implemented, but this build left out the cargo feature it needs (named here).
    BuiltWithout(&'static str),
}

impl Availability {
    /// `k8s_secret`: runs when this crate's `k8s` feature is on, which rota-providers' default
    /// `k8s` feature (the one that compiles the Kubernetes client) turns on.
    pub const K8S: Self = if cfg!(feature = "k8s") {
        Self::Available
    } else {
        Self::BuiltWithout("k8s")
    };
}

/// Implemented by the `kind`-tagged enums so the loader can point at the exact field that
/// failed inside a variant (serde's internally tagged enums buffer their content and lose it).
pub trait Tagged {
    /// Every `kind` value this enum accepts.
    const KINDS: &'static [&'static str];
    /// Deserializes `body` (the mapping without `kind`) as the variant for `kind` and returns
    /// the error with its path inside the variant, or `None` when it parses.
    fn variant_error(
        kind: &str,
        body: serde_yaml::Value,
    ) -> Option<serde_path_to_error::Error<serde_yaml::Error>>;
    /// The `kind` of this value.
    fn kind(&self) -> &'static str;
    /// Whether this value's backend can run in this build.
    fn availability(&self) -> Availability;
    /// Whether backends of `kind` can run in this build, or `None` for a kind not in [`Self::KINDS`];
    /// lets an error name the kinds that are available without holding a value of each.
    fn kind_availability(kind: &str) -> Option<Availability>;
}

/// Declares a `kind`-tagged enum of newtype variants together with its [`Tagged`] impl, so the
/// variant list is written once.
macro_rules! tagged_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $kind:literal => $variant:ident($ty:ty) = $avail:ident, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(tag = "kind")]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $kind)] $variant($ty), )*
        }

        impl Tagged for $name {
            const KINDS: &'static [&'static str] = &[$($kind),*];

            fn variant_error(
                kind: &str,
                body: serde_yaml::Value,
            ) -> Option<serde_path_to_error::Error<serde_yaml::Error>> {
                match kind {
                    $( $kind => serde_path_to_error::deserialize::<_, $ty>(body).err(), )*
                    _ => None,
                }
            }

            fn kind(&self) -> &'static str {
                match self { $( Self::$variant(_) => $kind, )* }
            }

            fn availability(&self) -> Availability {
                match self { $( Self::$variant(_) => Availability::$avail, )* }
            }

            fn kind_availability(kind: &str) -> Option<Availability> {
                match kind {
                    $( $kind => Some(Availability::$avail), )*
                    _ => None,
                }
            }
        }
    };
}

/// The whole of `rota.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Daemon-wide settings.
    #[serde(default)]
    pub daemon: DaemonConfig,
    /// Where the audit trail lives; SQLite at `daemon.database_path` when omitted.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Settings of the embedded local CA (`ca: { kind: local }`).
    #[serde(default)]
    pub local_ca: LocalCaConfig,
    /// Namecheap account, for `ca`/`dcv` of kind `namecheap`.
    #[serde(default)]
    pub namecheap: Option<NamecheapAccount>,
    /// Cloudflare account, for `dcv: { kind: cloudflare }`.
    #[serde(default)]
    pub cloudflare: Option<CloudflareAccount>,
    /// ACME account, for `ca: { kind: acme }`.
    #[serde(default)]
    pub acme: Option<AcmeAccount>,
    /// The Synology NAS and its login, for `install: { kind: dsm }`.
    #[serde(default)]
    pub dsm: Option<DsmConnection>,
    /// Optional federation of several rotad nodes.
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
    /// Notification sinks; every alert goes to each of them.
    #[serde(default)]
    pub alerts: Vec<AlertSpec>,
    /// The certificates rota keeps fresh.
    pub certs: Vec<CertSpec>,
}

/// The `daemon:` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// SQLite audit database (created 0600).
    pub database_path: PathBuf,
    /// TCP address of the dashboard and API.
    pub listen_addr: SocketAddr,
    /// UNIX socket the CLI talks to (created 0660).
    pub socket_path: PathBuf,
    /// Group given the socket (a name or a numeric gid), so its members may run `rota`;
    /// rotad's own group when unset.
    pub socket_group: Option<String>,
    /// Seconds between two sweeps; the first sweep runs one interval after start.
    pub check_interval_seconds: u64,
    /// Renew when the installed cert expires in fewer than this many days.
    pub renew_threshold_days: u32,
    /// How many renewals may run at once against any one CA (so a CA that hangs never holds
    /// up the certs of another).
    pub max_concurrent_renewals: usize,
    /// A renewal still running after this many seconds is failed, its DCV answers removed.
    pub renewal_timeout_seconds: u64,
    /// Bearer token required on the TCP API; mandatory when `listen_addr` is not loopback.
    pub api_token_file: Option<SecretSource>,
    /// Host names (or addresses) the TCP API answers to besides the bound address and
    /// `localhost`: a DNS-rebinding defence.
    pub allowed_hosts: Vec<String>,
    /// Serves the TCP listener over TLS with a cert rota manages.
    pub tls: Option<ListenerTls>,
    /// Directories that every `key_path`, webroot and install directory must lie under;
    /// empty means anywhere.
    pub allowed_paths: Vec<PathBuf>,
    /// How DNS-01 records are checked before the CA is asked to validate them.
    pub dns_propagation: DnsPropagation,
    /// Warn (`expiry_warning`) when a cert that is not Ready expires within this many days.
    pub alert_before_days: u32,
}

/// `daemon.dns_propagation`: which servers must answer a DNS-01 record, and how long to wait.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DnsPropagation {
    /// `host:port` of the servers to ask; empty means the zone's authoritative nameservers.
    pub nameservers: Vec<String>,
    /// Give up after this many seconds.
    pub timeout_seconds: u64,
    /// Ask again every this many seconds.
    pub interval_seconds: u64,
}

impl Default for DnsPropagation {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            timeout_seconds: 300,
            interval_seconds: 5,
        }
    }
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            database_path: PathBuf::from("/var/lib/rota/rota.db"),
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 7878)),
            socket_path: PathBuf::from("/var/run/rota.sock"),
            socket_group: None,
            check_interval_seconds: 3600,
            renew_threshold_days: 30,
            max_concurrent_renewals: 4,
            renewal_timeout_seconds: 900,
            api_token_file: None,
            allowed_hosts: Vec::new(),
            tls: None,
            allowed_paths: Vec::new(),
            dns_propagation: DnsPropagation::default(),
            alert_before_days: 14,
        }
    }
}

/// `daemon.tls`: which managed cert the TCP listener serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// The id of a cert in `certs:` whose install writes PEM files (`filesystem`, `nginx`).
    pub cert_id: CertId,
}

tagged_enum! {
    /// The `audit:` block: which store keeps renewals, events and issued certs.
    pub enum AuditConfig {
        /// Single-file SQLite at `daemon.database_path`.
        "sqlite" => Sqlite(SqliteAudit) = Available,
        /// A SurrealDB server or embedded engine; required for `cluster`.
        "surrealdb" => Surrealdb(SurrealAudit) = Available,
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self::Sqlite(SqliteAudit {})
    }
}

/// `audit: { kind: sqlite }` takes no settings of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqliteAudit {}

/// `audit: { kind: surrealdb, ... }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SurrealAudit {
    /// `mem://`, `file://path`, `ws://`, `wss://`, `http://` or `https://`.
    pub endpoint: String,
    /// SurrealDB namespace.
    pub namespace: String,
    /// SurrealDB database.
    pub database: String,
    /// User for remote engines.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for remote engines.
    #[serde(default)]
    pub password_file: Option<SecretSource>,
}

/// The `local_ca:` block: the embedded CA behind `ca: { kind: local }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LocalCaConfig {
    /// Where the CA keeps its root; defaults to `local-ca/` beside `daemon.database_path`.
    pub directory: Option<PathBuf>,
    /// Lifetime of the certs it signs, in days.
    pub validity_days: u32,
}

impl Default for LocalCaConfig {
    fn default() -> Self {
        Self {
            directory: None,
            validity_days: 90,
        }
    }
}

/// The `namecheap:` account block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamecheapAccount {
    /// API key.
    pub api_key_file: SecretSource,
    /// Account user name.
    pub username: String,
    /// Sub-account API user; defaults to `username`.
    #[serde(default)]
    pub api_user: Option<String>,
    /// The whitelisted address rota calls from.
    pub client_ip: IpAddr,
    /// The XML API endpoint; Namecheap's production API when unset
    /// (`https://api.sandbox.namecheap.com/xml.response` is the sandbox).
    #[serde(default)]
    pub api_url: Option<String>,
    /// PEM roots to trust for the API's TLS besides the system's (a proxy, a test double).
    #[serde(default)]
    pub ca_bundle_file: Option<PathBuf>,
}

impl NamecheapAccount {
    /// Namecheap's production XML API.
    pub const DEFAULT_API_URL: &'static str = "https://api.namecheap.com/xml.response";

    /// The API user: `api_user`, or `username` when unset.
    #[must_use]
    pub fn api_user(&self) -> &str {
        self.api_user.as_deref().unwrap_or(&self.username)
    }

    /// `api_url`, or the production endpoint.
    #[must_use]
    pub fn api_url(&self) -> &str {
        self.api_url.as_deref().unwrap_or(Self::DEFAULT_API_URL)
    }
}

/// The `cloudflare:` account block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloudflareAccount {
    /// API token with Zone.DNS:Edit.
    pub api_token_file: SecretSource,
    /// The v4 API base; Cloudflare's own when unset.
    #[serde(default)]
    pub api_url: Option<String>,
    /// PEM roots to trust for the API's TLS besides the system's (a proxy, a test double).
    #[serde(default)]
    pub ca_bundle_file: Option<PathBuf>,
}

impl CloudflareAccount {
    /// Cloudflare's v4 API.
    pub const DEFAULT_API_URL: &'static str = "https://api.cloudflare.com/client/v4";

    /// `api_url`, or Cloudflare's own.
    #[must_use]
    pub fn api_url(&self) -> &str {
        self.api_url.as_deref().unwrap_or(Self::DEFAULT_API_URL)
    }
}

/// The `acme:` account block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AcmeAccount {
    /// The ACME directory URL.
    pub directory_url: String,
    /// Contact address registered with the account.
    #[serde(default)]
    pub contact_email: Option<String>,
    /// Where the account key and URL are saved (created on first run, 0600).
    pub account_credentials_file: PathBuf,
    /// External account binding, for CAs that require one.
    #[serde(default)]
    pub external_account_binding: Option<ExternalAccountBinding>,
    /// Certificate profile to order by default (e.g. `shortlived`), if the CA offers profiles.
    #[serde(default)]
    pub profile: Option<String>,
    /// PEM roots to trust for the directory's TLS, besides the system's (private ACME servers).
    #[serde(default)]
    pub ca_bundle_file: Option<PathBuf>,
    /// The directory `rota renew --dry-run` orders from; see [`AcmeAccount::dry_run`].
    #[serde(default)]
    pub staging_directory_url: Option<String>,
}

/// Let's Encrypt's production directory, whose dry runs go to its staging one by default.
pub const LETS_ENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory: untrusted certs, generous rate limits.
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

impl AcmeAccount {
    /// The directory a dry run orders from: `staging_directory_url`, else Let's Encrypt's
    /// staging for its production directory, else `directory_url` itself (a real order).
    #[must_use]
    pub fn dry_run_directory_url(&self) -> &str {
        match &self.staging_directory_url {
            Some(url) => url,
            None if self.directory_url == LETS_ENCRYPT_PRODUCTION => LETS_ENCRYPT_STAGING,
            None => &self.directory_url,
        }
    }

    /// This block as a dry run uses it: the dry-run directory, and for a directory other than
    /// `directory_url` an account of its own, kept in `<account_credentials_file>.staging`
    /// (an account belongs to one directory).
    #[must_use]
    pub fn dry_run(&self) -> Self {
        let mut dry = self.clone();
        let url = self.dry_run_directory_url();
        if url != self.directory_url {
            url.clone_into(&mut dry.directory_url);
            let mut file = self.account_credentials_file.clone().into_os_string();
            file.push(".staging");
            dry.account_credentials_file = file.into();
        }
        dry
    }
}

/// The `dsm:` block: where the Synology NAS answers and how rota logs in to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DsmConnection {
    /// DSM's web address, e.g. `https://nas.home.arpa:5001`.
    pub url: String,
    /// A DSM account in the `administrators` group.
    pub username: String,
    /// That account's password.
    pub password_file: SecretSource,
    /// For accounts with 2-factor sign-in: the device token (`did`) DSM issued to a trusted
    /// device, so no one-time code is asked for.
    #[serde(default)]
    pub device_token_file: Option<SecretSource>,
    /// The device name the token was issued to; `rota` by default.
    #[serde(default)]
    pub device_name: Option<String>,
    /// PEM roots to trust for DSM's TLS besides the system's (DSM's own self-signed CA).
    #[serde(default)]
    pub ca_bundle_file: Option<PathBuf>,
}

/// ACME external account binding (RFC 8555 §7.3.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExternalAccountBinding {
    /// CA-assigned key id.
    pub kid: String,
    /// Base64url HMAC key.
    pub hmac_key_file: SecretSource,
}

/// The `cluster:` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Turns federation on.
    #[serde(default)]
    pub enabled: bool,
    /// This node's unique name.
    pub node_id: String,
    /// Leader lease; refreshed every third of it.
    #[serde(default = "default_lease_seconds")]
    pub lease_seconds: u64,
    /// Where the leader lease lives.
    #[serde(default, skip_serializing_if = "Coordinator::is_default")]
    pub coordinator: Coordinator,
    /// `kubernetes_lease`: the namespace of the `Lease` object; required with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `kubernetes_lease`: the name of the `Lease` object.
    #[serde(
        default = "default_lease_name",
        skip_serializing_if = "is_default_lease_name"
    )]
    pub lease_name: String,
    /// `kubernetes_lease`: kubeconfig to use; the in-cluster ServiceAccount when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig_path: Option<PathBuf>,
}

fn default_lease_seconds() -> u64 {
    60
}

/// The `Lease` name when `cluster.lease_name` is omitted.
pub const DEFAULT_LEASE_NAME: &str = "rota-leader";

fn default_lease_name() -> String {
    DEFAULT_LEASE_NAME.to_owned()
}

fn is_default_lease_name(name: &str) -> bool {
    name == DEFAULT_LEASE_NAME
}

/// `cluster.coordinator`: where the leader lease is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Coordinator {
    /// A lock record in the shared SurrealDB audit store.
    #[default]
    SurrealLock,
    /// A `coordination.k8s.io/v1` `Lease` object, as Kubernetes controllers elect leaders.
    KubernetesLease,
}

impl Coordinator {
    #[expect(clippy::trivially_copy_pass_by_ref, reason = "serde's signature")]
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

tagged_enum! {
    /// One entry of `alerts:`.
    pub enum AlertSpec {
        /// SMTP mail.
        "email" => Email(EmailAlert) = Available,
        /// JSON POST to a URL.
        "webhook" => Webhook(WebhookAlert) = Available,
    }
}

/// How the email sink secures its SMTP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// STARTTLS upgrade, usually port 587.
    Starttls,
    /// TLS from the first byte, usually port 465.
    Implicit,
    /// Plain text; only for a local relay.
    None,
}

/// `kind: email` alert sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailAlert {
    /// SMTP server host.
    pub smtp_host: String,
    /// SMTP server port.
    pub smtp_port: u16,
    /// Transport security.
    pub tls: SmtpTls,
    /// SMTP user, if the server wants auth.
    #[serde(default)]
    pub username: Option<String>,
    /// SMTP password, read when sending.
    #[serde(default)]
    pub password_file: Option<SecretSource>,
    /// Envelope and header sender.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// PEM roots to trust for the server's TLS besides the system's (a private relay).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// `kind: webhook` alert sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookAlert {
    /// Where the JSON envelope is POSTed.
    pub url: String,
    /// Optional bearer token.
    #[serde(default)]
    pub bearer_token_file: Option<SecretSource>,
    /// Per-request timeout.
    #[serde(default = "default_webhook_timeout")]
    pub timeout_seconds: u64,
}

fn default_webhook_timeout() -> u64 {
    10
}

/// One entry of `certs:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertSpec {
    /// Stable id.
    pub id: CertId,
    /// Free text shown in the CLI and dashboard.
    #[serde(default)]
    pub description: Option<String>,
    /// Every name the cert covers, as SANs.
    pub domains: Vec<DomainName>,
    /// The persistent private key (generated there on first use, never replaced).
    pub key_path: PathBuf,
    /// What kind of key rota generates at `key_path` when there is none.
    #[serde(default, skip_serializing_if = "KeySpec::is_default")]
    pub key: KeySpec,
    /// Which CA issues it.
    pub ca: CaSpec,
    /// How domain control is proven; optional where the CA asks for none.
    #[serde(default)]
    pub dcv: Option<DcvSpec>,
    /// Where the issued cert lands.
    pub install: InstallSpec,
    /// Overrides `daemon.renew_threshold_days` for this cert (a CA's renewal window still wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_before_days: Option<u32>,
}

impl CertSpec {
    /// How many days before expiry this cert is renewed when its CA publishes no window.
    #[must_use]
    pub fn renew_before_days(&self, daemon: &DaemonConfig) -> u32 {
        self.renew_before_days
            .unwrap_or(daemon.renew_threshold_days)
    }

    /// How long the local CA makes this cert valid, when the local CA issues it.
    #[must_use]
    pub fn local_validity_days(&self, local_ca: &LocalCaConfig) -> Option<u32> {
        match &self.ca {
            CaSpec::Local(local) => Some(local.validity_days.unwrap_or(local_ca.validity_days)),
            _ => None,
        }
    }
}

/// A cert's `key:` block.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    /// The algorithm of a key rota generates; an existing key file always wins.
    #[serde(default, rename = "type")]
    pub key_type: KeyType,
    /// When rota moves to a new key; the default keeps one key forever, for pinning.
    #[serde(default, skip_serializing_if = "KeyRotation::is_never")]
    pub rotation: KeyRotation,
}

/// `key.rotation`: when a renewal switches to the key prepared one renewal ahead at
/// `<key_path>.next`, so its pin can be published before it is used. Written `never`,
/// `every_renewal` or `{ after_days: N }` (by hand below: serde_yaml would want YAML tags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyRotation {
    /// One key for good (no `.next` key is prepared): what pinning operators want.
    #[default]
    Never,
    /// Every renewal uses the key the previous one prepared and announced.
    EveryRenewal,
    /// A renewal switches to the prepared key once the current one has been in use this many
    /// days.
    AfterDays(u32),
}

impl KeyRotation {
    const WORDS: &[&str] = &["never", "every_renewal", "{ after_days: N }"];

    #[expect(clippy::trivially_copy_pass_by_ref, reason = "serde's signature")]
    fn is_never(&self) -> bool {
        *self == Self::Never
    }
}

impl Serialize for KeyRotation {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        match self {
            Self::Never => serializer.serialize_str("never"),
            Self::EveryRenewal => serializer.serialize_str("every_renewal"),
            Self::AfterDays(days) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("after_days", days)?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for KeyRotation {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = KeyRotation;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`never`, `every_renewal` or `{ after_days: N }`")
            }

            fn visit_str<E: serde::de::Error>(self, word: &str) -> Result<KeyRotation, E> {
                match word {
                    "never" => Ok(KeyRotation::Never),
                    "every_renewal" => Ok(KeyRotation::EveryRenewal),
                    _ => Err(E::unknown_variant(word, KeyRotation::WORDS)),
                }
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<KeyRotation, A::Error> {
                use serde::de::Error as _;
                let mut days = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "after_days" {
                        return Err(A::Error::unknown_field(&key, &["after_days"]));
                    }
                    if days.is_some() {
                        return Err(A::Error::duplicate_field("after_days"));
                    }
                    days = Some(map.next_value::<u32>()?);
                }
                days.map(KeyRotation::AfterDays)
                    .ok_or_else(|| A::Error::missing_field("after_days"))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl JsonSchema for KeyRotation {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "KeyRotation".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "When a renewal switches to the key prepared at `<key_path>.next`: `never` keeps one key for good.",
            "oneOf": [
                { "type": "string", "enum": ["never", "every_renewal"] },
                {
                    "type": "object",
                    "properties": {
                        "after_days": {
                            "description": "Switch once the current key has been in use this many days.",
                            "type": "integer",
                            "format": "uint32",
                            "minimum": 1,
                            "maximum": 3650
                        }
                    },
                    "required": ["after_days"],
                    "additionalProperties": false
                }
            ]
        })
    }
}

impl KeySpec {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// The algorithms rota generates keys for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum KeyType {
    /// ECDSA on NIST P-256 (prime256v1), signing with SHA-256: small and fast.
    #[default]
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    /// ECDSA on NIST P-384 (secp384r1), signing with SHA-384.
    #[serde(rename = "ecdsa-p384")]
    EcdsaP384,
    /// RSA with a 2048-bit modulus, for peers that speak no ECDSA.
    #[serde(rename = "rsa-2048")]
    Rsa2048,
    /// RSA with a 3072-bit modulus.
    #[serde(rename = "rsa-3072")]
    Rsa3072,
    /// RSA with a 4096-bit modulus.
    #[serde(rename = "rsa-4096")]
    Rsa4096,
}

impl KeyType {
    /// The name as written in the config (`ecdsa-p256`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EcdsaP256 => "ecdsa-p256",
            Self::EcdsaP384 => "ecdsa-p384",
            Self::Rsa2048 => "rsa-2048",
            Self::Rsa3072 => "rsa-3072",
            Self::Rsa4096 => "rsa-4096",
        }
    }
}

tagged_enum! {
    /// A cert's `ca:` block.
    pub enum CaSpec {
        /// The embedded CA; no DCV.
        "local" => Local(LocalCa) = Available,
        /// Namecheap reissue within an existing SSL subscription.
        "namecheap" => Namecheap(NamecheapCa) = Available,
        /// Any RFC 8555 directory.
        "acme" => Acme(AcmeCa) = Available,
    }
}

impl CaSpec {
    /// Whether this CA asks for domain-control validation, and so needs a `dcv:` block.
    #[must_use]
    pub fn needs_dcv(&self) -> bool {
        !matches!(self, Self::Local(_))
    }
}

/// `ca: { kind: local, validity_days }`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalCa {
    /// Overrides `local_ca.validity_days` for this cert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity_days: Option<u32>,
}

/// `ca: { kind: namecheap, ssl_id }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamecheapCa {
    /// The numeric SSL subscription id.
    pub ssl_id: u64,
}

/// `ca: { kind: acme, profile }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AcmeCa {
    /// Overrides `acme.profile` for this cert.
    #[serde(default)]
    pub profile: Option<String>,
}

tagged_enum! {
    /// A cert's `dcv:` block.
    pub enum DcvSpec {
        /// DNS-01 through Namecheap's DNS API.
        "namecheap" => Namecheap(NamecheapDcv) = Available,
        /// DNS-01 through Cloudflare's v4 API.
        "cloudflare" => Cloudflare(CloudflareDcv) = Available,
        /// HTTP-01 through a directory an existing web server serves.
        "webroot" => Webroot(WebrootDcv) = Available,
        /// DNS-01 through RFC 2136 dynamic updates, signed with TSIG, to the operator's own
        /// DNS server (BIND, Knot, PowerDNS, Technitium).
        "rfc2136" => Rfc2136(Rfc2136Dcv) = Available,
    }
}

impl DcvSpec {
    /// Whether this solver answers DNS-01 (and so may prove wildcards).
    #[must_use]
    pub fn is_dns01(&self) -> bool {
        matches!(
            self,
            Self::Namecheap(_) | Self::Cloudflare(_) | Self::Rfc2136(_)
        )
    }
}

/// `dcv: { kind: namecheap }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamecheapDcv {}

/// `dcv: { kind: cloudflare }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloudflareDcv {}

/// `dcv: { kind: webroot, directory }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebrootDcv {
    /// The document root the web server serves.
    pub directory: PathBuf,
}

tagged_enum! {
    /// A cert's `install:` block.
    pub enum InstallSpec {
        /// Synology DSM certificate store.
        "dsm" => Dsm(DsmInstall) = Available,
        /// PEM files in a directory.
        "filesystem" => Filesystem(FilesystemInstall) = Available,
        /// PEM files plus an nginx reload.
        "nginx" => Nginx(NginxInstall) = Available,
        /// PEM files plus an HAProxy runtime API hot-swap.
        "haproxy" => Haproxy(HaproxyInstall) = Available,
        /// A `kubernetes.io/tls` Secret, server-side applied.
        "k8s_secret" => K8sSecret(K8sSecretInstall) = K8S,
    }
}

/// One shape a file-based install writes the cert in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    /// certbot's `cert.pem`, `chain.pem`, `fullchain.pem` and `privkey.pem`.
    Pem,
    /// `combined.pem`: leaf, chain and key in one file (0600), as HAProxy and lighttpd load.
    Combined,
    /// `cert.p12`: key, leaf and chain in a PKCS#12 file (0600) encrypted with AES-256-CBC
    /// under a PBKDF2-SHA-256 key and sealed with an HMAC-SHA-256, for Java and appliances.
    Pkcs12,
}

fn default_formats() -> Vec<OutputFormat> {
    vec![OutputFormat::Pem]
}

fn is_default_formats(formats: &[OutputFormat]) -> bool {
    formats == [OutputFormat::Pem]
}

/// Where and in which shapes a file-based install writes the cert.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FileOutputs<'a> {
    /// The directory.
    pub directory: &'a std::path::Path,
    /// The shapes, as configured.
    pub formats: &'a [OutputFormat],
    /// The PKCS#12 password's source.
    pub pkcs12_password_file: Option<&'a SecretSource>,
}

/// What every install kind may run after a successful install: the operator's argv and how
/// long it may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostCommand<'a> {
    /// The argv, run without a shell.
    pub argv: &'a [String],
    /// How long it may run before it is killed.
    pub timeout: std::time::Duration,
}

fn default_post_command_timeout() -> u64 {
    60
}

// Options left at their default stay out of the serialized spec, so the spec hash (and with
// it each cert's generation) of a config written before they existed does not change.
#[expect(clippy::trivially_copy_pass_by_ref, reason = "serde's signature")]
fn is_default_post_command_timeout(seconds: &u64) -> bool {
    *seconds == default_post_command_timeout()
}

impl InstallSpec {
    /// The deploy hook of this install, if it has one.
    #[must_use]
    pub fn post_command(&self) -> Option<PostCommand<'_>> {
        let (argv, seconds) = match self {
            Self::Dsm(i) => (&i.post_command, i.post_command_timeout_seconds),
            Self::Filesystem(i) => (&i.post_command, i.post_command_timeout_seconds),
            Self::Nginx(i) => (&i.post_command, i.post_command_timeout_seconds),
            Self::Haproxy(i) => (&i.post_command, i.post_command_timeout_seconds),
            Self::K8sSecret(i) => (&i.post_command, i.post_command_timeout_seconds),
        };
        argv.as_deref().map(|argv| PostCommand {
            argv,
            timeout: std::time::Duration::from_secs(seconds),
        })
    }

    /// Where and how this install writes files, for the kinds that write them.
    #[must_use]
    pub fn file_outputs(&self) -> Option<FileOutputs<'_>> {
        let (directory, formats, pkcs12_password_file) = match self {
            Self::Filesystem(i) => (&i.directory, &i.formats, &i.pkcs12_password_file),
            Self::Nginx(i) => (&i.directory, &i.formats, &i.pkcs12_password_file),
            Self::Haproxy(i) => (&i.directory, &i.formats, &i.pkcs12_password_file),
            Self::Dsm(_) | Self::K8sSecret(_) => return None,
        };
        Some(FileOutputs {
            directory,
            formats,
            pkcs12_password_file: pkcs12_password_file.as_ref(),
        })
    }

    /// The directory this install writes certbot's `fullchain.pem` and `privkey.pem` into, for
    /// the kinds that write them.
    #[must_use]
    pub fn pem_directory(&self) -> Option<&std::path::Path> {
        match self {
            Self::Filesystem(FilesystemInstall { directory, .. })
            | Self::Nginx(NginxInstall { directory, .. })
            | Self::Haproxy(HaproxyInstall { directory, .. }) => Some(directory),
            Self::Dsm(_) | Self::K8sSecret(_) => None,
        }
    }
}

/// `dcv: { kind: rfc2136, server, zone, tsig_key_name, tsig_algorithm, tsig_secret_file }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rfc2136Dcv {
    /// The primary server that accepts updates for `zone`; it is also the one asked whether
    /// a record is visible.
    pub server: HostPort,
    /// The zone the TXT records are written in, e.g. `example.com` (no trailing dot).
    pub zone: DomainName,
    /// The TSIG key's name, as the server's `key` clause spells it.
    pub tsig_key_name: String,
    /// The TSIG MAC algorithm the key was made for.
    pub tsig_algorithm: TsigAlgorithm,
    /// The key's secret: the base64 text of `tsig-keygen`'s `secret "...";` line.
    pub tsig_secret_file: SecretSource,
}

impl Rfc2136Dcv {
    /// The TSIG key bytes from the secret's text: standard base64, as `tsig-keygen` writes it
    /// (surrounding spaces ignored). The error says what is wrong without quoting the text.
    pub fn decode_secret(text: &str) -> Result<Vec<u8>, String> {
        use base64::Engine as _;
        match base64::engine::general_purpose::STANDARD.decode(text.trim()) {
            Ok(key) if key.is_empty() => Err("it decodes to an empty key".to_owned()),
            Ok(key) => Ok(key),
            // base64's own error names the offending byte, which is a piece of the secret.
            Err(_) => Err(
                "it is not base64 (A–Z, a–z, 0–9, `+` and `/`, padded with `=` to a \
                           multiple of four characters)"
                    .to_owned(),
            ),
        }
    }
}

/// The TSIG MAC algorithms rota signs updates with (RFC 8945 §6); the MD5 and SHA-1 ones are
/// left out on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TsigAlgorithm {
    /// HMAC-SHA256, `tsig-keygen`'s default.
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    /// HMAC-SHA384.
    #[serde(rename = "hmac-sha384")]
    HmacSha384,
    /// HMAC-SHA512.
    #[serde(rename = "hmac-sha512")]
    HmacSha512,
}

impl TsigAlgorithm {
    /// The name as in the config and in BIND's `algorithm` statement.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HmacSha256 => "hmac-sha256",
            Self::HmacSha384 => "hmac-sha384",
            Self::HmacSha512 => "hmac-sha512",
        }
    }
}

/// `install: { kind: dsm, description }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DsmInstall {
    /// The label shown in DSM's Control Panel; rota replaces the certificate with this label.
    pub description: String,
    /// argv run without a shell after every successful install: the deploy hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_command: Option<Vec<String>>,
    /// Seconds the deploy hook may run before it is killed and the install fails.
    #[serde(
        default = "default_post_command_timeout",
        skip_serializing_if = "is_default_post_command_timeout"
    )]
    pub post_command_timeout_seconds: u64,
}

/// `install: { kind: filesystem, directory, certbot_archive }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilesystemInstall {
    /// Where `cert.pem`, `chain.pem`, `fullchain.pem` and `privkey.pem` go.
    pub directory: PathBuf,
    /// For a `directory` that is a certbot lineage's `live/NAME`: that lineage's
    /// `archive/NAME`. Each install then writes the next numbered version there and points
    /// the live symlinks at it, as `certbot renew` does, so certbot still reads the lineage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certbot_archive: Option<PathBuf>,
    /// The shapes the cert is written in: certbot's four PEM files (`pem`, always), plus a
    /// `combined.pem` (`combined`) and a `cert.p12` (`pkcs12`).
    #[serde(
        default = "default_formats",
        skip_serializing_if = "is_default_formats"
    )]
    pub formats: Vec<OutputFormat>,
    /// The password `cert.p12` is encrypted with; required by `pkcs12`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkcs12_password_file: Option<SecretSource>,
    /// argv run without a shell after every successful install: the deploy hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_command: Option<Vec<String>>,
    /// Seconds the deploy hook may run before it is killed and the install fails.
    #[serde(
        default = "default_post_command_timeout",
        skip_serializing_if = "is_default_post_command_timeout"
    )]
    pub post_command_timeout_seconds: u64,
}

/// `install: { kind: nginx, directory, test_command, reload_command, verify_address }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NginxInstall {
    /// Where the PEM files go.
    pub directory: PathBuf,
    /// argv run after writing and before the reload, without a shell; `[nginx, -t]` by default.
    #[serde(default)]
    pub test_command: Option<Vec<String>>,
    /// argv run after writing, without a shell; `[nginx, -s, reload]` by default.
    #[serde(default)]
    pub reload_command: Option<Vec<String>>,
    /// Where nginx serves the cert: after the reload, each domain's handshake must present it.
    #[serde(default)]
    pub verify_address: Option<HostPort>,
    /// The shapes the cert is written in: certbot's four PEM files (`pem`, always), plus a
    /// `combined.pem` (`combined`) and a `cert.p12` (`pkcs12`).
    #[serde(
        default = "default_formats",
        skip_serializing_if = "is_default_formats"
    )]
    pub formats: Vec<OutputFormat>,
    /// The password `cert.p12` is encrypted with; required by `pkcs12`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkcs12_password_file: Option<SecretSource>,
    /// argv run without a shell after every successful install: the deploy hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_command: Option<Vec<String>>,
    /// Seconds the deploy hook may run before it is killed and the install fails.
    #[serde(
        default = "default_post_command_timeout",
        skip_serializing_if = "is_default_post_command_timeout"
    )]
    pub post_command_timeout_seconds: u64,
}

/// `install: { kind: haproxy, directory, socket_path, cert_storage_name, verify_address }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HaproxyInstall {
    /// Where the PEM files go.
    pub directory: PathBuf,
    /// HAProxy's admin socket.
    pub socket_path: PathBuf,
    /// The cert's name in HAProxy's storage: the absolute path `crt` loaded it from, where
    /// the combined PEM is written too.
    pub cert_storage_name: String,
    /// Where HAProxy serves the cert: after the swap, each domain's handshake must present it.
    #[serde(default)]
    pub verify_address: Option<HostPort>,
    /// The shapes the cert is written in: certbot's four PEM files (`pem`, always), plus a
    /// `combined.pem` (`combined`) and a `cert.p12` (`pkcs12`).
    #[serde(
        default = "default_formats",
        skip_serializing_if = "is_default_formats"
    )]
    pub formats: Vec<OutputFormat>,
    /// The password `cert.p12` is encrypted with; required by `pkcs12`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkcs12_password_file: Option<SecretSource>,
    /// argv run without a shell after every successful install: the deploy hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_command: Option<Vec<String>>,
    /// Seconds the deploy hook may run before it is killed and the install fails.
    #[serde(
        default = "default_post_command_timeout",
        skip_serializing_if = "is_default_post_command_timeout"
    )]
    pub post_command_timeout_seconds: u64,
}

/// `install: { kind: k8s_secret, namespace, secret_name, kubeconfig_path }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct K8sSecretInstall {
    /// Target namespace.
    pub namespace: String,
    /// Target Secret.
    pub secret_name: String,
    /// Kubeconfig to use; the in-cluster ServiceAccount when omitted.
    #[serde(default)]
    pub kubeconfig_path: Option<PathBuf>,
    /// argv run without a shell after every successful install: the deploy hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_command: Option<Vec<String>>,
    /// Seconds the deploy hook may run before it is killed and the install fails.
    #[serde(
        default = "default_post_command_timeout",
        skip_serializing_if = "is_default_post_command_timeout"
    )]
    pub post_command_timeout_seconds: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(directory_url: &str, staging: Option<&str>) -> AcmeAccount {
        AcmeAccount {
            directory_url: directory_url.to_owned(),
            contact_email: None,
            account_credentials_file: PathBuf::from("/var/lib/rota/acme.json"),
            external_account_binding: None,
            profile: None,
            ca_bundle_file: None,
            staging_directory_url: staging.map(str::to_owned),
        }
    }

    #[test]
    fn a_dry_run_goes_to_staging_with_an_account_of_its_own() {
        let dry = account(LETS_ENCRYPT_PRODUCTION, None).dry_run();
        assert_eq!(dry.directory_url, LETS_ENCRYPT_STAGING);
        assert_eq!(
            dry.account_credentials_file,
            PathBuf::from("/var/lib/rota/acme.json.staging")
        );

        let own = "https://ca.test/staging";
        let dry = account("https://ca.test/dir", Some(own)).dry_run();
        assert_eq!(dry.directory_url, own);
        assert_eq!(
            dry.account_credentials_file,
            PathBuf::from("/var/lib/rota/acme.json.staging")
        );
    }

    #[test]
    fn without_a_staging_directory_a_dry_run_orders_where_renewals_do() {
        let live = account("https://ca.test/dir", None);
        assert_eq!(live.dry_run(), live);
        let same = account("https://ca.test/dir", Some("https://ca.test/dir"));
        assert_eq!(same.dry_run(), same);
    }
}
