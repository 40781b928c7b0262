//! What DSM's error codes mean and what an operator does about them. The meanings are the
//! tables of Synology's "DSM Login Web API Guide": codes common to every API (100–150) and
//! those of `SYNO.API.Auth` (400–410), which other APIs reuse for other things, so the login
//! reads its codes through [`login_refusal`] and every other call through [`refusal`].

use rota_api::BackendError;

use super::KIND;

/// A refusal by any API, with the guide's meaning of its common code.
pub(super) fn refusal(what: &str, code: Option<i64>) -> BackendError {
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

/// A refusal of `SYNO.API.Auth` `login`; `has_device` says a device token was sent.
pub(super) fn login_refusal(what: &str, code: Option<i64>, has_device: bool) -> BackendError {
    let Some((code, meaning)) = code.and_then(|c| auth_meaning(c).map(|m| (c, m))) else {
        return refusal(what, code);
    };
    let hint = match code {
        400 => "; check `dsm.username` and the password in `dsm.password_file`",
        403 if !has_device => {
            "; this account signs in with 2-factor authentication: set `dsm.device_token_file` (see the README)"
        }
        403 | 404 => {
            "; the device token in `dsm.device_token_file` is no longer trusted: issue a new one (see the README)"
        }
        406 => {
            "; DSM enforces 2-factor sign-in: enable it for this account and set `dsm.device_token_file`"
        }
        408..=410 => "; sign in to DSM as this account once and set a new password",
        _ => "",
    };
    BackendError::Refused {
        backend: KIND,
        detail: format!("{what} refused with error code {code} ({meaning}){hint}"),
    }
}

/// The guide's table of codes common to every API.
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

/// The guide's table of `SYNO.API.Auth` codes.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// One row per code an operator meets: who refused, the code, whether a device token was
    /// sent, and what the message must say.
    #[test]
    fn codes_read_as_the_guide_says_with_what_to_do() {
        let login = |code, device| login_refusal("login", Some(code), device).to_string();
        let other = |code| refusal("list", Some(code)).to_string();
        let rows: [(&str, String, &[&str]); 8] = [
            (
                "a wrong password",
                login(400, false),
                &["400", "incorrect password", "dsm.password_file"],
            ),
            (
                "2-factor account without a token",
                login(403, false),
                &["403", "set `dsm.device_token_file`"],
            ),
            (
                "a token DSM forgot",
                login(403, true),
                &["no longer trusted"],
            ),
            (
                "an expired password",
                login(409, false),
                &["expired password", "new password"],
            ),
            (
                "login codes outside the auth table are common codes",
                login(119, false),
                &["invalid session"],
            ),
            (
                "a non-admin account",
                other(105),
                &["permission", "administrators"],
            ),
            (
                "400 from another API is not a password problem",
                other(400),
                &["does not document"],
            ),
            ("a busy NAS", other(117), &["system is busy"]),
        ];
        for (why, message, wants) in rows {
            for want in wants {
                assert!(message.contains(want), "{why}: {message:?} lacks {want:?}");
            }
        }
        assert!(
            refusal("list", None)
                .to_string()
                .contains("without an error code")
        );
    }
}
