//! Placing an order (`submit`): the identifiers, the checked profile, `replaces` for ARI, and
//! for each authorization not yet valid the challenge picked by walking the DCV solver's
//! kinds in order. What `await_issuance` needs later travels in the order handle, and is
//! turned back into a [`PendingOrder`] there.

use instant_acme::{
    Account, AuthorizationHandle, AuthorizationStatus, CertificateIdentifier, ChallengeType,
    Identifier, NewOrder, Order,
};
use rota_api::{BackendError, ChallengeKind, DcvChallenge, DomainName};

use super::KIND;
use super::problem::{backend_error, retry_bad_nonce};

/// TTL of the DNS-01 TXT records rota asks solvers to publish; short, they live minutes.
const TXT_TTL: u32 = 60;

/// An order between `submit` and `await_issuance`.
pub(crate) struct PendingOrder {
    /// The order, with its authorizations' state cached.
    pub order: Order,
    /// The challenges to mark ready once rota has published their responses.
    pub chosen: Vec<ChosenChallenge>,
    /// The CSR to finalize with: rota's, so the per-cert key stays the same.
    pub csr_der: Vec<u8>,
}

/// The challenge picked for one authorization; kept in the order handle's details.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct ChosenChallenge {
    /// The authorization it belongs to.
    pub authz_url: String,
    /// Its kind.
    pub kind: ChallengeKind,
    /// The name it proves (`*.example.com` for a wildcard), for messages.
    pub identifier: String,
}

/// Checks `profile` against the ones the directory advertises.
pub(crate) fn check_profile(profile: &str, offered: &[&str]) -> Result<(), BackendError> {
    if offered.contains(&profile) {
        return Ok(());
    }
    let mut names = offered.to_vec();
    names.sort_unstable();
    let offers = if names.is_empty() {
        "it advertises no profiles: remove `profile`".to_owned()
    } else {
        format!("it offers: {}", names.join(", "))
    };
    Err(BackendError::invalid(
        KIND,
        format!("the CA does not offer the certificate profile `{profile}`; {offers}"),
    ))
}

/// Creates the order. With `replaces` (the installed cert, for ARI) a CA may refuse the
/// order, e.g. for a cert it did not issue; then it is placed once more without.
pub(crate) async fn place(
    account: &Account,
    domains: &[DomainName],
    profile: Option<&str>,
    replaces: Option<CertificateIdentifier<'static>>,
) -> Result<Order, BackendError> {
    // Wildcards are DNS identifiers too, written `*.example.com` (RFC 8555 §7.1.3).
    let identifiers: Vec<Identifier> = domains
        .iter()
        .map(|d| match d.ip() {
            // RFC 8738: an address is an `ip` identifier, proven by HTTP-01 (or TLS-ALPN-01).
            Some(ip) => Identifier::Ip(ip),
            None => Identifier::Dns(d.as_str().to_owned()),
        })
        .collect();
    if let Some(replaces) = &replaces {
        match new_order(account, &identifiers, profile, Some(replaces)).await {
            Ok(order) => return Ok(order),
            // The directory has no renewalInfo: there is nothing to tell it.
            Err(instant_acme::Error::Unsupported(_)) => {}
            Err(e) => {
                let err = backend_error("creating the order", e);
                if matches!(err, BackendError::RateLimited { .. }) {
                    return Err(err);
                }
                tracing::info!(error = %err, %replaces, "the CA refused the order with `replaces`; ordering without it");
            }
        }
    }
    new_order(account, &identifiers, profile, None)
        .await
        .map_err(|e| backend_error("creating the order", e))
}

async fn new_order(
    account: &Account,
    identifiers: &[Identifier],
    profile: Option<&str>,
    replaces: Option<&CertificateIdentifier<'static>>,
) -> Result<Order, instant_acme::Error> {
    let mut request = NewOrder::new(identifiers);
    if let Some(profile) = profile {
        request = request.profile(profile);
    }
    if let Some(replaces) = replaces {
        request = request.replaces(replaces.clone());
    }
    retry_bad_nonce!(account.new_order(&request))
}

/// Fetches every authorization of `order` so later walks find them cached: a fetch that
/// fails on a bad nonce is retried, and the ones already fetched stay cached in the order.
pub(crate) async fn fetch_authorizations(order: &mut Order) -> Result<(), BackendError> {
    retry_bad_nonce!(async {
        let mut authorizations = order.authorizations();
        while let Some(fetched) = authorizations.next().await {
            fetched?;
        }
        Ok(())
    })
    .map_err(|e| backend_error("fetching the order's authorizations", e))
}

/// The responses rota must publish for `order`, and which challenges to mark ready after.
pub(crate) async fn challenges(
    order: &mut Order,
    preferred: &[ChallengeKind],
) -> Result<(Vec<DcvChallenge>, Vec<ChosenChallenge>), BackendError> {
    fetch_authorizations(order).await?;

    let mut responses = Vec::new();
    let mut chosen = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let authz = authz.map_err(|e| backend_error("reading an authorization", e))?;
        match authz.status {
            // Validated earlier for this account (authorization reuse): nothing to prove.
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            other => {
                return Err(BackendError::Refused {
                    backend: KIND,
                    detail: format!(
                        "the authorization for {} is {} before any challenge was answered",
                        authz.identifier(),
                        format!("{other:?}").to_lowercase()
                    ),
                });
            }
        }
        let (response, choice) = respond(authz, preferred)?;
        responses.push(response);
        chosen.push(choice);
    }
    Ok((responses, chosen))
}

/// The response to publish for one pending authorization, with the challenge it answers.
fn respond(
    authz: AuthorizationHandle<'_>,
    preferred: &[ChallengeKind],
) -> Result<(DcvChallenge, ChosenChallenge), BackendError> {
    // Rebound so the borrow `challenge` takes may end inside this function.
    let mut authz = authz;
    let identifier = authz.identifier().to_string();
    let (name, is_ip) = match authz.identifier().identifier.clone() {
        Identifier::Dns(name) => (name, false),
        Identifier::Ip(ip) => (ip.to_string(), true),
        _ => {
            return Err(BackendError::invalid(
                KIND,
                format!(
                    "the CA asks to prove {identifier}, which is neither a DNS name nor an IP address"
                ),
            ));
        }
    };
    // RFC 8738 §7: an address has no DNS zone to put a TXT record in.
    let preferred: Vec<ChallengeKind> = preferred
        .iter()
        .copied()
        .filter(|kind| !is_ip || *kind != ChallengeKind::Dns01)
        .collect();
    let preferred = preferred.as_slice();
    let offered: Vec<ChallengeType> = authz.challenges.iter().map(|c| c.r#type.clone()).collect();
    let kind = pick_kind(&offered, preferred)
        .map_err(|e| BackendError::invalid(KIND, format!("{identifier}: {e}")))?;
    let authz_url = authz.url().to_owned();
    let challenge = authz.challenge(acme_type(kind)).ok_or_else(|| {
        BackendError::invalid(KIND, format!("{identifier}: the picked challenge vanished"))
    })?;
    let key_authorization = challenge.key_authorization();
    let response = match kind {
        ChallengeKind::Dns01 => DcvChallenge::Dns01 {
            // The authorization names the base domain of a wildcard; strip `*.` anyway.
            record_name: format!("_acme-challenge.{}", name.trim_start_matches("*.")),
            record_value: key_authorization.dns_value(),
            ttl: TXT_TTL,
        },
        ChallengeKind::Http01 => DcvChallenge::Http01 {
            domain: name,
            token: challenge.token.clone(),
            key_authorization: key_authorization.as_str().to_owned(),
        },
    };
    let choice = ChosenChallenge {
        authz_url,
        kind,
        identifier,
    };
    Ok((response, choice))
}

/// The first of the solver's `preferred` kinds that the CA `offered`.
pub(crate) fn pick_kind(
    offered: &[ChallengeType],
    preferred: &[ChallengeKind],
) -> Result<ChallengeKind, String> {
    if let Some(kind) = preferred
        .iter()
        .find(|kind| offered.contains(&acme_type(**kind)))
    {
        return Ok(*kind);
    }
    let offers: Vec<String> = offered.iter().map(type_name).collect();
    let answers: Vec<&str> = preferred.iter().map(|k| kind_name(*k)).collect();
    let solver = if answers.is_empty() {
        "the cert has no DCV solver".to_owned()
    } else {
        format!("the DCV solver answers only {}", answers.join(", "))
    };
    Err(format!(
        "the CA offers {} but {solver}",
        if offers.is_empty() {
            "no challenge".to_owned()
        } else {
            offers.join(", ")
        }
    ))
}

pub(crate) fn acme_type(kind: ChallengeKind) -> ChallengeType {
    match kind {
        ChallengeKind::Dns01 => ChallengeType::Dns01,
        ChallengeKind::Http01 => ChallengeType::Http01,
    }
}

fn kind_name(kind: ChallengeKind) -> &'static str {
    match kind {
        ChallengeKind::Dns01 => "dns-01",
        ChallengeKind::Http01 => "http-01",
    }
}

/// The challenge type as RFC 8555 and the CA spell it.
pub(crate) fn type_name(kind: &ChallengeType) -> String {
    match kind {
        ChallengeType::Http01 => "http-01".to_owned(),
        ChallengeType::Dns01 => "dns-01".to_owned(),
        ChallengeType::TlsAlpn01 => "tls-alpn-01".to_owned(),
        ChallengeType::DeviceAttest01 => "device-attest-01".to_owned(),
        ChallengeType::Unknown(name) => name.clone(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_solvers_order_decides_the_challenge() {
        use ChallengeKind::{Dns01, Http01};
        let all = [
            ChallengeType::Http01,
            ChallengeType::Dns01,
            ChallengeType::TlsAlpn01,
        ];
        for (offered, preferred, picked, why) in [
            (
                &all[..],
                &[Dns01, Http01][..],
                Some(Dns01),
                "first preference offered",
            ),
            (
                &all[..],
                &[Http01, Dns01][..],
                Some(Http01),
                "order is the solver's",
            ),
            (
                &all[1..],
                &[Http01, Dns01][..],
                Some(Dns01),
                "falls through to the next",
            ),
            (
                &all[2..],
                &[Http01, Dns01][..],
                None,
                "nothing the solver answers",
            ),
            (&all[..], &[][..], None, "no solver at all"),
            (&[][..], &[Dns01][..], None, "a CA offering nothing"),
        ] {
            assert_eq!(pick_kind(offered, preferred).ok(), picked, "{why}");
        }
    }

    #[test]
    fn a_mismatch_names_both_sides() {
        let offered = [
            ChallengeType::TlsAlpn01,
            ChallengeType::Unknown("dns-account-01".into()),
        ];
        let err = pick_kind(&offered, &[ChallengeKind::Http01, ChallengeKind::Dns01]).unwrap_err();
        assert_eq!(
            err,
            "the CA offers tls-alpn-01, dns-account-01 but the DCV solver answers only \
             http-01, dns-01"
        );
        let err = pick_kind(&[ChallengeType::Dns01], &[]).unwrap_err();
        assert_eq!(err, "the CA offers dns-01 but the cert has no DCV solver");
    }

    #[test]
    fn profiles_are_checked_against_the_directory() {
        assert!(check_profile("shortlived", &["classic", "shortlived"]).is_ok());
        let err = check_profile("tlsserver", &["shortlived", "classic"]).unwrap_err();
        assert_eq!(err.reason(), "InvalidInput");
        assert!(
            err.to_string().ends_with("it offers: classic, shortlived"),
            "{err}"
        );
        let err = check_profile("shortlived", &[]).unwrap_err();
        assert!(err.to_string().contains("advertises no profiles"), "{err}");
    }
}
