//! The ACME account behind the `acme:` block: created at the CA on first use (with the
//! contact and any external account binding), saved to `account_credentials_file` (0600, in
//! a 0700 directory) and loaded from it afterwards. One [`SharedAccount`] serves every cert
//! using the same directory and credentials file, so concurrent orders never race to create
//! two accounts.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use instant_acme::{Account, AccountCredentials, ExternalAccountKey, NewAccount};
use rota_api::BackendError;
use rota_api::config::{AcmeAccount, ExternalAccountBinding};
use tokio::sync::OnceCell;

use super::problem::{backend_error, retry_bad_nonce, with_hint};
use super::transport::{AcmeHttp, observed};
use super::{KIND, ari};
use crate::atomic_write::{create_dir_all_with_mode, write_atomic};
use crate::tls_client::parse_ca_bundle;

/// The account of one `acme:` block, loaded or created on first use.
pub(crate) struct SharedAccount {
    config: AcmeAccount,
    loaded: OnceCell<Loaded>,
}

/// What one `acme:` block needs once its directory has answered.
pub(crate) struct Loaded {
    /// The account orders are placed with.
    pub account: Account,
    /// The client every request to this CA goes through.
    pub http: AcmeHttp,
    /// The directory's `renewalInfo` base URL, when the CA offers ARI (RFC 9773 §3).
    pub renewal_info: Option<String>,
}

impl SharedAccount {
    /// The account `config` describes; nothing is read nor sent until [`SharedAccount::get`].
    pub(crate) fn new(config: AcmeAccount) -> Self {
        Self {
            config,
            loaded: OnceCell::new(),
        }
    }

    /// The `acme:` block this account was built from.
    pub(crate) fn config(&self) -> &AcmeAccount {
        &self.config
    }

    /// The account, loaded from the credentials file or created at the CA and saved there.
    /// A failure is not cached: the next renewal tries again.
    pub(crate) async fn get(&self) -> Result<&Account, BackendError> {
        Ok(&self.loaded().await?.account)
    }

    /// The account with its client and what rota reads from the directory itself.
    pub(crate) async fn loaded(&self) -> Result<&Loaded, BackendError> {
        self.loaded
            .get_or_try_init(|| observed(self.load_or_create()))
            .await
    }

    async fn load_or_create(&self) -> Result<Loaded, BackendError> {
        let config = &self.config;
        if !config.directory_url.starts_with("https://") {
            return Err(BackendError::invalid(
                KIND,
                format!(
                    "acme.directory_url `{}` must be an https:// URL (RFC 8555 §6.1)",
                    config.directory_url
                ),
            ));
        }
        let http = http_client(config.ca_bundle_file.as_deref()).await?;
        let renewal_info = ari::base_url(&http, &config.directory_url)
            .await
            .map_err(|e| backend_error("loading the ACME directory", e))?;
        let account = self.load_or_create_account(&http).await?;
        Ok(Loaded {
            account,
            http,
            renewal_info,
        })
    }

    async fn load_or_create_account(&self, http: &AcmeHttp) -> Result<Account, BackendError> {
        let config = &self.config;
        let path = &config.account_credentials_file;
        match tokio::fs::read(path).await {
            Ok(saved) => {
                let credentials = parse_credentials(&saved, path, &config.directory_url)?;
                let account = Account::builder_with_http(Box::new(http.clone()))
                    .from_credentials(credentials)
                    .await
                    .map_err(|e| backend_error("loading the ACME directory", e))?;
                tracing::debug!(account = account.id(), file = %path.display(), "ACME account loaded");
                Ok(account)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.create(http).await,
            Err(source) => Err(BackendError::io(KIND, "reading", path, source)),
        }
    }

    async fn create(&self, http: &AcmeHttp) -> Result<Account, BackendError> {
        let config = &self.config;
        let eab = config
            .external_account_binding
            .as_ref()
            .map(external_account_key)
            .transpose()?;
        let contact = config.contact_email.as_ref().map(|e| format!("mailto:{e}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let new_account = NewAccount {
            contact: &contacts,
            terms_of_service_agreed: true,
            only_return_existing: false,
        };
        // Each attempt consumes a builder; the client clones share one connection pool.
        let (account, credentials) =
            retry_bad_nonce!(Account::builder_with_http(Box::new(http.clone())).create(
                &new_account,
                config.directory_url.clone(),
                eab.as_ref()
            ))
            .map_err(|e| {
                let hint = account_hint(&e, eab.is_some());
                let err = backend_error("creating the ACME account", e);
                match hint {
                    Some(hint) => with_hint(err, hint),
                    None => err,
                }
            })?;
        save_credentials(&config.account_credentials_file, &credentials).await?;
        tracing::info!(
            account = account.id(),
            file = %config.account_credentials_file.display(),
            "ACME account created and saved"
        );
        Ok(account)
    }
}

/// The HTTP client for this account: system roots plus the PEM certs in `bundle`, if any.
async fn http_client(bundle: Option<&Path>) -> Result<AcmeHttp, BackendError> {
    let mut extra_roots = Vec::new();
    if let Some(bundle) = bundle {
        let pem = tokio::fs::read(bundle)
            .await
            .map_err(|source| BackendError::io(KIND, "reading", bundle, source))?;
        extra_roots = parse_ca_bundle(KIND, "acme.ca_bundle_file", bundle, &pem)?;
    }
    AcmeHttp::new(extra_roots).map_err(|e| {
        BackendError::invalid(
            KIND,
            format!("cannot set up TLS for the ACME directory (trusted roots): {e}"),
        )
    })
}

/// Parses saved credentials, refusing ones made for another directory: reusing them would
/// silently keep talking to the old CA.
fn parse_credentials(
    saved: &[u8],
    path: &Path,
    directory_url: &str,
) -> Result<AccountCredentials, BackendError> {
    let unreadable = |e: serde_json::Error| {
        BackendError::invalid(
            KIND,
            format!(
                "{} is not an ACME account file rota wrote ({e}); move it away to create a new \
             account",
                path.display()
            ),
        )
    };
    let value: serde_json::Value = serde_json::from_slice(saved).map_err(unreadable)?;
    let saved_for = value.get("directory").and_then(serde_json::Value::as_str);
    if saved_for != Some(directory_url) {
        return Err(BackendError::invalid(
            KIND,
            format!(
                "{} holds an account of {}, not of acme.directory_url {directory_url}: point \
             account_credentials_file at another file for this CA",
                path.display(),
                saved_for.unwrap_or("an unknown directory")
            ),
        ));
    }
    serde_json::from_value(value).map_err(unreadable)
}

async fn save_credentials(
    path: &Path,
    credentials: &AccountCredentials,
) -> Result<(), BackendError> {
    let json = serde_json::to_vec_pretty(credentials).map_err(|e| {
        BackendError::invalid(KIND, format!("cannot encode the account credentials: {e}"))
    })?;
    let target = path.to_owned();
    let written = tokio::task::spawn_blocking(move || {
        if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
            // The account key signs for every cert: keep the directory private too.
            create_dir_all_with_mode(dir, 0o700)?;
        }
        write_atomic(&target, &json, 0o600)
    })
    .await
    .unwrap_or_else(|e| {
        Err(std::io::Error::other(format!(
            "the writing task failed: {e}"
        )))
    });
    written.map_err(|source| BackendError::io(KIND, "writing", path, source))
}

/// The EAB key: `kid` and the HMAC key the CA handed out base64url-encoded.
fn external_account_key(eab: &ExternalAccountBinding) -> Result<ExternalAccountKey, BackendError> {
    let secret = eab.hmac_key_file.resolve().map_err(|e| {
        BackendError::invalid(
            KIND,
            format!("acme.external_account_binding.hmac_key_file: {e}"),
        )
    })?;
    // CAs print the key with or without `=` padding.
    let key = URL_SAFE_NO_PAD
        .decode(secret.expose().trim().trim_end_matches('='))
        .map_err(|e| {
            BackendError::invalid(
                KIND,
                format!(
                    "acme.external_account_binding.hmac_key_file does not hold a base64url key \
                 ({}): paste the HMAC key exactly as the CA shows it",
                    decode_problem(&e)
                ),
            )
        })?;
    Ok(ExternalAccountKey::new(eab.kid.clone(), &key))
}

/// What is wrong with an encoded key, without the key's bytes: base64's own message quotes
/// the offending byte.
fn decode_problem(err: &base64::DecodeError) -> String {
    match err {
        base64::DecodeError::InvalidByte(offset, _)
        | base64::DecodeError::InvalidLastSymbol(offset, _) => {
            format!(
                "a character outside the base64url alphabet at position {}",
                offset + 1
            )
        }
        base64::DecodeError::InvalidLength(_) => "its length is not that of base64 text".to_owned(),
        base64::DecodeError::InvalidPadding => "its `=` padding is wrong".to_owned(),
    }
}

/// What to check when the CA refuses to create the account, by its problem type.
fn account_hint(err: &instant_acme::Error, has_eab: bool) -> Option<&'static str> {
    let instant_acme::Error::Api(problem) = err else {
        return None;
    };
    match (problem.r#type.as_deref(), has_eab) {
        (Some("urn:ietf:params:acme:error:externalAccountRequired"), false) => Some(
            "this CA requires acme.external_account_binding: add the kid and HMAC key it issued",
        ),
        (_, true) => Some(
            "check acme.external_account_binding: the kid and HMAC key must be exactly the \
             ones the CA issued",
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use rota_api::SecretSource;

    use super::*;

    #[test]
    fn credentials_of_another_directory_are_refused() {
        let path = Path::new("/etc/rota/acme.json");
        let saved =
            br#"{"id": "https://ca/acct/1", "key_pkcs8": "AAAA", "directory": "https://old/dir"}"#;
        let err = parse_credentials(saved, path, "https://new/dir")
            .map(drop)
            .unwrap_err();
        assert!(err.to_string().contains("https://old/dir"), "{err}");
        let err = parse_credentials(b"{}", path, "https://new/dir")
            .map(drop)
            .unwrap_err();
        assert!(err.to_string().contains("unknown directory"), "{err}");
        let err = parse_credentials(b"not json", path, "https://new/dir")
            .map(drop)
            .unwrap_err();
        assert!(err.to_string().contains("move it away"), "{err}");
        assert!(parse_credentials(saved, path, "https://old/dir").is_ok());
    }

    #[test]
    fn account_refusals_point_at_the_eab_block() {
        let problem = |kind: &str| {
            instant_acme::Error::Api(
                serde_json::from_str(&format!(r#"{{"type": "{kind}"}}"#)).unwrap(),
            )
        };
        let required = "urn:ietf:params:acme:error:externalAccountRequired";
        let unauthorized = "urn:ietf:params:acme:error:unauthorized";
        for (err, has_eab, hint, why) in [
            (problem(required), false, Some("requires"), "EAB missing"),
            (problem(unauthorized), true, Some("check"), "EAB wrong"),
            (problem(unauthorized), false, None, "no EAB involved"),
            (instant_acme::Error::Str("x"), true, None, "not a refusal"),
        ] {
            let got = account_hint(&err, has_eab);
            assert_eq!(got.is_some(), hint.is_some(), "{why}");
            if let (Some(got), Some(hint)) = (got, hint) {
                assert!(got.contains(hint), "{why}: {got}");
            }
        }
    }

    #[test]
    fn eab_keys_are_base64url_with_or_without_padding() {
        let dir = tempfile::tempdir().unwrap();
        for (content, ok, why) in [
            (
                "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W\n",
                true,
                "pebble's",
            ),
            ("YWJj", true, "no padding"),
            ("YWI=", true, "padded"),
            ("a+b/", false, "standard base64 alphabet"),
            ("not base64!", false, "garbage"),
            ("QUJD~", false, "a stray byte after a valid prefix"),
        ] {
            let file = dir.path().join("hmac");
            std::fs::write(&file, content).unwrap();
            let eab = ExternalAccountBinding {
                kid: "kid-1".into(),
                hmac_key_file: SecretSource::File(file),
            };
            let result = external_account_key(&eab);
            assert_eq!(result.is_ok(), ok, "{why}");
            if let Err(err) = result {
                let message = err.to_string();
                // base64's own message names the bad byte by value (`+` is 43, `~` is 126).
                for leaked in ["43", "126", "32", "+", "~", "QUJD", content.trim()] {
                    assert!(!message.contains(leaked), "{why}: `{leaked}` in {message}");
                }
            }
        }
        let missing = ExternalAccountBinding {
            kid: "kid-1".into(),
            hmac_key_file: SecretSource::File(dir.path().join("absent")),
        };
        assert_eq!(
            external_account_key(&missing).err().map(|e| e.reason()),
            Some("InvalidInput")
        );
    }
}
