//! The dashboard in a real browser: headless Chromium (Debian's `chromium`) driven over
//! WebDriver (`chromium-driver`) against the real rotad on the local CA. An operator opens
//! the overview, logs in with the API token, clicks "Renew now", lands on the cert's page and
//! sees the renewal's steps and the Ready condition; then a renewal started from the CLI
//! appears on that open page, step by step, without a reload. Screenshots of the overview and
//! the cert's page are saved (the path is printed) for a person to look at.

use std::fmt::Write as _;
use std::time::Duration;

use fantoccini::{Client, Locator};
use rota_e2e::browser::Browser;
use rota_e2e::{Rotad, wait_for};
use serde_json::Value;

const TOKEN: &str = "browser-test-token-9d2a";
const WAIT: Duration = Duration::from_secs(20);

fn config() -> String {
    let mut yaml = "daemon:\n  database_path: {dir}/rota.db\n  listen_addr: 127.0.0.1:0\n  socket_path: {dir}/rota.sock\n  api_token_file: env:ROTA_E2E_DASH_TOKEN\nlocal_ca:\n  directory: {dir}/ca\ncerts:\n".to_owned();
    for (id, domains) in [
        ("web", "[web.home.arpa, www.home.arpa]"),
        ("mail", "[mail.home.arpa]"),
        ("nas", "[nas.home.arpa]"),
    ] {
        let _ = write!(
            yaml,
            "  - id: {id}\n    description: {id} service\n    domains: {domains}\n    key_path: {{dir}}/keys/{id}.key\n    ca: {{ kind: local }}\n    install: {{ kind: filesystem, directory: {{dir}}/installed/{id} }}\n"
        );
    }
    yaml
}

/// Runs `script` in the page and returns its value.
async fn js(client: &Client, script: &str) -> Value {
    client.execute(script, vec![]).await.expect("script runs")
}

/// Polls `script` in the page until it returns something truthy.
async fn wait_js(client: &Client, what: &str, script: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = js(client, script).await;
        let truthy = !matches!(v, Value::Null | Value::Bool(false));
        if truthy {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn text(client: &Client, locator: Locator<'_>) -> String {
    client
        .find(locator)
        .await
        .expect("element")
        .text()
        .await
        .expect("text")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_logs_in_renews_and_watches_it_live() {
    let rotad = Rotad::start_with_env(&config(), &[("ROTA_E2E_DASH_TOKEN", TOKEN)]);
    wait_for("every cert Ready", WAIT, || {
        let certs = rotad.certs_json();
        let items = certs["items"].as_array()?;
        (items.len() == 3
            && items
                .iter()
                .all(|c| rota_e2e::condition(c, "Ready")["status"] == "True"))
        .then_some(())
    });
    let base = format!("http://{}", rotad.tcp_addr());
    let browser = Browser::start(1280, 1000).await;
    let newest = log_in_and_renew_now(&browser, &base).await;
    watch_a_cli_renewal(&browser, &rotad, newest).await;
    overview_follows_the_cli(&browser, &rotad, &base).await;
    browser.close().await;
}

/// Opens the overview, logs in, clicks "Renew now" on web's row; returns the id of the
/// renewal that click started, once the cert's page shows it succeeded and Ready=True.
async fn log_in_and_renew_now(browser: &Browser, base: &str) -> i64 {
    let c = &browser.client;
    c.goto(&format!("{base}/")).await.expect("overview");
    let summary = text(c, Locator::Id("summary")).await;
    assert!(summary.contains("3 Ready"), "{summary}");
    assert!(
        c.find_all(Locator::Css("tbody button"))
            .await
            .expect("buttons")
            .is_empty(),
        "no action before logging in"
    );
    let days = text(c, Locator::Css("#row-web td.days")).await;
    assert!(
        days.contains("(ok)"),
        "urgency in words, not colour only: {days}"
    );
    assert!(
        c.find(Locator::Css("svg.timeline path.window"))
            .await
            .is_ok(),
        "the timeline is drawn"
    );
    wait_js(
        c,
        "the live socket",
        "return document.getElementById('live-status').textContent.includes('on')",
    )
    .await;
    browser.screenshot("overview").await;

    c.find(Locator::LinkText("Log in"))
        .await
        .expect("login link")
        .click()
        .await
        .expect("click");
    c.find(Locator::Id("token"))
        .await
        .expect("token field")
        .send_keys(TOKEN)
        .await
        .expect("type the token");
    c.find(Locator::Css("main form button[type=submit]"))
        .await
        .expect("submit")
        .click()
        .await
        .expect("log in");
    let cookie_from_js = js(c, "return document.cookie").await;
    assert_eq!(
        cookie_from_js,
        Value::String(String::new()),
        "the session cookie is HttpOnly"
    );

    let before = js(
        c,
        "return Number(document.getElementById('row-web').dataset.r)",
    )
    .await;
    c.find(Locator::Css("#row-web button"))
        .await
        .expect("Renew now on web's row")
        .click()
        .await
        .expect("renew");
    wait_js(
        c,
        "the action to lead to the cert's page",
        "return location.pathname === '/certs/web' && document.readyState === 'complete'",
    )
    .await;
    let newest = wait_js(
        c,
        "the new renewal, succeeded, with its steps",
        &format!(
            "const r = document.querySelector('#live article.renewal');
             const id = r && Number(r.id.replace('renewal-', ''));
             return id > {before} && r.classList.contains('succeeded')
                 && r.querySelectorAll('li.step').length > 0 && id;"
        ),
    )
    .await;
    let ready = wait_js(
        c,
        "Ready=True",
        "const s = document.querySelector('#cond-Ready td.cond'); return s && s.textContent === 'True' && s.textContent;",
    )
    .await;
    assert_eq!(ready, "True");
    browser.screenshot("detail-after-renew-now").await;
    newest.as_i64().expect("renewal id")
}

/// On the open cert page, a renewal started from the CLI appears step by step, in place.
async fn watch_a_cli_renewal(browser: &Browser, rotad: &Rotad, newest: i64) {
    let c = &browser.client;

    // Now watch: a marker that a reload would clear, and a record of each time the live part
    // is replaced with how many steps its newest renewal shows.
    js(
        c,
        "window.__stayed = true; window.__seen = [];
         new MutationObserver(() => {
             const r = document.querySelector('#live article.renewal');
             if (r) { window.__seen.push([r.id, r.querySelectorAll('li.step').length]); }
         }).observe(document.querySelector('main'), { childList: true, subtree: true });
         return true;",
    )
    .await;
    let _ = rotad.rota_ok(&["renew", "web"]);
    let expected = format!("renewal-{}", newest + 1);
    wait_js(
        c,
        "the CLI's renewal on the open page",
        &format!(
            "const r = document.querySelector('#live article.renewal');
             return window.__stayed === true && r && r.id === '{expected}' && r.classList.contains('succeeded');"
        ),
    )
    .await;
    let seen = js(c, "return window.__seen").await;
    let updates = seen.as_array().expect("array");
    assert!(
        updates.iter().any(|u| u[0] == expected.as_str()),
        "the page was updated in place with the new renewal: {seen}"
    );
    println!("live updates of the step list (renewal, steps shown): {seen}");
    let mut counts: Vec<u64> = updates
        .iter()
        .filter(|u| u[0] == expected.as_str())
        .filter_map(|u| u[1].as_u64())
        .collect();
    counts.dedup();
    assert!(
        counts.len() >= 2 && counts.windows(2).all(|w| w[0] < w[1]),
        "the step list grew in place as the renewal ran: {counts:?}"
    );
    // Read in one script: the live part may be replaced between two WebDriver calls.
    let steps = js(
        c,
        "return document.querySelector('#live article.renewal ol.steps').textContent",
    )
    .await;
    let steps = steps.as_str().expect("text");
    for step in ["load_key", "submit_order", "await_issuance", "install"] {
        assert!(steps.contains(step), "{step} in {steps}");
    }
    browser.screenshot("detail").await;
}

/// The overview follows a CLI renewal too, and keyboard users reach the action.
async fn overview_follows_the_cli(browser: &Browser, rotad: &Rotad, base: &str) {
    let c = &browser.client;
    c.goto(&format!("{base}/")).await.expect("overview");
    wait_js(
        c,
        "the live socket",
        "return document.getElementById('live-status').textContent.includes('on')",
    )
    .await;
    let last = js(
        c,
        "return Number(document.getElementById('row-mail').dataset.r)",
    )
    .await;
    let _ = rotad.rota_ok(&["renew", "mail"]);
    wait_js(
        c,
        "mail's row updated live",
        &format!("return Number(document.getElementById('row-mail').dataset.r) > {last}"),
    )
    .await;
    let focusable = js(
        c,
        "const b = document.querySelector('#row-mail button'); b.focus(); return document.activeElement === b;",
    )
    .await;
    assert_eq!(
        focusable,
        Value::Bool(true),
        "the button takes keyboard focus"
    );
    browser.screenshot("overview-logged-in").await;
}
