//! Alert episodes and deliveries survive a reopen; `describe` reads the newest delivery per
//! sink, of one cert only.

mod support;

use std::collections::HashMap;

use rota_api::AlertKind;
use rota_api::wire::AlertDelivery;
use rota_store::AlertEpisode;
use support::{Backend, Scratch, at, both_stores, cert};

fn delivery(sink: usize, kind: AlertKind, secs: i64, error: Option<&str>) -> AlertDelivery {
    AlertDelivery {
        sink,
        sink_label: format!("webhook to https://hooks{sink}.test"),
        kind,
        at: at(secs, 0),
        error: error.map(str::to_owned),
    }
}

async fn episodes_open_update_and_close_across_a_reopen(backend: Backend) {
    let scratch = Scratch::on(backend);
    let store = scratch.store().await;
    let failing = AlertEpisode {
        since: at(0, 5),
        last_sent_at: at(0, 5),
    };
    let warning = AlertEpisode {
        since: at(10, 0),
        last_sent_at: at(86_410, 0),
    };
    let web = cert("web");
    store
        .put_alert_episode(&web, AlertKind::RenewalFailed, Some(&failing))
        .await
        .unwrap();
    store
        .put_alert_episode(&web, AlertKind::ExpiryWarning, Some(&failing))
        .await
        .unwrap();
    store
        .put_alert_episode(&web, AlertKind::ExpiryWarning, Some(&warning))
        .await
        .unwrap();
    drop(store);

    let store = scratch.store().await;
    let want = HashMap::from([(
        web.clone(),
        HashMap::from([
            (AlertKind::RenewalFailed, failing),
            (AlertKind::ExpiryWarning, warning),
        ]),
    )]);
    assert_eq!(store.alert_episodes().await.unwrap(), want);
    store
        .put_alert_episode(&web, AlertKind::RenewalFailed, None)
        .await
        .unwrap();
    store
        .put_alert_episode(&web, AlertKind::RenewalFailed, None)
        .await
        .expect("closing a closed episode is no error");
    let left = store.alert_episodes().await.unwrap();
    assert_eq!(
        left[&web].keys().collect::<Vec<_>>(),
        [&AlertKind::ExpiryWarning]
    );
}

async fn the_newest_delivery_per_sink_of_one_cert(backend: Backend) {
    let scratch = Scratch::on(backend);
    let store = scratch.store().await;
    let (web, api) = (cert("web"), cert("api"));
    let rows = [
        (&web, delivery(0, AlertKind::RenewalFailed, 1, None)),
        (
            &web,
            delivery(1, AlertKind::RenewalFailed, 1, Some("webhook: 503")),
        ),
        (&web, delivery(1, AlertKind::RenewalRecovered, 9, None)),
        (
            &api,
            delivery(0, AlertKind::ExpiryWarning, 20, Some("email: refused")),
        ),
        (
            &web,
            delivery(0, AlertKind::ExpiryWarning, 5, Some("email: 535")),
        ),
    ];
    for (id, row) in &rows {
        store.record_alert_delivery(id, row).await.unwrap();
    }
    assert_eq!(
        store.last_alert_deliveries(&web).await.unwrap(),
        [rows[4].1.clone(), rows[2].1.clone()],
        "by sink; the newest of each, whatever the other cert did"
    );
    let mut counts = store.alert_delivery_counts().await.unwrap();
    assert_eq!(
        counts.iter().map(|c| c.count).sum::<u64>(),
        5,
        "every delivery stays in the audit trail"
    );
    counts.sort_by(|a, b| (&a.sink_label, a.delivered).cmp(&(&b.sink_label, b.delivered)));
    let counts: Vec<_> = counts
        .iter()
        .map(|c| (c.sink_label.as_str(), c.delivered, c.count))
        .collect();
    assert_eq!(
        counts,
        [
            ("webhook to https://hooks0.test", false, 2),
            ("webhook to https://hooks0.test", true, 1),
            ("webhook to https://hooks1.test", false, 1),
            ("webhook to https://hooks1.test", true, 1),
        ],
        "counted by sink and result, across certs"
    );
    assert!(
        store
            .last_alert_deliveries(&cert("none"))
            .await
            .unwrap()
            .is_empty()
    );
}

both_stores!(
    episodes_open_update_and_close_across_a_reopen,
    the_newest_delivery_per_sink_of_one_cert
);
