//! How an alert sink is named to operators (`rota describe cert`, `rota alert test`, logs):
//! enough to tell the sinks apart, nothing that could be a secret. Webhook URLs often carry
//! their credential in the path (`/incoming/abc…`) or the user info, so only the scheme, host
//! and port are shown.

use super::schema::AlertSpec;

impl AlertSpec {
    /// `email to a@x.test, b@x.test` or `webhook to https://hooks.x.test:8443`.
    #[must_use]
    pub fn label(&self) -> String {
        match self {
            Self::Email(email) => format!("email to {}", email.to.join(", ")),
            Self::Webhook(hook) => format!("webhook to {}", url_origin(&hook.url)),
        }
    }
}

/// `scheme://host[:port]` of `url`, without user info, path, query or fragment.
fn url_origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if scheme.is_empty() {
        host.to_owned()
    } else {
        format!("{scheme}://{host}")
    }
}

#[cfg(test)]
mod tests {
    use super::url_origin;

    #[test]
    fn only_the_origin_of_a_webhook_is_shown() {
        for (url, want, why) in [
            (
                "https://hooks.test/incoming/abc",
                "https://hooks.test",
                "path dropped",
            ),
            (
                "http://127.0.0.1:8080/x?token=s",
                "http://127.0.0.1:8080",
                "port kept, query dropped",
            ),
            (
                "https://user:pw@hooks.test/x",
                "https://hooks.test",
                "user info dropped",
            ),
            (
                "https://hooks.test#frag",
                "https://hooks.test",
                "fragment dropped",
            ),
            ("hooks.test/x", "hooks.test", "no scheme"),
        ] {
            assert_eq!(url_origin(url), want, "{why}");
        }
    }
}
