//! Checks at load time that every secret the config names can be read, so a missing token
//! fails `rota apply` and startup instead of the first renewal hours later. The secrets
//! themselves are read again when used, so a rotated file is picked up without a reload.

use std::io::ErrorKind;

use super::blocks::Parsed;
use super::error::Problem;
use super::field_path::{child, last_field};
use super::interpolate::EnvLookup;
use super::schema::{AlertSpec, AuditConfig, DcvSpec, Rfc2136Dcv, SurrealAudit};
use crate::names::{SecretSource, read_secret_file};

/// A problem for every secret (`*_file` field) that is unset, unreadable, empty or, for the
/// secrets with a format, not in it.
pub(crate) fn check_secrets(parsed: &Parsed, env: EnvLookup<'_>) -> Vec<Problem> {
    let mut found: Vec<Problem> = secret_fields(parsed)
        .into_iter()
        .filter_map(|(path, source)| read(&path, source, env).err())
        .collect();
    for (path, source) in tsig_secret_fields(parsed) {
        match read(&path, source, env) {
            Err(problem) => found.push(problem),
            Ok(secret) => found.extend(check_tsig_secret(&path, source, &secret)),
        }
    }
    found
}

/// Every `dcv: rfc2136` TSIG secret with its field path.
fn tsig_secret_fields(parsed: &Parsed) -> Vec<(String, &SecretSource)> {
    parsed
        .certs()
        .filter_map(|(path, cert)| match &cert.dcv {
            Some(DcvSpec::Rfc2136(rfc2136)) => Some((
                child(&child(&path, "dcv"), "tsig_secret_file"),
                &rfc2136.tsig_secret_file,
            )),
            _ => None,
        })
        .collect()
}

/// A TSIG secret must be the base64 key itself; the problem never quotes the secret.
fn check_tsig_secret(path: &str, source: &SecretSource, secret: &[u8]) -> Option<Problem> {
    let text = String::from_utf8_lossy(secret);
    let why = Rfc2136Dcv::decode_secret(text.trim_end_matches(['\r', '\n'])).err()?;
    let origin = match source {
        SecretSource::File(file) => format!("secret file `{}`", file.display()),
        SecretSource::Env(var) => format!("environment variable `{var}`"),
    };
    Some(
        Problem::value(
            path,
            format!("the TSIG secret in {origin} is unusable: {why}"),
        )
        .hint(
            "put only the base64 text between the quotes of the `secret \"...\";` line that \
             `tsig-keygen` printed (the same secret the DNS server's `key` clause holds)",
        ),
    )
}

/// Every secret source in the config with its field path, in the schema's order.
fn secret_fields(parsed: &Parsed) -> Vec<(String, &SecretSource)> {
    let config = &parsed.config;
    let mut fields = Vec::new();
    if let Some(token) = &config.daemon.api_token_file {
        fields.push(("daemon.api_token_file".to_owned(), token));
    }
    if let AuditConfig::Surrealdb(SurrealAudit {
        password_file: Some(password),
        ..
    }) = &config.audit
    {
        fields.push(("audit.password_file".to_owned(), password));
    }
    if let Some(namecheap) = &config.namecheap {
        fields.push(("namecheap.api_key_file".to_owned(), &namecheap.api_key_file));
    }
    if let Some(cloudflare) = &config.cloudflare {
        fields.push((
            "cloudflare.api_token_file".to_owned(),
            &cloudflare.api_token_file,
        ));
    }
    if let Some(eab) = config
        .acme
        .as_ref()
        .and_then(|a| a.external_account_binding.as_ref())
    {
        let path = "acme.external_account_binding.hmac_key_file".to_owned();
        fields.push((path, &eab.hmac_key_file));
    }
    if let Some(dsm) = &config.dsm {
        fields.push(("dsm.password_file".to_owned(), &dsm.password_file));
        if let Some(token) = &dsm.device_token_file {
            fields.push(("dsm.device_token_file".to_owned(), token));
        }
    }
    for (path, cert) in parsed.certs() {
        if let Some(password) = cert
            .install
            .file_outputs()
            .and_then(|o| o.pkcs12_password_file)
        {
            let install = child(&path, "install");
            fields.push((child(&install, "pkcs12_password_file"), password));
        }
    }
    for (path, alert) in parsed.alerts() {
        let (field, source) = match alert {
            AlertSpec::Email(email) => ("password_file", email.password_file.as_ref()),
            AlertSpec::Webhook(hook) => ("bearer_token_file", hook.bearer_token_file.as_ref()),
        };
        if let Some(source) = source {
            fields.push((child(&path, field), source));
        }
    }
    fields
}

/// The secret's bytes, or the problem that keeps it from being read.
fn read(path: &str, source: &SecretSource, env: EnvLookup<'_>) -> Result<Vec<u8>, Problem> {
    let field = last_field(path);
    match source {
        SecretSource::Env(var) => match env(var) {
            None => Err(
                Problem::value(path, format!("environment variable `{var}` is not set")).hint(
                    format!("export {var} in rotad's environment, or point `{field}` at a file"),
                ),
            ),
            Some(value) if is_blank(value.as_bytes()) => {
                Err(
                    Problem::value(path, format!("environment variable `{var}` is empty")).hint(
                        format!("put the secret in {var}, or point `{field}` at a file"),
                    ),
                )
            }
            Some(value) => Ok(value.into_bytes()),
        },
        SecretSource::File(file) => {
            let shown = file.display();
            match read_secret_file(file) {
                Err(err) if err.kind() == ErrorKind::NotFound => Err(Problem::value(
                    path,
                    format!("secret file `{shown}` does not exist"),
                )
                .hint(
                    "create it (mode 0600) with the secret in it, or write `env:VAR` to read \
                         the secret from an environment variable",
                )),
                Err(err) => Err(Problem::value(
                    path,
                    format!("cannot read secret file `{shown}`: {err}"),
                )
                .hint("make it a file readable by the user rotad runs as")),
                Ok(bytes) if is_blank(&bytes) => Err(Problem::value(
                    path,
                    format!("secret file `{shown}` is empty"),
                )
                .hint("write the secret into it")),
                Ok(bytes) => Ok(bytes),
            }
        }
    }
}

/// Empty once the trailing newline is dropped, as `SecretSource::resolve` does.
fn is_blank(secret: &[u8]) -> bool {
    secret.iter().all(|b| matches!(b, b'\r' | b'\n'))
}
