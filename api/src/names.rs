//! Newtypes for the strings in a config that carry a narrower truth than `String`:
//! cert ids, DNS names and secrets. Each validates on construction so that code past the
//! parser never sees an invalid one.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A cert's stable identifier, used in logs, the CLI, the API and the audit store.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CertId(String);

impl CertId {
    /// Checks `s` against the id grammar: 1–64 of `[A-Za-z0-9._-]`, starting with a letter or digit.
    pub fn new(s: &str) -> Result<Self, String> {
        let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        match s.chars().next() {
            None => Err("a cert id cannot be empty".into()),
            Some(first) if !first.is_ascii_alphanumeric() => {
                Err(format!("cert id `{s}` must start with a letter or a digit"))
            }
            Some(_) if s.len() > 64 => Err(format!("cert id `{s}` is longer than 64 characters")),
            Some(_) if !s.chars().all(valid_char) => Err(format!(
                "cert id `{s}` may only contain letters, digits, `-`, `_` and `.`"
            )),
            Some(_) => Ok(Self(s.to_owned())),
        }
    }

    /// The id as written in the config.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CertId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for CertId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CertId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// A name a cert covers: a DNS name, lower-cased, maybe a wildcard (`*.example.com`), or an
/// IPv4/IPv6 address (RFC 8738), in its canonical text form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainName(String);

impl DomainName {
    /// Validates `s` as a hostname (LDH labels of 1–63 octets, 253 in all, no trailing dot),
    /// optionally with a leading `*.` wildcard label.
    pub fn new(s: &str) -> Result<Self, String> {
        if let Ok(ip) = s.parse::<std::net::IpAddr>() {
            return Ok(Self(ip.to_string()));
        }
        let lower = s.to_ascii_lowercase();
        let base = lower.strip_prefix("*.").unwrap_or(&lower);
        if base.is_empty() {
            return Err(format!("`{s}` is not a DNS name"));
        }
        if base.parse::<std::net::IpAddr>().is_ok() {
            return Err(format!(
                "`{s}`: a wildcard covers DNS names only; list the IP address itself"
            ));
        }
        if lower.len() > 253 {
            return Err(format!("`{s}` is longer than 253 characters"));
        }
        if base.ends_with('.') {
            return Err(format!(
                "`{s}` ends with a dot: write it without the trailing `.`"
            ));
        }
        for label in base.split('.') {
            if label.contains('*') {
                return Err(format!(
                    "`{s}`: a wildcard is only allowed as the whole first label (`*.example.com`)"
                ));
            }
            if label.is_empty() {
                return Err(format!("`{s}` has an empty label"));
            }
            if label.len() > 63 {
                return Err(format!("`{s}` has a label longer than 63 characters"));
            }
            if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(format!(
                    "`{s}` may only contain letters, digits, `-` and `.` (use the punycode `xn--` form for IDNs)"
                ));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(format!("`{s}` has a label that starts or ends with `-`"));
            }
        }
        Ok(Self(lower))
    }

    /// The address, when this is an IP address rather than a DNS name.
    #[must_use]
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        self.0.parse().ok()
    }

    /// True for `*.example.com`.
    #[must_use]
    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with("*.")
    }

    /// The name as it goes into a SAN.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for DomainName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DomainName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// A `host:port` to connect to: a DNS name or an IP address (IPv6 in brackets) and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    host: String,
    port: u16,
}

impl HostPort {
    /// Parses `host:port`, e.g. `127.0.0.1:443`, `[::1]:443` or `www.example.com:8443`.
    pub fn new(s: &str) -> Result<Self, String> {
        let wrong = || {
            format!(
                "`{s}` is not `host:port` (a host name or an IP address, IPv6 in brackets, then a port from 1 to 65535)"
            )
        };
        let (host, port) = s.rsplit_once(':').ok_or_else(wrong)?;
        let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(wrong)?;
        let host = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            v6.parse::<std::net::Ipv6Addr>().map_err(|_| wrong())?;
            v6.to_owned()
        } else if host.parse::<std::net::Ipv4Addr>().is_ok() {
            host.to_owned()
        } else {
            DomainName::new(host)
                .ok()
                // An IPv6 address must come in brackets: `::1:443` reads two ways.
                .filter(|d| !d.is_wildcard() && d.ip().is_none())
                .ok_or_else(wrong)?
                .as_str()
                .to_owned()
        };
        Ok(Self { host, port })
    }

    /// The host name or address, without brackets.
    #[must_use]
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl Serialize for HostPort {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HostPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// A secret value (API token, password, key material); never printed nor serialized.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret read from a file or the environment.
    #[must_use]
    pub fn new(secret: String) -> Self {
        Self(secret)
    }

    /// The secret itself, for the one place that sends it to its peer.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where a `*_file` secret comes from: a file path, or `env:VAR` for an environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Read the secret from this file (trailing newline trimmed).
    File(PathBuf),
    /// Read the secret from this environment variable.
    Env(String),
}

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// `env:VAR` names a variable that is not set.
    #[error(
        "environment variable `{0}` is not set: export it in rotad's environment or point the field at a file"
    )]
    EnvUnset(String),
    /// The secret file could not be read.
    #[error("cannot read secret file {path}: {source}")]
    File {
        /// The file named in the config.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The secret is empty.
    #[error("secret from {0} is empty")]
    Empty(String),
}

impl SecretSource {
    /// Reads the secret now, so a rotated file or variable is picked up on the next use.
    pub fn resolve(&self) -> Result<SecretString, SecretError> {
        let (raw, origin) = match self {
            Self::Env(var) => (
                std::env::var(var).map_err(|_| SecretError::EnvUnset(var.clone()))?,
                format!("env:{var}"),
            ),
            Self::File(path) => (
                read_secret_file(path)
                    .and_then(|bytes| {
                        String::from_utf8(bytes)
                            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
                    })
                    .map_err(|source| SecretError::File {
                        path: path.clone(),
                        source,
                    })?,
                path.display().to_string(),
            ),
        };
        let trimmed = raw.trim_end_matches(['\r', '\n']);
        if trimmed.is_empty() {
            return Err(SecretError::Empty(origin));
        }
        Ok(SecretString(trimmed.to_owned()))
    }

    /// Makes a relative file path relative to `base` (the config file's directory).
    #[must_use]
    pub fn relative_to(&self, base: &Path) -> Self {
        match self {
            Self::File(p) if p.is_relative() => Self::File(crate::clean_path::join_clean(base, p)),
            other => other.clone(),
        }
    }
}

/// The largest secret file read: a token or a key is a few hundred bytes, and a path that
/// names `/dev/zero` or a log file must not be read to the end.
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// Reads a secret file of at most [`MAX_SECRET_BYTES`]; a larger one is an error that says
/// so (and never what it holds).
pub(crate) fn read_secret_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_SECRET_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_SECRET_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "it is larger than {} KiB, which no token or key is",
                MAX_SECRET_BYTES / 1024
            ),
        ));
    }
    Ok(bytes)
}

impl Serialize for SecretSource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::File(p) => s.serialize_str(&p.to_string_lossy()),
            Self::Env(v) => s.serialize_str(&format!("env:{v}")),
        }
    }
}

impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if let Some(var) = s.strip_prefix("env:") {
            let valid = !var.is_empty()
                && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !var.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(serde::de::Error::custom(format!(
                    "`{s}` is not a valid `env:VAR` reference: VAR must be letters, digits and `_`"
                )));
            }
            return Ok(Self::Env(var.to_owned()));
        }
        if s.is_empty() {
            return Err(serde::de::Error::custom(
                "a secret file path cannot be empty: give a path or `env:VAR`",
            ));
        }
        Ok(Self::File(PathBuf::from(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_names() {
        for (input, ok, why) in [
            ("Example.COM", true, "lower-cased"),
            ("*.example.com", true, "leading wildcard"),
            ("nas", true, "single-label LAN name"),
            ("a.*.example.com", false, "wildcard not first"),
            ("*example.com", false, "partial wildcard"),
            ("example.com.", false, "trailing dot"),
            ("exa_mple.com", false, "underscore"),
            ("-a.com", false, "leading hyphen"),
            ("a..com", false, "empty label"),
            ("", false, "empty"),
            ("*.", false, "bare wildcard"),
            ("192.0.2.7", true, "an IPv4 address (RFC 8738)"),
            ("2001:DB8::0:1", true, "an IPv6 address"),
            ("*.192.0.2.7", false, "a wildcard over an address"),
        ] {
            assert_eq!(DomainName::new(input).is_ok(), ok, "{input}: {why}");
        }
        let v6 = DomainName::new("2001:DB8::0:1").unwrap();
        assert_eq!(v6.as_str(), "2001:db8::1", "canonical form");
        assert!(v6.ip().is_some());
        assert!(DomainName::new("a.test").unwrap().ip().is_none());
        assert_eq!(
            DomainName::new("Example.COM").unwrap().as_str(),
            "example.com"
        );
    }

    #[test]
    fn host_ports() {
        for (input, parsed, why) in [
            ("127.0.0.1:443", Some("127.0.0.1:443"), "IPv4"),
            ("[::1]:8443", Some("[::1]:8443"), "IPv6 in brackets"),
            (
                "WWW.Example.com:443",
                Some("www.example.com:443"),
                "a DNS name, lower-cased",
            ),
            ("localhost:1", Some("localhost:1"), "single-label name"),
            ("::1:443", None, "IPv6 without brackets is ambiguous"),
            ("example.com", None, "no port"),
            ("example.com:0", None, "port 0 connects nowhere"),
            ("example.com:65536", None, "port out of range"),
            (":443", None, "no host"),
            ("*.example.com:443", None, "a wildcard is no host"),
            ("a b:443", None, "space in the host"),
        ] {
            let got = HostPort::new(input).ok().map(|h| h.to_string());
            assert_eq!(got.as_deref(), parsed, "{input}: {why}");
        }
        let v6 = HostPort::new("[::1]:8443").unwrap();
        assert_eq!((v6.host(), v6.port()), ("::1", 8443));
    }

    #[test]
    fn cert_ids() {
        assert!(CertId::new("web-1.lan").is_ok());
        assert!(CertId::new("-web").is_err());
        assert!(CertId::new("a b").is_err());
        assert!(CertId::new(&"a".repeat(65)).is_err());
    }

    #[test]
    fn an_oversized_secret_file_is_not_read_to_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, vec![b'k'; MAX_SECRET_BYTES as usize + 1]).unwrap();
        let err = SecretSource::File(path).resolve().unwrap_err().to_string();
        assert!(err.contains("larger than 64 KiB"), "{err}");
        assert!(
            !err.contains("kkk"),
            "the error never quotes the file: {err}"
        );
    }

    #[test]
    fn secrets_never_print() {
        let s = SecretString::new("hunter2".into());
        assert!(!format!("{s:?} {s}").contains("hunter2"));
    }
}

/// Describes a newtype that is written as one string in `rota.yaml`, for the JSON Schema of
/// the config (`rota config schema`): inlined, with the grammar its parser checks.
macro_rules! string_schema {
    ($ty:ty, $description:literal $(, $key:literal : $value:literal)*) => {
        impl schemars::JsonSchema for $ty {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($ty).into()
            }

            fn inline_schema() -> bool {
                true
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "description": $description,
                    $($key: $value,)*
                })
            }
        }
    };
}

string_schema!(
    CertId,
    "1-64 of letters, digits, `-`, `_` and `.`, starting with a letter or a digit",
    "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
);
string_schema!(
    DomainName,
    "a DNS name (lower-cased), or a wildcard `*.example.com`"
);
string_schema!(
    HostPort,
    "`host:port`; an IPv6 address in brackets, e.g. `[::1]:443`"
);
string_schema!(
    SecretSource,
    "a file holding the secret (trailing newline trimmed), or `env:VAR` for an environment variable"
);
