//! One logged-in session with DSM's Web API, spoken as Synology documents it:
//!
//! - Discovery and login: Synology's "DSM Login Web API Guide"
//!   (<https://global.download.synology.com/download/Document/Software/DeveloperGuide/Os/DSM/All/enu/DSM_Login_Web_API_Guide_enu.pdf>):
//!   `query.cgi` `SYNO.API.Info` `query` names the CGI path and versions of `SYNO.API.Auth`;
//!   `login` with `account`, `passwd`, `format=sid`, `enable_syno_token=yes` (and, for a
//!   2-factor account, the trusted device's `device_id` with its `device_name`) answers
//!   `{"success":true,"data":{"sid":…,"synotoken":…}}`; `logout` ends the session. rota asks
//!   for at most version 6, which DSM 6.2 and 7 both serve with these fields (version 7 only
//!   renames the device id in the answer, `did` to `device_id`, as acme.sh's script notes;
//!   rota never reads it).
//!   The password goes in a form body, never in a URL that DSM's access log would keep.
//! - Certificates: not in Synology's public guides; rota follows the calls DSM's own Control
//!   Panel makes, as acme.sh's `deploy/synology_dsm.sh` and N4S4/synology-api's
//!   `core_certificate.py` use them: `SYNO.Core.Certificate.CRT` `list` (each entry's `id`,
//!   `desc`, `is_default`), `SYNO.Core.Certificate` `import` (multipart `key`, `cert`,
//!   `inter_cert`, `id`, `desc`, `as_default`; the `SynoToken` in the query and the
//!   `X-SYNO-TOKEN` header) and `export` (`file="archive"`: a zip with `cert.pem`). The
//!   archive's member names come from those clients and DSM's UI, not from a Synology
//!   document; an archive without `cert.pem` is reported with the names it does hold.
//! - Every answer is the envelope `{"success":true,"data":…}` or
//!   `{"success":false,"error":{"code":N}}`; the codes' meanings are the guide's tables
//!   (common codes 100–150, `SYNO.API.Auth` codes 400–410), kept in [`super::refusal`].
//!
//! The session id and SynoToken ride in URLs as DSM requires; transport errors are reported
//! without their URL so neither reaches a log.

use std::time::Duration;

use reqwest::multipart::{Form, Part};

use crate::error_chain::error_chain;

use super::KIND;
use super::archive::leaf_from_archive;
use super::refusal::{login_refusal, refusal};
use rota_api::{BackendError, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;

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
        let what = "SYNO.API.Info query";
        let info: AuthInfo = envelope(what, http.get(&info_url).query(&query), |code| {
            refusal(what, code)
        })
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
        let what = "SYNO.API.Auth login";
        let has_device = who.device.is_some();
        let login: LoginData = envelope(what, http.post(&url).form(&form), |code| {
            login_refusal(what, code, has_device)
        })
        .await?;
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
        let what = "SYNO.Core.Certificate.CRT list";
        let list: CertList = envelope(what, request, |code| refusal(what, code)).await?;
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
        let what = "SYNO.Core.Certificate import";
        let _: serde_json::Value =
            envelope(what, self.authorized(request), |code| refusal(what, code)).await?;
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
        let what = "SYNO.API.Auth logout";
        let request = self.http.get(url).query(&query);
        let _: serde_json::Value = envelope(what, request, |code| refusal(what, code)).await?;
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

/// Sends `request` and unwraps DSM's envelope; `refuse` turns a refusal's error code into
/// the error (codes mean different things to different APIs).
async fn envelope<T: DeserializeOwned>(
    what: &str,
    request: reqwest::RequestBuilder,
    refuse: impl FnOnce(Option<i64>) -> BackendError,
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
        Envelope { error, .. } => Err(refuse(error.map(|e| e.code))),
    }
}

/// `body` as JSON of type `T`; anything else means `dsm.url` is not a DSM.
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
    let mut detail = format!("{what}: {}", error_chain(&err));
    if connect {
        detail.push_str("; check `dsm.url` and that DSM is up");
    }
    BackendError::Unreachable {
        backend: KIND,
        detail,
    }
}
