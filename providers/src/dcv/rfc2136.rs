//! `dcv: { kind: rfc2136 }`: DNS-01 answered on the operator's own DNS server (BIND, Knot,
//! PowerDNS, Technitium) by dynamic updates, RFC 2136, each signed with a shared TSIG key,
//! RFC 8945. Publishing adds one TXT record to the RRset at the challenge name (§2.5.1, "Add
//! To An RRset"), so the wildcard's and the apex's values, which share
//! `_acme-challenge.<domain>`, live side by side; removing deletes that one record by its data
//! (§2.5.4), so the other values at the name, rota's or anyone's, stay. Both are idempotent on
//! the server's side: a duplicate add and the delete of an absent record are no-ops (§3.4.2).
//!
//! Updates go over TCP through hickory's client, one connection per update. The request is
//! signed here rather than by hickory's multiplexer, which would verify the answer's TSIG and,
//! when the server rejects the key, hand back its own verification error instead of the
//! server's words: a server that cannot verify a request answers NOTAUTH with an unsigned TSIG
//! record naming BADKEY, BADSIG or BADTIME (RFC 8945 §5.2), and that is what the operator
//! needs to read. So rota reads the RCODE and the TSIG error first and verifies the MAC of
//! every answer it accepts as success (§5.3). The multiplexer gives the request a fresh
//! message ID after signing; TSIG covers the original ID, carried in the TSIG record, which
//! the server puts back before checking the MAC (§4.3.1).
//!
//! Every update has a timeout, and is tried a bounded number of times when the server could
//! not be reached or answered SERVFAIL; a refusal is final at once.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use hickory_net::NetError;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::xfer::{DnsHandle, FirstAnswer};
use hickory_proto::op::{DnsRequest, DnsResponse, Message, ResponseCode, update_message};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm as HickoryAlgorithm, TsigError};
use hickory_proto::rr::{Name, RData, Record, RecordSet, TSigner};
use rota_api::config::{Rfc2136Dcv as Rfc2136Config, TsigAlgorithm};
use rota_api::names::{HostPort, SecretSource};
use rota_api::{BackendError, ChallengeKind, DcvBackend, DcvChallenge};

use crate::error_chain::error_chain;

/// The config `kind` of this solver.
const KIND: &str = "rfc2136";

/// How long one attempt (connect, send, answer) may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Attempts per update when the server cannot be reached or fails.
const ATTEMPTS: u32 = 3;

/// The pause before the second attempt; it doubles for each one after.
const FIRST_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// How far apart rota's and the server's clocks may be (RFC 8945 §10 recommends 300 s).
const TSIG_FUDGE: u16 = 300;

/// Answers DNS-01 by dynamic updates to the operator's primary server.
pub(crate) struct Rfc2136Dcv {
    server: HostPort,
    zone: Name,
    key_name: Name,
    algorithm: TsigAlgorithm,
    /// Read at each update, so a rotated key is used without a reload.
    secret: SecretSource,
}

/// One change to the zone, for building the message and for naming it in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Add,
    Delete,
}

/// Why one attempt failed, and whether another may help.
#[derive(Debug)]
enum AttemptError {
    /// The server answered and said no; the text is its words, explained.
    Refused(String),
    /// Not reached, no answer, or a failure on its side that may pass.
    Transient(String),
    /// The attempt ran out of time.
    TimedOut,
    /// rota's side cannot make the request: the key cannot be read or used.
    Unusable(String),
}

impl Rfc2136Dcv {
    /// A solver for the `dcv: rfc2136` block `config`; fails on a zone or key name that is no
    /// DNS name (validation refuses those first).
    pub(crate) fn new(config: &Rfc2136Config) -> Result<Self, BackendError> {
        Ok(Self {
            server: config.server.clone(),
            zone: absolute_name(config.zone.as_str())
                .map_err(|e| BackendError::invalid(KIND, format!("zone: {e}")))?,
            key_name: absolute_name(&config.tsig_key_name)
                .map_err(|e| BackendError::invalid(KIND, format!("tsig_key_name: {e}")))?,
            algorithm: config.tsig_algorithm,
            secret: config.tsig_secret_file.clone(),
        })
    }

    /// Adds or deletes the TXT record of `challenge`.
    async fn update(&self, change: Change, challenge: &DcvChallenge) -> Result<(), BackendError> {
        let DcvChallenge::Dns01 {
            record_name,
            record_value,
            ttl,
        } = challenge
        else {
            return Err(BackendError::invalid(
                KIND,
                format!(
                    "the rfc2136 solver answers DNS-01 only, not {}",
                    challenge.describe()
                ),
            ));
        };
        let name = absolute_name(record_name).map_err(|e| {
            BackendError::invalid(KIND, format!("`{record_name}` is not a DNS name: {e}"))
        })?;
        if !self.zone.zone_of(&name) {
            return Err(BackendError::invalid(
                KIND,
                format!(
                    "TXT {record_name} is outside zone {zone}, the only zone `dcv: rfc2136` \
                     updates on {server}; set `zone` to the zone that holds the name (or the \
                     zone a CNAME at the name points into)",
                    zone = display(&self.zone),
                    server = self.server
                ),
            ));
        }
        let what = format!(
            "{verb} TXT {record_name} {record_value:?} in zone {zone} on {server}",
            verb = match change {
                Change::Add => "adding",
                Change::Delete => "deleting",
            },
            zone = display(&self.zone),
            server = self.server,
        );
        let record =
            Record::from_rdata(name, *ttl, RData::TXT(TXT::new(vec![record_value.clone()])));
        let rrset = RecordSet::from(record);
        let message = match change {
            Change::Add => update_message::append(rrset, self.zone.clone(), false, false),
            Change::Delete => update_message::delete_by_rdata(rrset, self.zone.clone(), false),
        };
        self.send_with_retries(&what, &message).await?;
        tracing::debug!(update = %what, "the DNS server applied the update");
        Ok(())
    }

    /// Sends `message` until the server answers, at most [`ATTEMPTS`] times.
    async fn send_with_retries(&self, what: &str, message: &Message) -> Result<(), BackendError> {
        let mut pause = FIRST_RETRY_PAUSE;
        let mut attempt = 1;
        loop {
            let outcome = tokio::time::timeout(ATTEMPT_TIMEOUT, self.attempt(message)).await;
            let failure = match outcome {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(AttemptError::Refused(detail))) => {
                    return Err(BackendError::Refused {
                        backend: KIND,
                        detail: format!("{what}: {detail}"),
                    });
                }
                Ok(Err(AttemptError::Unusable(detail))) => {
                    return Err(BackendError::invalid(KIND, format!("{what}: {detail}")));
                }
                Ok(Err(AttemptError::Transient(detail))) => detail,
                Ok(Err(AttemptError::TimedOut)) | Err(_) => {
                    format!("no answer within {}s", ATTEMPT_TIMEOUT.as_secs())
                }
            };
            if attempt >= ATTEMPTS {
                return Err(BackendError::Unreachable {
                    backend: KIND,
                    detail: format!("{what}: {failure} ({ATTEMPTS} attempts)"),
                });
            }
            tracing::warn!(update = %what, attempt, error = %failure,
                "the DNS update failed, trying again");
            tokio::time::sleep(pause).await;
            pause *= 2;
            attempt += 1;
        }
    }

    /// One signed exchange with the server.
    async fn attempt(&self, message: &Message) -> Result<(), AttemptError> {
        let signer = self.signer()?;
        let addr = self.server_addr().await?;
        let mut request = message.clone();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut verifier = request
            .finalize(&signer, now)
            .map_err(|e| AttemptError::Unusable(format!("cannot sign the update: {e}")))?
            .ok_or_else(|| AttemptError::Unusable("the update was left unsigned".to_owned()))?;
        // The provider owns the task that drives the connection and aborts it when dropped,
        // so it must outlive the exchange.
        let provider = TokioRuntimeProvider::default();
        let client = TcpClientStream::exchange(addr, None, ATTEMPT_TIMEOUT, None, provider.clone())
            .await
            .map_err(|e| net_error(&e))?;
        let response = client
            .send(DnsRequest::from(request))
            .first_answer()
            .await
            .map_err(|e| net_error(&e))?;
        drop(provider);
        check_answer(&response)?;
        // Only a signed answer proves it came from the holder of the key.
        verifier.verify(response.as_buffer()).map_err(|e| {
            AttemptError::Refused(format!(
                "the server answered NOERROR, but its TSIG signature does not verify ({e}); \
                 the answer cannot be trusted"
            ))
        })?;
        Ok(())
    }

    fn signer(&self) -> Result<TSigner, AttemptError> {
        let secret = self
            .secret
            .resolve()
            .map_err(|e| AttemptError::Unusable(format!("cannot read tsig_secret_file: {e}")))?;
        let key = Rfc2136Config::decode_secret(secret.expose())
            .map_err(|why| AttemptError::Unusable(format!("the TSIG secret is unusable: {why}")))?;
        TSigner::new(
            key,
            hickory_algorithm(self.algorithm),
            self.key_name.clone(),
            TSIG_FUDGE,
        )
        .map_err(|e| AttemptError::Unusable(format!("cannot sign with the TSIG key: {e}")))
    }

    /// The server's address, looked up again at each attempt so a moved server is followed.
    async fn server_addr(&self) -> Result<SocketAddr, AttemptError> {
        let (host, port) = (self.server.host(), self.server.port());
        let mut addrs = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| AttemptError::Transient(format!("cannot look up {host}: {e}")))?;
        addrs
            .next()
            .ok_or_else(|| AttemptError::Transient(format!("{host} has no address")))
    }
}

/// The server's verdict: its RCODE and, when it could not verify the request, its TSIG error,
/// each explained in terms of the config.
fn check_answer(response: &DnsResponse) -> Result<(), AttemptError> {
    let rcode = response.metadata.response_code;
    let tsig_error = response.signature().and_then(|tsig| tsig.data.error);
    if rcode == ResponseCode::NoError && tsig_error.is_none() {
        return Ok(());
    }
    let said = match tsig_error {
        Some(error) => format!(
            "the server answered {} with TSIG error {}",
            rcode_name(rcode),
            tsig_error_name(error)
        ),
        None => format!("the server answered {}", rcode_name(rcode)),
    };
    let why = tsig_error.map_or_else(|| rcode_meaning(rcode), tsig_error_meaning);
    let detail = format!("{said}: {why}");
    if rcode == ResponseCode::ServFail && tsig_error.is_none() {
        Err(AttemptError::Transient(detail))
    } else {
        Err(AttemptError::Refused(detail))
    }
}

/// The RCODE's mnemonic (RFC 6895 §2.3), as servers log it.
fn rcode_name(rcode: ResponseCode) -> String {
    let name = match rcode {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::YXDomain => "YXDOMAIN",
        ResponseCode::YXRRSet => "YXRRSET",
        ResponseCode::NXRRSet => "NXRRSET",
        ResponseCode::NotAuth => "NOTAUTH",
        ResponseCode::NotZone => "NOTZONE",
        other => return format!("RCODE {}", u16::from(other)),
    };
    name.to_owned()
}

fn rcode_meaning(rcode: ResponseCode) -> &'static str {
    match rcode {
        ResponseCode::Refused => {
            "the server does not let this key change this name: allow it in the zone's \
             `update-policy` (or `allow-update`) for the key `tsig_key_name` names"
        }
        ResponseCode::NotAuth => {
            "the server is not the primary for this zone: point `server` at the primary \
             that accepts updates for `zone`"
        }
        ResponseCode::NotZone => "the record is not inside the zone the server holds as `zone`",
        ResponseCode::NotImp => "the server does not take dynamic updates",
        ResponseCode::ServFail => "the server failed to apply the update",
        ResponseCode::FormErr => "the server could not parse the update",
        _ => "the update was not applied",
    }
}

/// The TSIG error's mnemonic (RFC 8945 §3).
fn tsig_error_name(error: TsigError) -> String {
    match error {
        TsigError::BadSig => "BADSIG".to_owned(),
        TsigError::BadKey => "BADKEY".to_owned(),
        TsigError::BadTime => "BADTIME".to_owned(),
        TsigError::BadTrunc => "BADTRUNC".to_owned(),
        TsigError::Unknown(code) => format!("{code}"),
    }
}

fn tsig_error_meaning(error: TsigError) -> &'static str {
    match error {
        TsigError::BadSig => {
            "the signature does not verify with the server's copy of the key: \
             `tsig_secret_file` does not hold the secret the server has for `tsig_key_name`"
        }
        TsigError::BadKey => {
            "the server knows no key of this name and algorithm: check `tsig_key_name` and \
             `tsig_algorithm` against the server's `key` clause"
        }
        TsigError::BadTime => {
            "rota's clock and the server's differ by more than 300 seconds: \
             synchronise both with NTP"
        }
        TsigError::BadTrunc | TsigError::Unknown(_) => "the server could not verify the request",
    }
}

/// A transport failure as one line; hickory's timeout says nothing of how long it waited.
fn net_error(err: &NetError) -> AttemptError {
    match err {
        NetError::Timeout => AttemptError::TimedOut,
        other => AttemptError::Transient(error_chain(other)),
    }
}

fn hickory_algorithm(algorithm: TsigAlgorithm) -> HickoryAlgorithm {
    match algorithm {
        TsigAlgorithm::HmacSha256 => HickoryAlgorithm::HmacSha256,
        TsigAlgorithm::HmacSha384 => HickoryAlgorithm::HmacSha384,
        TsigAlgorithm::HmacSha512 => HickoryAlgorithm::HmacSha512,
    }
}

/// `name` as an absolute DNS name, so nothing is appended to it.
fn absolute_name(name: &str) -> Result<Name, String> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    Name::from_ascii(format!("{bare}.")).map_err(|e| e.to_string())
}

/// A name as operators write it, without the root's dot.
fn display(name: &Name) -> String {
    let text = name.to_ascii();
    text.strip_suffix('.').map(str::to_owned).unwrap_or(text)
}

#[async_trait]
impl DcvBackend for Rfc2136Dcv {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn supported_kinds(&self) -> &[ChallengeKind] {
        &[ChallengeKind::Dns01]
    }

    async fn publish(&self, challenge: &DcvChallenge) -> Result<(), BackendError> {
        self.update(Change::Add, challenge).await
    }

    async fn remove(&self, challenge: &DcvChallenge) -> Result<(), BackendError> {
        self.update(Change::Delete, challenge).await
    }

    fn readiness_server(&self) -> Option<&HostPort> {
        Some(&self.server)
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::OpCode;

    use super::*;

    fn answer(rcode: ResponseCode) -> DnsResponse {
        let mut message = Message::response(7, OpCode::Update);
        message.metadata.response_code = rcode;
        DnsResponse::from_message(message).unwrap()
    }

    #[test]
    fn each_refusal_names_the_rcode_and_what_to_change() {
        for (rcode, says, transient, why) in [
            (
                ResponseCode::Refused,
                "REFUSED: the server does not let this key change this name",
                false,
                "update-policy",
            ),
            (
                ResponseCode::NotAuth,
                "NOTAUTH: the server is not the primary",
                false,
                "a secondary",
            ),
            (ResponseCode::NotZone, "NOTZONE", false, "wrong zone"),
            (
                ResponseCode::NotImp,
                "NOTIMP: the server does not take dynamic updates",
                false,
                "no RFC 2136",
            ),
            (
                ResponseCode::ServFail,
                "SERVFAIL",
                true,
                "may pass: tried again",
            ),
        ] {
            match (check_answer(&answer(rcode)), transient) {
                (Err(AttemptError::Refused(detail)), false)
                | (Err(AttemptError::Transient(detail)), true) => {
                    assert!(detail.contains(says), "{why}: {detail}");
                }
                (other, _) => panic!("{why}: {other:?}"),
            }
        }
        assert!(check_answer(&answer(ResponseCode::NoError)).is_ok());
    }

    #[test]
    fn names_are_absolute_and_shown_without_the_root() {
        let zone = absolute_name("Example.Test").unwrap();
        assert_eq!(display(&zone), "Example.Test");
        assert!(zone.zone_of(&absolute_name("_acme-challenge.example.test.").unwrap()));
        assert!(!zone.zone_of(&absolute_name("_acme-challenge.other.test").unwrap()));
    }
}
