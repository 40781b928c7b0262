//! rota's vocabulary: the config schema with its validation, status and wire types, and the
//! backend traits every CA, DCV solver, installer and alert sink implements. No I/O here
//! beyond reading the config and the secret files it names.

pub mod backend;
mod clean_path;
pub mod cluster;
pub mod config;
pub mod names;
pub mod status;
pub mod wire;

pub use backend::{
    AlertBackend, AlertDetails, AlertEvent, AlertKind, BackendError, BackendFactory, CaBackend,
    ChallengeKind, DcvBackend, DcvChallenge, InstallBackend, IssuedCert, OrderHandle, PlacedOrder,
    RenewalWindow, RevocationReason,
};
pub use names::{CertId, DomainName, HostPort, SecretError, SecretSource, SecretString};
