//! The TLS client settings every HTTPS backend shares: the platform's roots plus the PEM roots
//! of an operator's `ca_bundle_file` (a private ACME server, a NAS with its own CA), on ring.

use std::path::Path;
use std::sync::Arc;

use rota_api::BackendError;
use rustls::ClientConfig;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use rustls_platform_verifier::Verifier;

/// A client config trusting the system roots and `extra_roots`.
pub(crate) fn client_config(
    extra_roots: Vec<CertificateDer<'static>>,
) -> Result<ClientConfig, rustls::Error> {
    // Named explicitly so the build never depends on a process-wide default provider.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Verifier::new_with_extra_roots(extra_roots, Arc::clone(&provider))?;
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        // `dangerous` is rustls' name for any verifier besides its own; this one is the
        // platform's chain verification with more roots, not a relaxation.
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// A client config trusting the system roots plus the PEM bundle at `bundle` (the config names
/// it at `field`, e.g. `dsm.ca_bundle_file`), for `backend`'s HTTPS peer.
pub(crate) fn client_config_with_bundle(
    backend: &'static str,
    field: &str,
    bundle: Option<&Path>,
) -> Result<ClientConfig, BackendError> {
    let mut roots = Vec::new();
    if let Some(bundle) = bundle {
        let pem = std::fs::read(bundle)
            .map_err(|source| BackendError::io(backend, "reading", bundle, source))?;
        roots = parse_ca_bundle(backend, field, bundle, &pem)?;
    }
    client_config(roots).map_err(|e| {
        BackendError::invalid(backend, format!("cannot set up TLS (trusted roots): {e}"))
    })
}

/// The certificates of the bundle `pem` read from `path`, which the config names at `field`
/// (`acme.ca_bundle_file`); an empty or non-PEM bundle is a mistake worth stopping for.
pub(crate) fn parse_ca_bundle(
    backend: &'static str,
    field: &str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, BackendError> {
    let roots = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            BackendError::invalid(
                backend,
                format!("{field} {} is not PEM certificates: {e}", path.display()),
            )
        })?;
    if roots.is_empty() {
        return Err(BackendError::invalid(
            backend,
            format!("{field} {} holds no certificate", path.display()),
        ));
    }
    Ok(roots)
}
