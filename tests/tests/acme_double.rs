//! ACME renewal information (RFC 9773), certificate profiles and `rateLimited`, end to end: the
//! real rotad against the in-process ACME double (pebble 2.4 serves neither ARI nor profiles).
//! The double signs what rota finalizes with its own root, so the certs here are real; each
//! test asserts on what the double received (orders, their `replaces` and `profile`, request
//! counts) and on what `rota describe` shows.

use std::fmt::Write as _;
use std::time::Duration;

use rota_e2e::acme_double::{AcmeDouble, DoubleOptions, Endpoint, NewOrderAnswer, SuggestedWindow};
use rota_e2e::{Rotad, wait_for};
use serde_json::Value;
use time::OffsetDateTime;

const WAIT: Duration = Duration::from_secs(20);
/// Several sweeps at `check_interval_seconds: 1`: long enough for a loop to show.
const QUIET: Duration = Duration::from_secs(3);

/// One cert per `(id, ca block)`, all through the double; sweeps every second.
fn config(double: &AcmeDouble, acme_extra: &str, certs: &[(&str, &str)]) -> String {
    let mut yaml = format!(
        "daemon:\n  database_path: {{dir}}/rota.db\n  listen_addr: 127.0.0.1:0\n  \
         socket_path: {{dir}}/rota.sock\n  check_interval_seconds: 1\n\
         acme:\n  directory_url: {url}\n  account_credentials_file: {{dir}}/acme/account.json\n  \
         ca_bundle_file: {bundle}\n{acme_extra}certs:\n",
        url = double.directory_url(),
        bundle = double.ca_bundle_path().display(),
    );
    for (id, ca) in certs {
        let _ = write!(
            yaml,
            "  - id: {id}\n    domains: [{id}.rota.test]\n    key_path: {{dir}}/keys/{id}.key\n    \
             ca: {ca}\n    dcv: {{ kind: webroot, directory: {{dir}}/webroot }}\n    \
             install: {{ kind: filesystem, directory: {{dir}}/installed/{id} }}\n"
        );
    }
    yaml
}

fn describe(rotad: &Rotad, id: &str) -> Value {
    let text = rotad.rota_ok(&["describe", "cert", id, "-o", "json"]);
    serde_json::from_str(&text).expect("describe json")
}

/// The newest renewal of `id` once it has finished, and how many renewals there are.
fn finished_renewal(rotad: &Rotad, id: &str, at_least: usize) -> (Value, usize) {
    wait_for(
        &format!("{at_least} finished renewal(s) of {id}"),
        WAIT,
        || {
            let renewals = describe(rotad, id)["renewals"].as_array()?.clone();
            let done = renewals.first()?["finished_at"].is_string();
            (done && renewals.len() >= at_least).then(|| (renewals[0].clone(), renewals.len()))
        },
    )
}

fn time_of(value: &Value) -> OffsetDateTime {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}"));
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).expect("rfc3339")
}

/// A window a month out, as a CA gives a fresh 90-day cert.
fn future_window() -> SuggestedWindow {
    let start =
        OffsetDateTime::now_utc().replace_nanosecond(0).expect("ns") + time::Duration::days(30);
    SuggestedWindow {
        start,
        end: start + time::Duration::days(2),
        explanation_url: Some("https://acme.example.com/docs/ari".to_owned()),
        retry_after_secs: Some(21_600),
    }
}

/// The double serving `window` for every cert, rotad issuing one cert `web` from it, and
/// `rota describe cert web` once it shows the window.
fn window_shown(window: &SuggestedWindow) -> (AcmeDouble, Rotad, Value) {
    let double = AcmeDouble::start(DoubleOptions {
        renewal_info: true,
        ..DoubleOptions::default()
    });
    let served = window.clone();
    double.set_renewal_info(move |_| Some(served.clone()));
    let rotad = Rotad::start(&config(&double, "", &[("web", "{ kind: acme }")]));
    let shown = wait_for("the renewal window in `rota describe`", WAIT, || {
        let detail = describe(&rotad, "web");
        detail["renewal_window"].is_object().then_some(detail)
    });
    (double, rotad, shown)
}

#[test]
fn a_window_in_the_past_renews_at_once_and_the_order_names_the_cert_it_replaces() {
    let double = AcmeDouble::start(DoubleOptions {
        renewal_info: true,
        ..DoubleOptions::default()
    });
    // The first cert gets RFC 9773's example window (January 2025: long past); its
    // replacement a future one, so one ARI renewal is expected and no more. The window is
    // fetched right after the first issuance and acted on by the next sweep (every second).
    double.set_renewal_info(|n| {
        Some(if n == 1 {
            SuggestedWindow::rfc9773_example()
        } else {
            future_window()
        })
    });
    let rotad = Rotad::start(&config(&double, "", &[("web", "{ kind: acme }")]));

    let (latest, count) = finished_renewal(&rotad, "web", 2);
    assert_eq!(count, 2, "issued once, renewed once");
    assert_eq!(latest["trigger"], "AriWindow", "{latest}");
    assert_eq!(latest["status"], "succeeded", "{latest}");

    let issued = double.issued_cert_ids();
    let orders = double.received(Endpoint::NewOrder);
    assert_eq!(orders.len(), 2, "{orders:?}");
    assert!(
        orders[0].get("replaces").is_none(),
        "a first order replaces nothing: {}",
        orders[0]
    );
    assert_eq!(
        orders[1]["replaces"], issued[0],
        "the renewal names the cert it replaces (RFC 9773 §5)"
    );

    let log = rotad.rota_ok(&["log", "web"]);
    assert!(
        log.contains("AriWindow"),
        "`rota log` shows the trigger:\n{log}"
    );
    std::thread::sleep(QUIET);
    assert_eq!(
        double.count(Endpoint::NewOrder),
        2,
        "the replacement's window is in the future: no more orders"
    );
}

#[test]
fn a_future_window_is_shown_and_nothing_is_renewed() {
    let window = future_window();
    let (double, rotad, shown) = window_shown(&window);
    let (shown_window, renews_at) = (&shown["renewal_window"], time_of(&shown["renews_at"]));
    assert_eq!(time_of(&shown_window["start"]), window.start);
    assert_eq!(time_of(&shown_window["end"]), window.end);
    assert_eq!(
        shown_window["explanation_url"],
        "https://acme.example.com/docs/ari"
    );
    assert!(
        (window.start..=window.end).contains(&renews_at),
        "the renewal time is picked inside the window (RFC 9773 §4.2): {renews_at}"
    );
    let text = rotad.rota_ok(&["describe", "cert", "web"]);
    assert!(
        text.contains("ARI window:") && text.contains("acme.example.com/docs/ari"),
        "{text}"
    );
    assert!(text.contains("picked inside the CA's window"), "{text}");

    std::thread::sleep(QUIET);
    assert_eq!(
        double.count(Endpoint::NewOrder),
        1,
        "only the first issuance"
    );
    assert_eq!(
        double.count(Endpoint::RenewalInfo),
        1,
        "the window is not asked for again before its Retry-After (6 h)"
    );
}

#[test]
fn a_window_served_without_retry_after_is_used_and_checked_again_in_six_hours() {
    let window = SuggestedWindow {
        retry_after_secs: None,
        ..future_window()
    };
    let (double, _rotad, shown) = window_shown(&window);
    let fetched_by = OffsetDateTime::now_utc();
    assert_eq!(time_of(&shown["renewal_window"]["start"]), window.start);
    let next_check = time_of(&shown["renewal_window"]["next_check_at"]);
    let six_hours = time::Duration::hours(6);
    assert!(
        next_check <= fetched_by + six_hours && next_check > fetched_by + six_hours - WAIT,
        "no Retry-After: asked again six hours after fetching, not {next_check}"
    );
    std::thread::sleep(QUIET);
    assert_eq!(
        double.count(Endpoint::RenewalInfo),
        1,
        "several sweeps later the window has not been asked for again"
    );
}

#[test]
fn profiles_are_sent_as_configured_and_an_unadvertised_one_is_refused_with_the_choices() {
    let double = AcmeDouble::start(DoubleOptions {
        profiles: [
            ("classic", "The same profile you're accustomed to"),
            (
                "shortlived",
                "A short-lived cert profile, without actual enforcement",
            ),
        ]
        .map(|(name, description)| (name.to_owned(), description.to_owned()))
        .into(),
        ..DoubleOptions::default()
    });
    let certs = [
        ("plain", "{ kind: acme }"),
        ("short", "{ kind: acme, profile: shortlived }"),
        ("bad", "{ kind: acme, profile: tlsserver }"),
    ];
    let rotad = Rotad::start(&config(&double, "  profile: classic\n", &certs));

    for id in ["plain", "short"] {
        let (renewal, _) = finished_renewal(&rotad, id, 1);
        assert_eq!(renewal["status"], "succeeded", "{id}: {renewal}");
    }
    let profile_of = |domain: &str| {
        let orders = double.received(Endpoint::NewOrder);
        let order = orders
            .iter()
            .find(|o| o["identifiers"][0]["value"] == domain)
            .cloned();
        order.map(|o| o["profile"].clone())
    };
    assert_eq!(
        profile_of("plain.rota.test"),
        Some("classic".into()),
        "acme.profile is the default"
    );
    assert_eq!(
        profile_of("short.rota.test"),
        Some("shortlived".into()),
        "the cert's profile overrides it"
    );

    let (failed, _) = finished_renewal(&rotad, "bad", 1);
    assert_eq!(failed["status"], "failed", "{failed}");
    let error = failed["error"].as_str().expect("an error");
    for expected in ["tlsserver", "classic", "shortlived"] {
        assert!(
            error.contains(expected),
            "the error names {expected}: {error}"
        );
    }
    assert!(
        rotad.rota_ok(&["log", "bad"]).contains("shortlived"),
        "and `rota log` shows it"
    );
}

#[test]
fn rate_limited_backs_off_for_retry_after_without_retrying() {
    let double = AcmeDouble::start(DoubleOptions::default());
    double.set_new_order(NewOrderAnswer::RateLimited {
        retry_after_secs: 3600,
    });
    let rotad = Rotad::start(&config(&double, "", &[("web", "{ kind: acme }")]));

    let (failed, _) = finished_renewal(&rotad, "web", 1);
    assert_eq!(failed["status"], "failed", "{failed}");
    let detail = describe(&rotad, "web");
    let backoff = &detail["backoff"];
    let next = time_of(&backoff["next_attempt_at"]);
    assert!(
        next - OffsetDateTime::now_utc() >= time::Duration::minutes(59),
        "the backoff honours Retry-After: 3600: next attempt at {next}"
    );
    assert_eq!(backoff["failures"], 1);
    let failing = detail["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Failing").cloned())
        .expect("a Failing condition");
    assert_eq!(failing["status"], "True", "{failing}");
    let message = failing["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("rate"),
        "the condition says the CA rate-limited: {message}"
    );

    std::thread::sleep(QUIET);
    assert_eq!(
        double.count(Endpoint::NewOrder),
        1,
        "no retry inside the backoff: no tight loop"
    );
    let text = rotad.rota_ok(&["describe", "cert", "web"]);
    assert!(text.contains("1 failure in a row"), "{text}");
}

#[test]
fn an_absurd_retry_after_is_clamped_to_a_week_not_a_panic() {
    let double = AcmeDouble::start(DoubleOptions::default());
    // 31,700 years: added to the clock unclamped, it would overflow past the year 9999.
    double.set_new_order(NewOrderAnswer::RateLimited {
        retry_after_secs: 999_999_999_999,
    });
    let rotad = Rotad::start(&config(&double, "", &[("web", "{ kind: acme }")]));

    let (failed, _) = finished_renewal(&rotad, "web", 1);
    assert_eq!(failed["status"], "failed", "{failed}");
    let next = time_of(&describe(&rotad, "web")["backoff"]["next_attempt_at"]);
    let wait = next - OffsetDateTime::now_utc();
    assert!(
        wait > time::Duration::days(6) && wait <= time::Duration::days(7),
        "the backoff is the clamp, a week: next attempt at {next}"
    );
    assert!(
        rotad.rota_ok(&["status"]).contains("web"),
        "rotad is still serving after the answer"
    );
}

#[test]
fn an_endless_answer_is_cut_at_a_mebibyte_and_fails_the_renewal() {
    let double = AcmeDouble::start(DoubleOptions::default());
    double.set_new_order(NewOrderAnswer::Oversized {
        bytes: 8 * 1024 * 1024,
    });
    let rotad = Rotad::start(&config(&double, "", &[("web", "{ kind: acme }")]));

    let (failed, _) = finished_renewal(&rotad, "web", 1);
    assert_eq!(failed["status"], "failed", "{failed}");
    let log = rotad.rota_ok(&["log", "web"]);
    assert!(
        log.contains("larger than 1024 KiB"),
        "the failure names the cap, not a parse error of 8 MiB of text: {log}"
    );
}
