//! One logged-in session with DSM's Web API, spoken as Synology documents it:
//!
//! - Discovery and login: Synology's "DSM Login Web API Guide"
//!   (<https://global.download.synology.com/download/Document/Software/DeveloperGuide/Os/DSM/All/enu/DSM_Login_Web_API_Guide_enu.pdf>):
//!   `query.cgi` `SYNO.API.Info` `query` names the CGI path and versions of `SYNO.API.Auth`;
//!   `login` with `account`, `passwd`, `format=sid`, `enable_syno_token=yes` (and, for a
//!   2-factor account, the trusted device's `device_id` with its `device_name`) answers
//!   `{"success":true,"data":{"sid":…,"synotoken":…}}`; `logout` ends the session. rota asks
//!   for version 6, the one the guide describes, or the NAS's highest when that is lower.
//!   The password goes in a form body, never in a URL that DSM's access log would keep.
//! - Certificates: not in Synology's public guides; rota follows the calls DSM's own Control
//!   Panel makes, as acme.sh's `deploy/synology_dsm.sh` and N4S4/synology-api's
//!   `core_certificate.py` use them: `SYNO.Core.Certificate.CRT` `list` (each entry's `id`,
//!   `desc`, `is_default`), `SYNO.Core.Certificate` `import` (multipart `key`, `cert`,
//!   `inter_cert`, `id`, `desc`, `as_default`; the `SynoToken` in the query and the
//!   `X-SYNO-TOKEN` header) and `export` (`file="archive"`: a zip with `cert.pem`).
//! - Every answer is the envelope `{"success":true,"data":…}` or
//!   `{"success":false,"error":{"code":N}}`; the codes' meanings are the guide's tables
//!   (common codes 100–150, `SYNO.API.Auth` codes 400–410).
//!
//! The session id and SynoToken ride in URLs as DSM requires; transport errors are reported
//! without their URL so neither reaches a log.

use std::fmt::Write as _;
use std::time::Duration;

use reqwest::multipart::{Form, Part};
use rota_api::{BackendError, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The leaf in an `export` archive: its `cert.pem` member.
fn leaf_from_archive(archive: &[u8]) -> Result<String, BackendError> {
    let unreadable = |detail: String| BackendError::Unreachable {
        backend: KIND,
        detail: format!("SYNO.Core.Certificate export: {detail}"),
    };
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive))
        .map_err(|e| unreadable(format!("the answer is not a zip archive: {e}")))?;
    let names: Vec<String> = zip
        .file_names()
        .filter_map(Result::ok)
        .map(std::borrow::Cow::into_owned)
        .collect();
    let mut member = zip.by_name(LEAF_MEMBER).map_err(|_| {
        unreadable(format!(
            "the archive has no `{LEAF_MEMBER}` (it holds {names:?})"
        ))
    })?;
    let mut pem = String::new();
    std::io::Read::read_to_string(&mut member, &mut pem)
        .map_err(|e| unreadable(format!("cannot read `{LEAF_MEMBER}`: {e}")))?;
    Ok(pem)
}

/// The member of an `export` archive holding the leaf (beside `privkey.pem` and `chain.pem`,
/// which rota never reads).
const LEAF_MEMBER: &str = "cert.pem";

/// The config `kind` these calls serve.
const KIND: &str = "dsm";

/// The `SYNO.API.Auth` version the Login Web API Guide documents.
const AUTH_VERSION: u32 = 6;

/// How long one request may take, from connecting to the last byte.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Who logs in, as resolved from the `dsm:` block at the time of the call.
pub(super) struct Login<'a> {
    /// The DSM account.
    pub username: &'a str,
    /// Its password.
    pub password: &'a SecretString,
    /// A trusted device's token and the name it was issued to, for a 2-factor account.
    pub device: Option<(&'a SecretString, &'a str)>,
}

/// One certificate as `SYNO.Core.Certificate.CRT` `list` describes it.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct ListedCert {
    /// DSM's id of the certificate.
    pub id: String,
    /// The label shown in the Control Panel.
    #[serde(default)]
    pub desc: String,
    /// Whether it is the NAS's default certificate.
    #[serde(default)]
    pub is_default: bool,
}

/// What `import` is given: PEM documents and where they go.
pub(super) struct Import<'a> {
    /// The private key.
    pub key_pem: &'a SecretString,
    /// The leaf.
    pub cert_pem: &'a str,
    /// Intermediates (and a private root), possibly empty.
    pub chain_pem: &'a str,
    /// The certificate replaced in place, or `None` to add one.
    pub replace: Option<&'a ListedCert>,
    /// The label to give it.
    pub description: &'a str,
}

/// The envelope every DSM answer comes in.
#[derive(Deserialize)]
struct Envelope<T> {
    success: bool,
    data: Option<T>,
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: i64,
}

/// `SYNO.API.Info` `query` for `SYNO.API.Auth`.
#[derive(Deserialize)]
struct AuthInfo {
    #[serde(rename = "SYNO.API.Auth")]
    auth: ApiInfo,
}

#[derive(Deserialize)]
struct ApiInfo {
    path: String,
    #[serde(rename = "maxVersion")]
    max_version: u32,
}

#[derive(Deserialize)]
struct LoginData {
    sid: String,
    synotoken: String,
}

#[derive(Deserialize)]
struct CertList {
    certificates: Vec<ListedCert>,
}

/// A logged-in session; [`Session::logout`] ends it.
pub(super) struct Session<'a> {
    http: &'a reqwest::Client,
    base: &'a str,
    auth_path: String,
    auth_version: u32,
    sid: String,
    token: String,
}

impl<'a> Session<'a> {
    /// Finds `SYNO.API.Auth` on the NAS at `base` and logs in.
    pub(super) async fn login(
        http: &'a reqwest::Client,
        base: &'a str,
        who: &Login<'_>,
    ) -> Result<Self, BackendError> {
        let info_url = format!("{base}/webapi/query.cgi");
        let query = [
            ("api", "SYNO.API.Info"),
            ("version", "1"),
            ("method", "query"),
            ("query", "SYNO.API.Auth"),
        ];
        let info: AuthInfo = envelope(
            "SYNO.API.Info query",
            http.get(&info_url).query(&query),
            false,
        )
        .await?;
        let auth_version = info.auth.max_version.min(AUTH_VERSION);
        let auth_path = info.auth.path;
        let version = auth_version.to_string();
        let mut form = vec![
            ("api", "SYNO.API.Auth"),
            ("version", version.as_str()),
            ("method", "login"),
            ("account", who.username),
            ("passwd", who.password.expose()),
            ("session", "rota"),
            ("format", "sid"),
            ("enable_syno_token", "yes"),
        ];
        if let Some((token, name)) = who.device {
            form.push(("device_id", token.expose()));
            form.push(("device_name", name));
        }
        let url = format!("{base}/webapi/{auth_path}");
        let login: LoginData = envelope("SYNO.API.Auth login", http.post(&url).form(&form), true)
            .await
            .map_err(|e| login_hint(e, who.device.is_some()))?;
        Ok(Self {
            http,
            base,
            auth_path,
            auth_version,
            sid: login.sid,
            token: login.synotoken,
        })
    }

    /// Every certificate on the NAS.
    pub(super) async fn list(&self) -> Result<Vec<ListedCert>, BackendError> {
        let form = [
            ("api", "SYNO.Core.Certificate.CRT"),
            ("method", "list"),
            ("version", "1"),
            ("_sid", self.sid.as_str()),
        ];
        let request = self.authorized(self.http.post(self.entry()).form(&form));
        let list: CertList = envelope("SYNO.Core.Certificate.CRT list", request, false).await?;
        Ok(list.certificates)
    }

    /// Imports key, leaf and chain, replacing `import.replace` in place when given.
    pub(super) async fn import(&self, import: &Import<'_>) -> Result<(), BackendError> {
        let pem_part = |name: &'static str, pem: String| {
            Part::text(pem)
                .file_name(name)
                .mime_str("application/x-x509-ca-cert")
        };
        let part_error =
            |e: reqwest::Error| BackendError::invalid(KIND, e.without_url().to_string());
        let mut form = Form::new()
            .part(
                "key",
                pem_part("privkey.pem", import.key_pem.expose().to_owned()).map_err(part_error)?,
            )
            .part(
                "cert",
                pem_part("cert.pem", import.cert_pem.to_owned()).map_err(part_error)?,
            );
        if !import.chain_pem.trim().is_empty() {
            let chain = pem_part("chain.pem", import.chain_pem.to_owned()).map_err(part_error)?;
            form = form.part("inter_cert", chain);
        }
        form = form
            .text(
                "id",
                import.replace.map(|c| c.id.clone()).unwrap_or_default(),
            )
            .text("desc", import.description.to_owned());
        // Without `as_default`, replacing the default certificate would make another the default.
        if import.replace.is_some_and(|c| c.is_default) {
            form = form.text("as_default", "true");
        }
        let query = [
            ("api", "SYNO.Core.Certificate"),
            ("method", "import"),
            ("version", "1"),
            ("SynoToken", self.token.as_str()),
            ("_sid", self.sid.as_str()),
        ];
        let request = self.http.post(self.entry()).query(&query).multipart(form);
        let _: serde_json::Value = envelope(
            "SYNO.Core.Certificate import",
            self.authorized(request),
            false,
        )
        .await?;
        Ok(())
    }

    /// The leaf of certificate `id` (its `cert.pem`), read back through `export`.
    pub(super) async fn export_leaf(&self, id: &str) -> Result<String, BackendError> {
        let query = [
            ("api", "SYNO.Core.Certificate"),
            ("method", "export"),
            ("version", "1"),
            ("file", "\"archive\""),
            ("id", id),
            ("_sid", self.sid.as_str()),
        ];
        let what = "SYNO.Core.Certificate export";
        let response = send(
            what,
            self.authorized(self.http.get(self.entry()).query(&query)),
        )
        .await?;
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error(what, e))?;
        // A refusal comes as the JSON envelope; an archive starts with the zip magic `PK`.
        if body.starts_with(b"{") {
            let refused: Envelope<serde_json::Value> = parse(what, &body)?;
            return Err(refusal(what, refused.error.map(|e| e.code)));
        }
        leaf_from_archive(&body)
    }

    /// Ends the session, so it does not linger among DSM's connected users.
    pub(super) async fn logout(self) -> Result<(), BackendError> {
        let version = self.auth_version.to_string();
        let query = [
            ("api", "SYNO.API.Auth"),
            ("version", version.as_str()),
            ("method", "logout"),
            ("session", "rota"),
            ("_sid", self.sid.as_str()),
        ];
        let url = format!("{}/webapi/{}", self.base, self.auth_path);
        let _: serde_json::Value = envelope(
            "SYNO.API.Auth logout",
            self.http.get(url).query(&query),
            true,
        )
        .await?;
        Ok(())
    }

    fn entry(&self) -> String {
        format!("{}/webapi/entry.cgi", self.base)
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request.header("X-SYNO-TOKEN", &self.token)
    }
}

/// Sends `request`; a transport failure or an HTTP error status is an error.
async fn send(
    what: &str,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, BackendError> {
    let response = request.send().await.map_err(|e| transport_error(what, e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let detail = format!("{what}: DSM answered HTTP {status}");
    Err(if status.is_server_error() {
        BackendError::Unreachable {
            backend: KIND,
            detail,
        }
    } else {
        BackendError::Refused {
            backend: KIND,
            detail: format!(
                "{detail}; check `dsm.url` points at DSM's web port (5000, or 5001 for https)"
            ),
        }
    })
}

/// Sends `request` and unwraps DSM's envelope; `auth` says the call belongs to
/// `SYNO.API.Auth`, whose codes 400–410 mean something of their own.
async fn envelope<T: DeserializeOwned>(
    what: &str,
    request: reqwest::RequestBuilder,
    auth: bool,
) -> Result<T, BackendError> {
    let body = send(what, request)
        .await?
        .bytes()
        .await
        .map_err(|e| transport_error(what, e))?;
    let answer: Envelope<T> = parse(what, &body)?;
    match answer {
        Envelope {
            success: true,
            data: Some(data),
            ..
        } => Ok(data),
        Envelope { success: true, .. } => {
            // Calls without data (logout, import on some versions) still parse as `null`.
            serde_json::from_value(serde_json::Value::Null).map_err(|_| BackendError::Unreachable {
                backend: KIND,
                detail: format!("{what}: DSM answered success without its data"),
            })
        }
        Envelope { error, .. } => {
            let code = error.map(|e| e.code);
            Err(if auth {
                auth_refusal(what, code)
            } else {
                refusal(what, code)
            })
        }
    }
}

fn parse<T: DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, BackendError> {
    serde_json::from_slice(body).map_err(|e| BackendError::Unreachable {
        backend: KIND,
        detail: format!(
            "{what}: DSM's answer is not the Web API's JSON envelope ({e}); is `dsm.url` a DSM?"
        ),
    })
}

fn transport_error(what: &str, err: reqwest::Error) -> BackendError {
    if err.is_timeout() {
        return BackendError::Timeout {
            backend: KIND,
            what: format!("DSM to answer {what}"),
            after: REQUEST_TIMEOUT,
        };
    }
    let connect = err.is_connect();
    // Without the URL: it may carry the session id. The causes say what actually failed.
    let err = err.without_url();
    let mut detail = format!("{what}: {err}");
    let mut cause = std::error::Error::source(&err);
    while let Some(inner) = cause {
        let _ = write!(detail, ": {inner}");
        cause = inner.source();
    }
    if connect {
        detail.push_str("; check `dsm.url` and that DSM is up");
    }
    BackendError::Unreachable {
        backend: KIND,
        detail,
    }
}

/// A refusal by any API, with the guide's meaning of its common code.
fn refusal(what: &str, code: Option<i64>) -> BackendError {
    let detail = match code {
        Some(code) => {
            let meaning =
                common_meaning(code).unwrap_or("a code Synology does not document for this API");
            let hint = if code == 105 {
                "; rota's DSM account must be in the `administrators` group"
            } else {
                ""
            };
            format!("{what} refused with error code {code} ({meaning}){hint}")
        }
        None => format!("{what} refused without an error code"),
    };
    BackendError::Refused {
        backend: KIND,
        detail,
    }
}

/// A refusal by `SYNO.API.Auth`.
fn auth_refusal(what: &str, code: Option<i64>) -> BackendError {
    match code.and_then(|c| auth_meaning(c).map(|m| (c, m))) {
        Some((code, meaning)) => BackendError::Refused {
            backend: KIND,
            detail: format!("{what} refused with error code {code} ({meaning})"),
        },
        None => refusal(what, code),
    }
}

/// What to do about the login refusals an operator can fix.
fn login_hint(err: BackendError, has_device: bool) -> BackendError {
    let BackendError::Refused { backend, detail } = err else {
        return err;
    };
    let hint = if detail.contains("code 400") {
        "; check `dsm.username` and the password in `dsm.password_file`"
    } else if detail.contains("code 403") && !has_device {
        "; this account signs in with 2-factor authentication: set `dsm.device_token_file` (see the README)"
    } else if detail.contains("code 403") || detail.contains("code 404") {
        "; the device token in `dsm.device_token_file` is no longer trusted: issue a new one (see the README)"
    } else {
        ""
    };
    BackendError::Refused {
        backend,
        detail: format!("{detail}{hint}"),
    }
}

/// The Login Web API Guide's table of codes common to every API.
fn common_meaning(code: i64) -> Option<&'static str> {
    Some(match code {
        100 => "unknown error",
        101 => "no parameter of API, method or version",
        102 => "the requested API does not exist",
        103 => "the requested method does not exist",
        104 => "the requested version does not support the functionality",
        105 => "the logged in session does not have permission",
        106 => "session timeout",
        107 => "session interrupted by duplicated login",
        108 => "failed to upload the file",
        109..=111 | 117 | 118 => "the network connection is unstable or the system is busy",
        114 => "lost parameters for this API",
        115 => "not allowed to upload a file",
        116 => "not allowed to perform for a demo site",
        119 => "invalid session",
        150 => "request source IP does not match the login IP",
        _ => return None,
    })
}

/// The Login Web API Guide's table of `SYNO.API.Auth` codes.
fn auth_meaning(code: i64) -> Option<&'static str> {
    Some(match code {
        400 => "no such account or incorrect password",
        401 => "disabled account",
        402 => "denied permission",
        403 => "2-factor authentication code required",
        404 => "failed to authenticate 2-factor authentication code",
        406 => "enforce to authenticate with 2-factor authentication code",
        407 => "blocked IP source",
        408 => "expired password cannot change",
        409 => "expired password",
        410 => "password must be changed",
        _ => return None,
    })
}
