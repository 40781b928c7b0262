//! The DNS record a DNS-based challenge asks for (ACME's TXT, or a CA's DCV CNAME), in the
//! form the DNS API solvers work with.

use rota_api::{BackendError, DcvChallenge};

/// One record to publish: name in lower case without a trailing dot, type, value, TTL.
pub(crate) struct ChallengeRecord<'a> {
    /// The fully qualified record name.
    pub fqdn: String,
    /// `TXT` or `CNAME`.
    pub kind: &'static str,
    /// The TXT content, or the CNAME target without a trailing dot.
    pub value: &'a str,
    /// The TTL the CA suggested, in seconds.
    pub ttl: u32,
}

impl<'a> ChallengeRecord<'a> {
    /// The record `challenge` asks `backend` for; an HTTP challenge is refused.
    pub(crate) fn of(
        backend: &'static str,
        challenge: &'a DcvChallenge,
    ) -> Result<Self, BackendError> {
        let (name, kind, value, ttl) = match challenge {
            DcvChallenge::Dns01 {
                record_name,
                record_value,
                ttl,
            } => (record_name, "TXT", record_value.as_str(), *ttl),
            DcvChallenge::DnsCname {
                record_name,
                target,
                ttl,
            } => (record_name, "CNAME", target.trim_end_matches('.'), *ttl),
            other @ DcvChallenge::Http01 { .. } => {
                return Err(BackendError::invalid(
                    backend,
                    format!("cannot answer {}: only DNS records", other.describe()),
                ));
            }
        };
        Ok(Self {
            fqdn: name.trim_end_matches('.').to_ascii_lowercase(),
            kind,
            value,
            ttl,
        })
    }

    /// Whether a record of this type holding `content` is this one: TXT contents without the
    /// quotes some clients add, CNAME targets in any case and with or without the final dot.
    pub(crate) fn matches(&self, content: &str) -> bool {
        if self.kind == "CNAME" {
            content
                .trim_end_matches('.')
                .eq_ignore_ascii_case(self.value)
        } else {
            let unquoted = content
                .strip_prefix('"')
                .and_then(|c| c.strip_suffix('"'))
                .unwrap_or(content);
            unquoted == self.value
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_quotes_and_cname_dots_do_not_matter() {
        let txt = DcvChallenge::Dns01 {
            record_name: "_acme-challenge.A.test.".into(),
            record_value: "abc".into(),
            ttl: 60,
        };
        let record = ChallengeRecord::of("t", &txt).unwrap();
        assert_eq!(record.fqdn, "_acme-challenge.a.test");
        assert!(record.matches("\"abc\"") && record.matches("abc"));
        assert!(!record.matches("\"abc") && !record.matches("ABC"));
        let cname = DcvChallenge::DnsCname {
            record_name: "_h.a.test".into(),
            target: "x.y.sectigo.com.".into(),
            ttl: 60,
        };
        let record = ChallengeRecord::of("t", &cname).unwrap();
        assert_eq!((record.kind, record.value), ("CNAME", "x.y.sectigo.com"));
        assert!(record.matches("X.Y.sectigo.com."));
    }
}
