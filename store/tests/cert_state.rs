//! The DCV journal and per-cert state, read back through a reopened store or a raw connection.

mod support;

use rota_api::DcvChallenge;
use rota_api::RevocationReason;
use rota_api::config::{CloudflareDcv, DcvSpec, WebrootDcv};
use rota_api::status::{BackoffState, Condition, ConditionStatus, ConditionType, Reason};
use rota_store::{IssuedCertRow, SpecGeneration, StoreError};
use support::{Backend, Scratch, at, both_stores, cert};

async fn the_dcv_journal_round_trips_both_challenge_kinds_and_clears(backend: Backend) {
    let scratch = Scratch::on(backend);
    let store = scratch.store().await;
    let renewal = store
        .open_renewal(&cert("web"), Reason::NotInstalled, at(0, 0))
        .await
        .unwrap();
    let dns = (
        DcvSpec::Cloudflare(CloudflareDcv {}),
        DcvChallenge::Dns01 {
            record_name: "_acme-challenge.web.test".into(),
            record_value: "dns-value".into(),
            ttl: 120,
        },
    );
    let http = (
        DcvSpec::Webroot(WebrootDcv {
            directory: "/srv/www".into(),
        }),
        DcvChallenge::Http01 {
            domain: "web.test".into(),
            token: "tok".into(),
            key_authorization: "tok.thumb".into(),
        },
    );
    // Journalled later first: pending lists oldest first by time, not by id.
    let http_id = store
        .journal_dcv(renewal.id, &cert("web"), &http.0, &http.1, at(9, 0))
        .await
        .unwrap();
    let dns_id = store
        .journal_dcv(renewal.id, &cert("web"), &dns.0, &dns.1, at(5, 1))
        .await
        .unwrap();

    let pending = scratch.store().await.pending_dcv().await.unwrap();
    let read: Vec<_> = pending
        .iter()
        .map(|e| {
            (
                e.id,
                e.renewal_id,
                e.cert_id.as_str(),
                &e.dcv,
                &e.challenge,
                e.journalled_at,
            )
        })
        .collect();
    assert_eq!(
        read,
        [
            (dns_id, renewal.id, "web", &dns.0, &dns.1, at(5, 1)),
            (http_id, renewal.id, "web", &http.0, &http.1, at(9, 0)),
        ]
    );

    store.clear_dcv(dns_id).await.unwrap();
    store.clear_dcv(dns_id).await.unwrap();
    let left = scratch.store().await.pending_dcv().await.unwrap();
    assert_eq!(
        left.iter().map(|e| e.id).collect::<Vec<_>>(),
        [http_id],
        "clearing twice is fine"
    );
    store.clear_dcv(http_id).await.unwrap();
    assert!(
        scratch
            .store()
            .await
            .pending_dcv()
            .await
            .unwrap()
            .is_empty()
    );
    let next = store
        .journal_dcv(renewal.id, &cert("web"), &dns.0, &dns.1, at(10, 0))
        .await
        .unwrap();
    assert!(next > http_id, "a cleared id is never handed out again");
}

fn issued(serial: &str, issued_secs: i64) -> IssuedCertRow {
    IssuedCertRow {
        cert_id: cert("web"),
        renewal_id: 1,
        cert_pem: format!("-----BEGIN CERTIFICATE-----\n{serial}\n-----END CERTIFICATE-----\n"),
        chain_pem: "-----BEGIN CERTIFICATE-----\nchain\n-----END CERTIFICATE-----\n".into(),
        serial: serial.into(),
        not_after: at(90 * 86_400, 999),
        issued_at: at(issued_secs, 0),
    }
}

async fn the_latest_issued_cert_is_the_one_issued_last(backend: Backend) {
    let scratch = Scratch::on(backend);
    let store = scratch.store().await;
    assert_eq!(store.latest_issued_cert(&cert("web")).await.unwrap(), None);
    for row in [issued("02", 200), issued("03", 100), issued("01", 50)] {
        store.record_issued_cert(&row).await.unwrap();
    }
    let latest = scratch
        .store()
        .await
        .latest_issued_cert(&cert("web"))
        .await
        .unwrap();
    assert_eq!(latest, Some(issued("02", 200)));
    assert_eq!(
        scratch
            .store()
            .await
            .latest_issued_cert(&cert("api"))
            .await
            .unwrap(),
        None
    );
}

fn condition(type_: ConditionType, status: ConditionStatus, reason: Reason) -> Condition {
    Condition {
        type_,
        status,
        reason,
        message: format!("{reason}"),
        last_transition_time: at(7, 123),
        observed_generation: u64::MAX,
    }
}

async fn put_conditions_replaces_the_whole_set(backend: Backend) {
    let scratch = Scratch::on(backend);
    let store = scratch.store().await;
    let first = [
        condition(
            ConditionType::Ready,
            ConditionStatus::False,
            Reason::NotInstalled,
        ),
        condition(
            ConditionType::Issuing,
            ConditionStatus::True,
            Reason::Renewing,
        ),
    ];
    store.put_conditions(&cert("web"), &first).await.unwrap();
    store.put_conditions(&cert("api"), &first).await.unwrap();
    let second = [condition(
        ConditionType::Ready,
        ConditionStatus::True,
        Reason::UpToDate,
    )];
    store.put_conditions(&cert("web"), &second).await.unwrap();

    let all = scratch.store().await.all_conditions().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[&cert("web")], second, "the Issuing condition is gone");
    assert_eq!(all[&cert("api")], first);

    store.put_conditions(&cert("api"), &[]).await.unwrap();
    let all = scratch.store().await.all_conditions().await.unwrap();
    assert_eq!(
        all.keys().collect::<Vec<_>>(),
        [&cert("web")],
        "an empty set removes the cert"
    );
}

async fn backoff_is_set_replaced_and_cleared(backend: Backend) {
    let scratch = Scratch::on(backend);
    let store = scratch.store().await;
    let backoff = |failures| BackoffState {
        failures,
        next_attempt_at: at(i64::from(failures) * 3600, 17),
        generation: (1 << 63) - 1,
    };
    store
        .put_backoff(&cert("web"), Some(&backoff(1)))
        .await
        .unwrap();
    store
        .put_backoff(&cert("web"), Some(&backoff(2)))
        .await
        .unwrap();
    store
        .put_backoff(&cert("api"), Some(&backoff(1)))
        .await
        .unwrap();
    let all = scratch.store().await.backoffs().await.unwrap();
    assert_eq!((all.len(), &all[&cert("web")]), (2, &backoff(2)));

    store.put_backoff(&cert("web"), None).await.unwrap();
    store.put_backoff(&cert("web"), None).await.unwrap();
    let all = scratch.store().await.backoffs().await.unwrap();
    assert_eq!(all.keys().collect::<Vec<_>>(), [&cert("api")]);
}

async fn spec_generations_are_kept_per_cert(backend: Backend) {
    let scratch = Scratch::on(backend);
    let store = scratch.store().await;
    let generation = |spec_hash, generation| SpecGeneration {
        spec_hash,
        generation,
    };
    store
        .put_spec_generation(&cert("web"), generation(7, 1))
        .await
        .unwrap();
    store
        .put_spec_generation(&cert("web"), generation((1 << 63) - 1, 2))
        .await
        .unwrap();
    store
        .put_spec_generation(&cert("api"), generation(0, 1))
        .await
        .unwrap();
    let all = scratch.store().await.spec_generations().await.unwrap();
    assert_eq!(
        (all.len(), all[&cert("web")], all[&cert("api")]),
        (2, generation((1 << 63) - 1, 2), generation(0, 1))
    );

    let too_big = store
        .put_spec_generation(&cert("web"), generation(1 << 63, 3))
        .await;
    assert!(
        matches!(
            too_big,
            Err(StoreError::Sqlite { .. } | StoreError::Surreal { .. })
        ),
        "refused, not wrapped: {too_big:?}"
    );
}

async fn revoked_serials_survive_a_reopen_and_repeat_harmlessly(backend: Backend) {
    let scratch = Scratch::on(backend);
    let store = scratch.store().await;
    for (cert_id, serial, reason) in [
        ("web", "0a1b", RevocationReason::Superseded),
        ("web", "0c2d", RevocationReason::KeyCompromise),
        ("web", "0a1b", RevocationReason::Unspecified),
        ("api", "ff", RevocationReason::CessationOfOperation),
    ] {
        store
            .record_revocation(&cert(cert_id), serial, reason, at(1, 0))
            .await
            .unwrap();
    }
    let all = scratch.store().await.revoked_serials().await.unwrap();
    let serials = |c: &str| all[&cert(c)].iter().map(String::as_str).collect::<Vec<_>>();
    assert_eq!(
        (all.len(), serials("web"), serials("api")),
        (2, vec!["0a1b", "0c2d"], vec!["ff"])
    );
}

both_stores!(
    the_dcv_journal_round_trips_both_challenge_kinds_and_clears,
    the_latest_issued_cert_is_the_one_issued_last,
    put_conditions_replaces_the_whole_set,
    backoff_is_set_replaced_and_cleared,
    spec_generations_are_kept_per_cert,
    revoked_serials_survive_a_reopen_and_repeat_harmlessly
);
