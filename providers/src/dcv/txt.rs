//! The TXT record a DNS-01 challenge asks for, in the form the DNS API solvers work with.

use rota_api::{BackendError, DcvChallenge};

/// A DNS-01 TXT record: name in lower case without a trailing dot, value, TTL.
pub(crate) struct TxtRecord<'a> {
    /// The fully qualified record name.
    pub fqdn: String,
    /// The TXT content.
    pub value: &'a str,
    /// The TTL the CA suggested, in seconds.
    pub ttl: u32,
}

impl<'a> TxtRecord<'a> {
    /// The record `challenge` asks `backend` for; any other kind of challenge is refused.
    pub(crate) fn of(
        backend: &'static str,
        challenge: &'a DcvChallenge,
    ) -> Result<Self, BackendError> {
        match challenge {
            DcvChallenge::Dns01 {
                record_name,
                record_value,
                ttl,
            } => Ok(Self {
                fqdn: record_name.trim_end_matches('.').to_ascii_lowercase(),
                value: record_value,
                ttl: *ttl,
            }),
            other @ DcvChallenge::Http01 { .. } => Err(BackendError::invalid(
                backend,
                format!(
                    "cannot answer {}: only DNS-01 TXT records",
                    other.describe()
                ),
            )),
        }
    }
}
