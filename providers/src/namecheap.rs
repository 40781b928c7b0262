//! The client for Namecheap's XML API that both Namecheap backends share (the DNS solver and
//! the CA): one authenticated call, its envelope, and Namecheap's error numbers in an
//! operator's words.
//!
//! As Namecheap documents the API (<https://www.namecheap.com/support/api/intro/>): every
//! call goes to `…/xml.response` with the global parameters `ApiUser`, `ApiKey`, `UserName`,
//! `ClientIp` and `Command`; rota POSTs them as a form (setHosts with many records outgrows a
//! URL, and the key stays out of access logs). The answer is HTTP 200 whatever happened:
//! `<ApiResponse Status="OK|ERROR"><Errors><Error Number="…">text</Error></Errors>
//! <CommandResponse Type="…">…</CommandResponse></ApiResponse>`. The sandbox is the same API
//! at `https://api.sandbox.namecheap.com/xml.response`.

pub(crate) mod xml;

use std::net::IpAddr;

use rota_api::config::NamecheapAccount;
use rota_api::{BackendError, SecretSource};

use crate::http_retry::{self, CallName, RetryPolicy};
use xml::Element;

/// The config `kind` of both Namecheap backends.
pub(crate) const KIND: &str = "namecheap";

/// An authenticated client for one `namecheap:` account.
pub(crate) struct NamecheapClient {
    url: String,
    api_user: String,
    username: String,
    client_ip: IpAddr,
    api_key: SecretSource,
    http: reqwest::Client,
    policy: RetryPolicy,
}

impl NamecheapClient {
    /// A client for `account`.
    pub(crate) fn new(account: &NamecheapAccount) -> Result<Self, BackendError> {
        let http = http_retry::client(
            KIND,
            "namecheap.ca_bundle_file",
            account.ca_bundle_file.as_deref(),
        )?;
        Ok(Self {
            url: account.api_url().to_owned(),
            api_user: account.api_user().to_owned(),
            username: account.username.clone(),
            client_ip: account.client_ip,
            api_key: account.api_key_file.clone(),
            http,
            policy: RetryPolicy::VENDOR,
        })
    }

    /// Runs `command` with `params` and returns its `<CommandResponse>`.
    pub(crate) async fn call(
        &self,
        command: &str,
        params: &[(String, String)],
    ) -> Result<Element, BackendError> {
        let key = self.api_key.resolve().map_err(|e| {
            BackendError::invalid(KIND, format!("cannot read `namecheap.api_key_file`: {e}"))
        })?;
        let client_ip = self.client_ip.to_string();
        let mut form: Vec<(&str, &str)> = vec![
            ("ApiUser", &self.api_user),
            ("ApiKey", key.expose()),
            ("UserName", &self.username),
            ("ClientIp", &client_ip),
            ("Command", command),
        ];
        form.extend(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let name = CallName {
            backend: KIND,
            call: command,
        };
        let reply =
            http_retry::send(name, &self.policy, || self.http.post(&self.url).form(&form)).await?;
        let unreadable = |why: String| BackendError::Unreachable {
            backend: KIND,
            detail: format!(
                "{command}: HTTP {}: the answer is not Namecheap's XML ({why}): {}",
                reply.status.as_u16(),
                http_retry::excerpt(&reply.body)
            ),
        };
        let root = xml::parse(&reply.body).map_err(&unreadable)?;
        if !root.is("ApiResponse") {
            return Err(unreadable("no <ApiResponse>".into()));
        }
        if root
            .attr("Status")
            .is_some_and(|s| s.eq_ignore_ascii_case("OK"))
        {
            return root
                .child("CommandResponse")
                .cloned()
                .ok_or_else(|| unreadable("no <CommandResponse>".into()));
        }
        let errors: Vec<(String, String)> = root
            .child("Errors")
            .map(|e| {
                e.children("Error")
                    .map(|e| {
                        (
                            e.attr("Number").unwrap_or("?").to_owned(),
                            e.text().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if errors.is_empty() {
            return Err(unreadable(
                "Status is not OK and no <Error> says why".into(),
            ));
        }
        Err(refusal(command, &errors, &client_ip))
    }
}

/// Namecheap's errors for `command`, verbatim, each with what the operator can do about it.
fn refusal(command: &str, errors: &[(String, String)], client_ip: &str) -> BackendError {
    let said = errors
        .iter()
        .map(|(number, text)| match advice(number, client_ip) {
            Some(advice) => format!("error {number}: {text} ({advice})"),
            None => format!("error {number}: {text}"),
        })
        .collect::<Vec<_>>()
        .join("; ");
    BackendError::Refused {
        backend: KIND,
        detail: format!("{command}: {said}"),
    }
}

/// What to do about Namecheap error `number`, for the numbers an operator can act on
/// (Namecheap's per-method error tables, and the whitelist error quoted in go-namecheap-sdk#4).
fn advice(number: &str, client_ip: &str) -> Option<String> {
    Some(match number {
        "1011150" => format!(
            "whitelist {client_ip} in Namecheap under Profile > Tools > Business & Dev Tools > \
             API Access, or set `namecheap.client_ip` to the address rota calls from"
        ),
        "1011102" | "1010102" => "check `namecheap.api_key_file`, and that API access is \
                                  enabled for the account"
            .into(),
        "1010101" | "1011101" | "1010104" | "1011104" => {
            "check `namecheap.username` and `namecheap.api_user`".into()
        }
        "2019166" | "2016166" => {
            "the domain is not in this Namecheap account: check the cert's domains".into()
        }
        "2030166" => "the domain's DNS cannot be edited through the API".into(),
        "2011294" | "2011170" => "check the cert's `ca.ssl_id`".into(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whitelist_error_names_the_ip() {
        let errors = [(
            "1011150".to_owned(),
            "Invalid request IP: 203.0.113.9".to_owned(),
        )];
        let text = refusal("namecheap.domains.dns.getHosts", &errors, "203.0.113.9").to_string();
        assert!(
            text.contains("error 1011150: Invalid request IP: 203.0.113.9"),
            "{text}"
        );
        assert!(text.contains("whitelist 203.0.113.9"), "{text}");
    }

    #[test]
    fn unknown_numbers_are_quoted_as_they_are() {
        let errors = [("4023130".to_owned(), "Something odd".to_owned())];
        let text = refusal("namecheap.x", &errors, "192.0.2.1").to_string();
        assert_eq!(text, "namecheap: namecheap.x: error 4023130: Something odd");
    }
}
