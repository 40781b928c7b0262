//! `SurrealStore` over `ws://` against a real SurrealDB server (the workspace's
//! `rota-surreal-test-server`): what one connection writes, a fresh one reads; nodes share the
//! audit trail but each closes and cleans up only its own work; the schema is defined once
//! when nodes connect together; bad credentials and endpoints fail clearly; no private key
//! ever lands in a table.

use rota_api::config::{DcvSpec, WebrootDcv};
use rota_api::status::{Reason, RenewalStatus, Step, StepStatus};
use rota_api::{CertId, DcvChallenge};
use rota_e2e::surreal::{PASSWORD, SurrealServer, dump_tables, rows_containing};
use rota_store::{AuditStore, IssuedCertRow, StoreError, SurrealOptions, SurrealStore};
use time::OffsetDateTime;

fn cert(id: &str) -> CertId {
    CertId::new(id).expect("valid cert id")
}

/// Whole seconds: what a round trip through the store keeps exactly.
fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc().replace_nanosecond(0).expect("ns")
}

/// A real certificate for `domain` (self-signed: the store only keeps PEM text and facts).
fn issued(id: &str, renewal_id: i64) -> IssuedCertRow {
    let made = rcgen::generate_simple_self_signed(vec![format!("{id}.rota.test")])
        .expect("self-signed cert");
    let serial = format!("{:x}", renewal_id * 7919);
    IssuedCertRow {
        cert_id: cert(id),
        renewal_id,
        cert_pem: made.cert.pem(),
        chain_pem: made.cert.pem(),
        serial,
        not_after: now() + time::Duration::days(90),
        issued_at: now(),
    }
}

fn webroot_challenge(token: &str) -> (DcvSpec, DcvChallenge) {
    (
        DcvSpec::Webroot(WebrootDcv {
            directory: "/srv/www".into(),
        }),
        DcvChallenge::Http01 {
            domain: "web.rota.test".into(),
            token: token.into(),
            key_authorization: format!("{token}.thumb"),
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_connection_reads_what_another_wrote() {
    let server = SurrealServer::start();
    let at = now();
    let (renewal_id, row) = {
        let store = server.store("reopen", "node-a").await.expect("connect");
        let renewal = store
            .open_renewal(&cert("web"), Reason::NotInstalled, at)
            .await
            .expect("open");
        store
            .record_step(
                renewal.id,
                Step::Install,
                StepStatus::Succeeded,
                "installed",
                at,
            )
            .await
            .expect("step");
        store
            .close_renewal(renewal.id, RenewalStatus::Succeeded, None, at)
            .await
            .expect("close");
        let row = issued("web", renewal.id);
        store.record_issued_cert(&row).await.expect("issued");
        (renewal.id, row)
    };

    let fresh = server.store("reopen", "node-a").await.expect("reconnect");
    let renewals = fresh.renewals(&cert("web"), 10).await.expect("renewals");
    assert_eq!(renewals.len(), 1, "{renewals:?}");
    assert_eq!(renewals[0].id, renewal_id);
    assert_eq!(renewals[0].status, RenewalStatus::Succeeded);
    assert_eq!(renewals[0].finished_at, Some(at));
    let steps = fresh.steps(renewal_id).await.expect("steps");
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert_eq!(steps[0].message, "installed");
    let latest = fresh
        .latest_issued_cert(&cert("web"))
        .await
        .expect("latest")
        .expect("an issued cert");
    assert_eq!(latest.cert_pem, row.cert_pem);
    assert_eq!(latest.serial, row.serial);
    assert_eq!(latest.not_after, row.not_after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_share_renewals_but_each_interrupts_and_cleans_only_its_own() {
    let server = SurrealServer::start();
    let a = server.store("shared", "node-a").await.expect("node-a");
    let b = server.store("shared", "node-b").await.expect("node-b");
    let at = now();
    let on_a = a
        .open_renewal(&cert("web"), Reason::RenewalDue, at)
        .await
        .expect("a opens");
    let on_b = b
        .open_renewal(&cert("api"), Reason::RenewalDue, at)
        .await
        .expect("b opens");
    let (a_dcv, a_challenge) = webroot_challenge("from-a");
    let (b_dcv, b_challenge) = webroot_challenge("from-b");
    let a_journal = a
        .journal_dcv(on_a.id, &cert("web"), &a_dcv, &a_challenge, at)
        .await
        .expect("a journals");
    let b_journal = b
        .journal_dcv(on_b.id, &cert("api"), &b_dcv, &b_challenge, at)
        .await
        .expect("b journals");

    // Each node sees the other's renewal: the audit trail is one.
    assert_eq!(
        b.renewal(on_a.id).await.expect("read").map(|r| r.cert_id),
        Some(cert("web"))
    );
    assert_eq!(
        a.renewal(on_b.id).await.expect("read").map(|r| r.cert_id),
        Some(cert("api"))
    );

    // node-b restarting after a crash closes its own running renewal, not node-a's.
    let interrupted = b.interrupt_open_renewals(now()).await.expect("interrupt");
    let ids: Vec<i64> = interrupted.iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![on_b.id], "only node-b's renewal: {interrupted:?}");
    let a_row = b.renewal(on_a.id).await.expect("read").expect("a's row");
    assert_eq!(
        a_row.status,
        RenewalStatus::Running,
        "node-a's renewal runs on"
    );
    assert_eq!(a_row.finished_at, None);
    let b_row = a.renewal(on_b.id).await.expect("read").expect("b's row");
    assert_eq!(b_row.status, RenewalStatus::Interrupted);

    let a_pending: Vec<i64> = a
        .pending_dcv()
        .await
        .expect("a pending")
        .iter()
        .map(|e| e.id)
        .collect();
    let b_pending: Vec<i64> = b
        .pending_dcv()
        .await
        .expect("b pending")
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        a_pending,
        vec![a_journal],
        "node-a cleans up only what it published"
    );
    assert_eq!(
        b_pending,
        vec![b_journal],
        "node-b cleans up only what it published"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_connecting_at_the_same_moment_define_the_schema_once() {
    let server = SurrealServer::start();
    let (a, b, c) = tokio::join!(
        server.store("together", "node-a"),
        server.store("together", "node-b"),
        server.store("together", "node-c"),
    );
    let (a, b, c) = (a.expect("node-a"), b.expect("node-b"), c.expect("node-c"));
    let tables = dump_tables(&a).await;
    let meta = &tables
        .iter()
        .find(|(name, _)| name == "rota_meta")
        .unwrap_or_else(|| panic!("no rota_meta table: {tables:?}"))
        .1;
    assert_eq!(meta.len(), 1, "one schema version record: {meta:?}");
    assert_eq!(meta[0]["version"], 1, "{meta:?}");
    // And the schema works for every node: sequences hand out distinct ids.
    let at = now();
    let mut ids = Vec::new();
    for store in [&a, &b, &c] {
        ids.push(
            store
                .open_renewal(&cert("web"), Reason::Forced, at)
                .await
                .expect("open")
                .id,
        );
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 3, "distinct renewal ids across nodes: {ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_clearly_without_echoing_it() {
    let server = SurrealServer::start();
    let wrong = "not-the-password-4711";
    let err = server
        .store_with_password("refused", "node-a", wrong)
        .await
        .expect_err("a wrong password must not connect");
    let StoreError::Surreal { context, detail } = &err else {
        panic!("expected StoreError::Surreal, got {err:?}");
    };
    assert_eq!(*context, "signing in", "{err}");
    let text = err.to_string();
    assert!(text.contains("signing in"), "{text}");
    assert!(
        detail.contains("root user"),
        "says which sign-ins failed: {text}"
    );
    assert!(
        !text.contains(wrong),
        "the password is never echoed: {text}"
    );
    assert!(
        !text.contains(PASSWORD),
        "the password is never echoed: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_endpoint_scheme_is_refused_with_the_choices() {
    let err = SurrealStore::connect(&SurrealOptions {
        endpoint: "ftp://127.0.0.1:8000".to_owned(),
        namespace: "rota".to_owned(),
        database: "x".to_owned(),
        credentials: None,
        node: "node-a".to_owned(),
    })
    .await
    .expect_err("ftp:// is no SurrealDB endpoint");
    let text = err.to_string();
    assert!(matches!(err, StoreError::Surreal { .. }), "{err:?}");
    assert!(
        text.contains("ftp://127.0.0.1:8000"),
        "names the endpoint: {text}"
    );
    assert!(text.contains("ws://"), "lists what works: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_table_holds_a_private_key_after_issued_certs_are_recorded() {
    let server = SurrealServer::start();
    let store = server.store("nokeys", "node-a").await.expect("connect");
    let at = now();
    for id in ["web", "api", "mail"] {
        let renewal = store
            .open_renewal(&cert(id), Reason::NotInstalled, at)
            .await
            .expect("open");
        store
            .record_step(
                renewal.id,
                Step::PersistCert,
                StepStatus::Succeeded,
                "stored",
                at,
            )
            .await
            .expect("step");
        store
            .record_issued_cert(&issued(id, renewal.id))
            .await
            .expect("issued");
        store
            .close_renewal(renewal.id, RenewalStatus::Succeeded, None, at)
            .await
            .expect("close");
    }
    // The scan does read every value: the certificates themselves are found.
    let certs = rows_containing(&store, "BEGIN CERTIFICATE").await;
    assert_eq!(certs.len(), 3, "the three issued certs: {certs:?}");
    let keys = rows_containing(&store, "PRIVATE KEY").await;
    assert!(
        keys.is_empty(),
        "private key material in the store: {keys:?}"
    );
}
