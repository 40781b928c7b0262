//! `cert.p12` for `formats: [pkcs12]`: the key with its leaf and chain in one PKCS#12 file,
//! for Java keystores and appliances that import nothing else. Encrypted the way
//! `openssl pkcs12 -export` does by default since OpenSSL 3 (PBES2: PBKDF2-HMAC-SHA-256 and
//! AES-256-CBC; MAC HMAC-SHA-256), never with the legacy RC2/3DES schemes.

use p12_keystore::{
    Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey,
    PrivateKeyChain,
};
use rota_api::{IssuedCert, SecretString};

/// PBKDF2 rounds for the key and the MAC: what OpenSSL 3 uses is 2048; more costs an
/// attacker more and an install only milliseconds.
const ITERATIONS: u32 = 10_000;

/// The friendly name of the one entry, as `keytool -list` shows it.
const ALIAS: &str = "rota";

/// The PKCS#12 file holding `key`, `cert`'s leaf and its chain, under `password`; an error
/// says which part did not parse (never what it held).
pub(crate) fn archive(
    cert: &IssuedCert,
    key: &SecretString,
    password: &SecretString,
) -> Result<Vec<u8>, String> {
    let key_der = pem_blocks(key.expose(), "PRIVATE KEY")
        .into_iter()
        .next()
        .ok_or("the private key is not a PKCS#8 PEM")?;
    let key = PrivateKey::from_der(&key_der).map_err(|e| format!("the private key: {e}"))?;
    let certs = pem_blocks(&cert.fullchain_pem(), "CERTIFICATE")
        .iter()
        .map(|der| Certificate::from_der(der))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("a certificate of the chain: {e}"))?;
    let leaf = certs
        .first()
        .ok_or("the issued cert holds no certificate")?;
    // The local key id ties the key bag to its certificate; the leaf's digest is unique.
    let key_id = ring::digest::digest(&ring::digest::SHA256, leaf.as_der());
    let mut store = KeyStore::new();
    store.add_entry(
        ALIAS,
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(key_id.as_ref(), key, certs)),
    );
    store
        .writer(password.expose())
        .encryption_algorithm(EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
        .encryption_iterations(ITERATIONS)
        .mac_algorithm(MacAlgorithm::HmacSha256)
        .mac_iterations(ITERATIONS)
        .write()
        .map_err(|e| format!("cannot build cert.p12: {e}"))
}

/// The DER contents of every PEM block labelled `label` in `text`, in order.
fn pem_blocks(text: &str, label: &str) -> Vec<Vec<u8>> {
    x509_parser::pem::Pem::iter_from_buffer(text.as_bytes())
        .filter_map(Result::ok)
        .filter(|block| block.label == label)
        .map(|block| block.contents)
        .collect()
}
