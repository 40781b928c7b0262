//! Dashboard sessions: the API token, typed once into the login form, is exchanged for a
//! random session id kept in an HttpOnly, SameSite=Strict cookie. Each session has its own
//! CSRF token, which every dashboard form carries. Sessions live in memory only (a restart
//! logs everyone out) and expire a fixed time after login.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use rand::RngCore;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "rota_session";

/// How long a login lasts.
pub(crate) const LIFETIME: Duration = Duration::from_secs(8 * 60 * 60);

/// One logged-in browser.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// The token its forms must carry.
    pub csrf: String,
    expires: Instant,
}

/// Every live session, by session id.
#[derive(Debug, Default)]
pub(crate) struct Sessions(Mutex<HashMap<String, Session>>);

impl Sessions {
    /// Opens a session; returns its id (for the cookie) and its CSRF token.
    pub(crate) fn open(&self) -> (String, String) {
        let (id, csrf) = (random_token(), random_token());
        let now = Instant::now();
        let mut sessions = self.lock();
        sessions.retain(|_, s| s.expires > now);
        sessions.insert(
            id.clone(),
            Session {
                csrf: csrf.clone(),
                expires: now + LIFETIME,
            },
        );
        (id, csrf)
    }

    /// The live session whose id the request's cookie carries.
    pub(crate) fn lookup(&self, headers: &HeaderMap) -> Option<Session> {
        let presented = cookie(headers, COOKIE)?;
        let now = Instant::now();
        // Compare every id in constant time so a guess learns nothing from timing.
        self.lock()
            .iter()
            .find(|(id, s)| {
                constant_time_eq(id.as_bytes(), presented.as_bytes()) && s.expires > now
            })
            .map(|(_, s)| s.clone())
    }

    /// Ends the session the request's cookie carries.
    pub(crate) fn close(&self, headers: &HeaderMap) {
        if let Some(presented) = cookie(headers, COOKIE) {
            self.lock().remove(presented);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// 32 random bytes as hex.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The value of cookie `name` in the request's Cookie headers.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Equality whose time does not depend on where the inputs differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn a_session_is_found_by_its_cookie_only() {
        let sessions = Sessions::default();
        let (id, csrf) = sessions.open();
        assert_ne!(id, csrf);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("theme=dark; {COOKIE}={id}")).unwrap(),
        );
        assert_eq!(sessions.lookup(&headers).unwrap().csrf, csrf);
        let mut wrong = HeaderMap::new();
        wrong.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{COOKIE}={csrf}")).unwrap(),
        );
        assert!(sessions.lookup(&wrong).is_none());
        sessions.close(&headers);
        assert!(sessions.lookup(&headers).is_none());
    }
}
