//! The names of a cert as subjectAltName entries, both ways: what rota puts into CSRs and
//! local-CA leaves (a DNS name as `dNSName`, an address as `iPAddress`, RFC 5280 §4.2.1.6),
//! and the text rota compares with the spec when it reads a cert or CSR back.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rcgen::SanType;
use rota_api::DomainName;
use x509_parser::prelude::GeneralName;

/// The SAN entry for `name`.
pub(crate) fn entry(name: &DomainName) -> Result<SanType, String> {
    match name.ip() {
        Some(ip) => Ok(SanType::IpAddress(ip)),
        None => rcgen::string::Ia5String::try_from(name.as_str())
            .map(SanType::DnsName)
            .map_err(|e| format!("{name}: {e}")),
    }
}

/// A SAN entry as the spec would write it (`a.test`, `192.0.2.7`, `2001:db8::1`), or
/// `None` for kinds a cert's names never use (e-mail, URI, …).
#[must_use]
pub fn text(name: &GeneralName<'_>) -> Option<String> {
    match name {
        GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
        GeneralName::IPAddress(bytes) => {
            let ip = match bytes.len() {
                4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(*bytes).ok()?)),
                16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(*bytes).ok()?)),
                _ => return None,
            };
            Some(ip.to_string())
        }
        _ => None,
    }
}
