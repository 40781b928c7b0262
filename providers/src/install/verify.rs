//! `verify_address`: after an installer switched its server to a new cert, a TLS handshake
//! per domain (the domain as SNI) must present that cert. This checks what the server really
//! serves, not what rota believes it wrote: a reload that was ignored, a server block that
//! reads its cert from elsewhere, or a name served by another frontend all fail the install.
//! Reloads finish asynchronously (nginx's old workers hand over gradually), so the names are
//! asked in rounds for a few seconds, and the switch counts only when consecutive rounds all
//! show the new cert.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rota_api::{BackendError, DomainName, HostPort};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// How long a server may take to serve the new cert after the switch.
pub(crate) const VERIFY_WITHIN: Duration = Duration::from_secs(10);
/// Bound on one connect + handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause between two rounds of handshakes.
const RETRY_EVERY: Duration = Duration::from_millis(200);
/// Rounds in a row in which every name must present the new cert. One is not enough: while
/// a reload hands over, an old worker can still accept a connection after a new one answered.
const CONFIRMING_ROUNDS: u32 = 2;
/// The label a wildcard is replaced with to make a name a server can be asked for.
const WILDCARD_LABEL: &str = "rota-verify";

/// Succeeds once `address` has presented `cert_pem`'s serial for every domain in
/// [`CONFIRMING_ROUNDS`] rounds in a row, within `within`.
pub(crate) async fn served_cert_matches(
    backend: &'static str,
    address: &HostPort,
    domains: &[DomainName],
    cert_pem: &str,
    within: Duration,
) -> Result<(), BackendError> {
    let expected = serial_of_pem(cert_pem)
        .map_err(|e| BackendError::invalid(backend, format!("the issued cert: {e}")))?;
    let connector = TlsConnector::from(Arc::new(any_cert_client()));
    let deadline = Instant::now() + within;
    let names: Vec<String> = domains.iter().map(sni_for).collect();
    let mut confirmed = 0;
    loop {
        match first_stale(&connector, address, &names, &expected).await {
            None => confirmed += 1,
            Some((sni, seen)) => {
                confirmed = 0;
                if Instant::now() + RETRY_EVERY >= deadline {
                    return Err(BackendError::Refused {
                        backend,
                        detail: format!(
                            "after the switch, {address} with SNI `{sni}` presents {seen}, not the new cert (serial {}), after {}s: check that this server serves the installed files for this name",
                            hex(&expected),
                            within.as_secs()
                        ),
                    });
                }
            }
        }
        if confirmed == CONFIRMING_ROUNDS {
            return Ok(());
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

/// One handshake per name; the first name that does not present `expected`, with what it
/// presented instead.
async fn first_stale<'a>(
    connector: &TlsConnector,
    address: &HostPort,
    names: &'a [String],
    expected: &[u8],
) -> Option<(&'a str, String)> {
    for sni in names {
        let seen = match served_serial(connector, address, sni).await {
            Ok(serial) if serial == expected => continue,
            Ok(serial) => format!("serial {}", hex(&serial)),
            Err(e) => e,
        };
        return Some((sni, seen));
    }
    None
}

/// The name to send as SNI for `domain`: a wildcard becomes one name it covers.
fn sni_for(domain: &DomainName) -> String {
    match domain.as_str().strip_prefix("*.") {
        Some(base) => format!("{WILDCARD_LABEL}.{base}"),
        None => domain.as_str().to_owned(),
    }
}

/// One handshake with `sni`; the serial of the leaf the server presented, or what went wrong.
async fn served_serial(
    connector: &TlsConnector,
    address: &HostPort,
    sni: &str,
) -> Result<Vec<u8>, String> {
    let name = ServerName::try_from(sni.to_owned()).map_err(|e| format!("no SNI `{sni}`: {e}"))?;
    let handshake = async {
        let tcp = TcpStream::connect((address.host(), address.port()))
            .await
            .map_err(|e| format!("no connection ({e})"))?;
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("a failed handshake ({e})"))?;
        let (_, connection) = tls.get_ref();
        let leaf = connection
            .peer_certificates()
            .and_then(|chain| chain.first())
            .ok_or("no certificate")?;
        serial_of_der(leaf)
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no handshake within {}s",
                HANDSHAKE_TIMEOUT.as_secs()
            ))
        })
}

fn serial_of_pem(pem: &str) -> Result<Vec<u8>, String> {
    let (_, block) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| format!("not PEM: {e}"))?;
    serial_of_der(&block.contents)
}

fn serial_of_der(der: &[u8]) -> Result<Vec<u8>, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("a certificate that does not parse ({e})"))?;
    Ok(cert.tbs_certificate.raw_serial().to_vec())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut text, b| {
        let _ = write!(text, "{b:02x}");
        text
    })
}

/// A client that completes a handshake with whatever cert the server presents. It only reads
/// the serial, never trusts the connection with data: whether the cert chains to a trusted root
/// is not the question here (a local CA's cert would not), which cert is served is.
fn any_cert_client() -> ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AnyCert(Arc::clone(&provider)));
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| unreachable!("ring's provider supports the default versions"))
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth()
}

/// Accepts any server cert, but still checks the handshake signature against it, so the server
/// demonstrably holds the key of the cert it presented.
#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_is_asked_for_as_a_name_it_covers() {
        let sni = |d: &str| sni_for(&DomainName::new(d).unwrap());
        assert_eq!(sni("www.a.test"), "www.a.test");
        assert_eq!(sni("*.a.test"), "rota-verify.a.test");
    }

    #[test]
    fn the_serial_is_read_from_the_issued_pem() {
        let mut params = rcgen::CertificateParams::new(vec!["a.test".to_owned()]).unwrap();
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x01, 0xab, 0xcd]));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(hex(&serial_of_pem(&cert.pem()).unwrap()), "01abcd");
        assert!(serial_of_pem("not a cert").is_err());
    }

    #[tokio::test]
    async fn nothing_listening_fails_with_what_was_seen() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = HostPort::new(&listener.local_addr().unwrap().to_string()).unwrap();
        drop(listener);
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["a.test".to_owned()]).unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        let domains = [DomainName::new("a.test").unwrap()];
        let err = served_cert_matches(
            "nginx",
            &address,
            &domains,
            &pem,
            Duration::from_millis(500),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("with SNI `a.test` presents no connection"),
            "{err}"
        );
    }
}
