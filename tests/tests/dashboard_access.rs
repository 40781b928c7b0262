//! The dashboard's doors, end to end against the real rotad on the local CA, with curl as a
//! browser (or an attacker) would call it: pages render for anyone who may read; "Renew now"
//! needs a session from the login form *and* that session's CSRF token, and a page of another
//! origin is refused; the session cookie is no credential for the JSON API; without a token
//! configured the dashboard is read-only. `/metrics` parses as Prometheus text and says what
//! the audit database says; `/ws` pushes a cert's row when a renewal started from the CLI runs.

use std::fmt::Write as _;
use std::time::Duration;

use rota_e2e::dashboard::{LiveWatch, csrf_in, http, login};
use rota_e2e::{Rotad, wait_for};

const TOKEN: &str = "dash-access-token-5c1e";
const WAIT: Duration = Duration::from_secs(20);

fn config(token: bool) -> String {
    let token = if token {
        "  api_token_file: env:ROTA_E2E_DASH_TOKEN\n"
    } else {
        ""
    };
    let mut yaml = format!(
        "daemon:\n  database_path: {{dir}}/rota.db\n  listen_addr: 127.0.0.1:0\n  socket_path: {{dir}}/rota.sock\n{token}local_ca:\n  directory: {{dir}}/ca\ncerts:\n"
    );
    for id in ["web", "mail"] {
        let _ = write!(
            yaml,
            "  - id: {id}\n    domains: [{id}.home.arpa]\n    key_path: {{dir}}/keys/{id}.key\n    ca: {{ kind: local }}\n    install: {{ kind: filesystem, directory: {{dir}}/installed/{id} }}\n"
        );
    }
    yaml
}

fn start(token: bool) -> Rotad {
    let rotad = Rotad::start_with_env(&config(token), &[("ROTA_E2E_DASH_TOKEN", TOKEN)]);
    for id in ["web", "mail"] {
        let cert = rotad.path(&format!("installed/{id}/cert.pem"));
        wait_for(&format!("{id} installed"), WAIT, || {
            cert.exists().then_some(())
        });
    }
    wait_for("both Ready", WAIT, || {
        let certs = rotad.certs_json();
        certs["items"]
            .as_array()?
            .iter()
            .all(|c| rota_e2e::condition(c, "Ready")["status"] == "True")
            .then_some(())
    });
    rotad
}

/// Renewals of `cert` in the audit database, by status.
fn renewals(rotad: &Rotad, cert: &str, status: &str) -> i64 {
    let db = rusqlite::Connection::open(rotad.path("rota.db")).expect("open db");
    db.query_row(
        "SELECT count(*) FROM renewals WHERE cert_id = ?1 AND status = ?2",
        [cert, status],
        |r| r.get(0),
    )
    .expect("count")
}

fn all_renewals(rotad: &Rotad) -> i64 {
    let db = rusqlite::Connection::open(rotad.path("rota.db")).expect("open db");
    db.query_row("SELECT count(*) FROM renewals", [], |r| r.get(0))
        .expect("count")
}

/// Anyone who may read sees the pages, filtered as asked, without the actions.
fn pages_render_without_actions(addr: std::net::SocketAddr) {
    for path in ["/", "/certs/web", "/login", "/?sort=id&q=web&show=ready"] {
        let page = http(addr, "GET", path, &[], None);
        assert_eq!(page.status, 200, "{path}: {page:?}");
        assert!(!page.body.contains("Renew now"), "{path} offers no action");
        let csp = page.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
    }
    let filtered = http(addr, "GET", "/?q=mail", &[], None).body;
    assert!(filtered.contains("id=\"row-mail\"") && !filtered.contains("id=\"row-web\""));
}

#[test]
fn renew_now_needs_a_session_and_its_csrf_token_and_pages_render_without() {
    let rotad = start(true);
    let addr = rotad.tcp_addr();
    pages_render_without_actions(addr);

    let before = all_renewals(&rotad);
    let renew = "/certs/web/renew";
    let no_session = http(addr, "POST", renew, &[], Some("csrf=x"));
    assert_eq!(no_session.status, 401, "{no_session:?}");
    let wrong_login = http(addr, "POST", "/login", &[], Some("token=not-it"));
    assert_eq!(wrong_login.status, 401);
    assert!(wrong_login.header("set-cookie").is_none());

    let cookie = login(addr, TOKEN);
    let page = http(
        addr,
        "GET",
        "/certs/web",
        std::slice::from_ref(&cookie),
        None,
    );
    assert!(page.body.contains("Renew now"), "a session sees the action");
    let csrf = csrf_in(&page.body);

    let overview_form = http(addr, "POST", "/renew", &[], Some("cert=web"));
    assert_eq!(
        overview_form.status, 401,
        "the overview's form needs a session too"
    );
    let overview_form = http(
        addr,
        "POST",
        "/renew",
        std::slice::from_ref(&cookie),
        Some("cert=web&csrf=0000"),
    );
    assert_eq!(overview_form.status, 403, "and the session's CSRF token");
    let missing = http(addr, "POST", renew, std::slice::from_ref(&cookie), Some(""));
    assert_eq!(missing.status, 403, "no CSRF token: {missing:?}");
    let wrong = http(
        addr,
        "POST",
        renew,
        std::slice::from_ref(&cookie),
        Some("csrf=0000"),
    );
    assert_eq!(wrong.status, 403, "a wrong CSRF token");
    let cross = http(
        addr,
        "POST",
        renew,
        &[cookie.clone(), "Origin: http://evil.example".to_owned()],
        Some(&format!("csrf={csrf}")),
    );
    assert_eq!(cross.status, 403, "another origin");
    // The session cookie is not the API's credential, with or without the protocol header.
    let api = http(
        addr,
        "POST",
        "/api/certs/web/renew",
        &[cookie.clone(), "x-rota-protocol: 2".to_owned()],
        Some(&format!("csrf={csrf}")),
    );
    assert_eq!(
        api.status, 401,
        "the cookie does not open the JSON API: {api:?}"
    );
    assert_eq!(
        all_renewals(&rotad),
        before,
        "nothing was renewed by a refused call"
    );

    let accepted = http(
        addr,
        "POST",
        renew,
        std::slice::from_ref(&cookie),
        Some(&format!("csrf={csrf}")),
    );
    assert_eq!(accepted.status, 303, "{accepted:?}");
    assert_eq!(accepted.header("location").as_deref(), Some("/certs/web"));
    wait_for("the renewal from the dashboard", WAIT, || {
        (renewals(&rotad, "web", "succeeded") == 2).then_some(())
    });

    // Logging out ends the session.
    let out = http(
        addr,
        "POST",
        "/logout",
        std::slice::from_ref(&cookie),
        Some(&format!("csrf={csrf}")),
    );
    assert_eq!(out.status, 303);
    let after = http(
        addr,
        "POST",
        renew,
        &[cookie],
        Some(&format!("csrf={csrf}")),
    );
    assert_eq!(after.status, 401, "the session is gone");
}

#[test]
fn without_a_token_the_dashboard_is_read_only() {
    let rotad = start(false);
    let addr = rotad.tcp_addr();
    let page = http(addr, "GET", "/", &[], None);
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("Read-only"),
        "says why there is no login"
    );
    let login = http(addr, "POST", "/login", &[], Some(&format!("token={TOKEN}")));
    assert_eq!(login.status, 403, "{login:?}");
    let renew = http(addr, "POST", "/certs/web/renew", &[], Some("csrf=x"));
    assert_eq!(renew.status, 403, "{renew:?}");
    assert_eq!(renewals(&rotad, "web", "succeeded"), 1);
}

#[test]
fn metrics_parse_as_prometheus_text_and_match_the_store() {
    let rotad = start(true);
    let _ = rotad.rota_ok(&["renew", "web"]);
    let addr = rotad.tcp_addr();
    for path in ["/healthz", "/readyz"] {
        assert_eq!(http(addr, "GET", path, &[], None).status, 200, "{path}");
    }
    let page = http(addr, "GET", "/metrics", &[], None);
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap_or_default()
            .starts_with("text/plain; version=0.0.4")
    );
    let scrape = prometheus_parse::Scrape::parse(page.body.lines().map(|l| Ok(l.to_owned())))
        .expect("Prometheus text format");
    // Every value rota exports here is a whole number (a Unix time in seconds, a count).
    let value = |metric: &str, labels: &[(&str, &str)]| -> i64 {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
            .unwrap_or_else(|| panic!("{metric} {labels:?} in:\n{}", page.body));
        match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => {
                assert!(v.fract() == 0.0, "{metric}: a whole number, not {v}");
                v as i64
            }
            ref other => panic!("{metric}: {other:?}"),
        }
    };
    let described = rotad.certs_json();
    for item in described["items"].as_array().expect("items") {
        let id = item["metadata"]["name"].as_str().expect("name");
        let not_after = time::OffsetDateTime::parse(
            item["status"]["notAfter"].as_str().expect("notAfter"),
            &time::format_description::well_known::Rfc3339,
        )
        .expect("rfc3339");
        assert_eq!(
            value(
                "rota_certificate_not_after_timestamp_seconds",
                &[("cert", id)]
            ),
            not_after.unix_timestamp()
        );
        assert_eq!(value("rota_certificate_ready", &[("cert", id)]), 1);
        let renewal = time::OffsetDateTime::parse(
            item["status"]["renewalTime"].as_str().expect("renewalTime"),
            &time::format_description::well_known::Rfc3339,
        )
        .expect("rfc3339");
        assert_eq!(
            value(
                "rota_certificate_renewal_timestamp_seconds",
                &[("cert", id)]
            ),
            renewal.unix_timestamp()
        );
        assert_eq!(
            value(
                "rota_renewals_total",
                &[("cert", id), ("result", "succeeded")]
            ),
            renewals(&rotad, id, "succeeded")
        );
    }
    assert_eq!(
        value(
            "rota_renewals_total",
            &[("cert", "web"), ("result", "succeeded")]
        ),
        2
    );
    let histogram = scrape
        .samples
        .iter()
        .find(|s| s.metric == "rota_renewal_duration_seconds")
        .expect("the duration histogram");
    let prometheus_parse::Value::Histogram(buckets) = &histogram.value else {
        panic!("a histogram: {:?}", histogram.value)
    };
    let inf = buckets
        .iter()
        .find(|b| b.less_than.is_infinite())
        .expect("+Inf");
    assert!(
        (inf.count - 3.0).abs() < f64::EPSILON,
        "every finished renewal counted: {}",
        inf.count
    );
    assert_eq!(value("rota_leader", &[]), 1);
    assert_eq!(value("rota_certificates", &[]), 2);
}

#[test]
fn a_renewal_started_from_the_cli_is_pushed_to_open_pages() {
    let rotad = start(true);
    let addr = rotad.tcp_addr();
    let overview = LiveWatch::start(addr, "/ws", &[]);
    let cookie = login(addr, TOKEN);
    let cookie_value = cookie.trim_start_matches("Cookie: ").to_owned();
    let detail = LiveWatch::start(addr, "/ws?cert=web", &[("cookie", &cookie_value)]);
    let _ = rotad.rota_ok(&["renew", "web"]);
    let row = wait_for("the web row pushed to the overview", WAIT, || {
        overview
            .messages()
            .into_iter()
            .find(|m| m.contains("\"id\":\"row-web\"") && m.contains("data-r=\\\"3\\\""))
    });
    assert!(
        !row.contains("Renew now"),
        "no action for a watcher without a session"
    );
    assert!(
        overview.messages().iter().all(|m| !m.contains("row-mail")),
        "only the cert that changed is sent"
    );
    wait_for(
        "the renewal's steps pushed to the cert's page",
        WAIT,
        || {
            detail.messages().into_iter().find(|m| {
                m.contains("\"id\":\"live\"")
                    && m.contains("renewal-3")
                    && m.contains("install")
                    && m.contains("Renew now")
            })
        },
    );
}
