//! Renewal rows and their steps, read back through a reopened store or a raw connection.

mod support;

use rota_api::status::{Reason, RenewalStatus, Step, StepStatus};
use std::sync::Arc;

use rota_store::{AuditStore, StoreError};
use support::{Backend, Scratch, at, both_stores, cert};

async fn a_renewal_opens_numbers_its_steps_and_closes(backend: Backend) {
    let scratch = Scratch::on(backend);
    let store = scratch.store().await;
    let web = store
        .open_renewal(&cert("web"), Reason::Forced, at(0, 0))
        .await
        .unwrap();
    let api = store
        .open_renewal(&cert("api"), Reason::Expired, at(0, 0))
        .await
        .unwrap();
    assert_eq!(
        (web.status, web.finished_at, web.error.clone()),
        (RenewalStatus::Running, None, None)
    );

    // Interleaved, as two concurrent renewals write them: each renewal counts from 1.
    let mut seqs = Vec::new();
    for (id, step, status) in [
        (web.id, Step::LoadKey, StepStatus::Started),
        (api.id, Step::LoadKey, StepStatus::Started),
        (web.id, Step::LoadKey, StepStatus::Succeeded),
        (web.id, Step::SubmitOrder, StepStatus::Failed),
        (api.id, Step::LoadKey, StepStatus::Succeeded),
    ] {
        let event = store
            .record_step(id, step, status, "detail", at(1, 0))
            .await
            .unwrap();
        seqs.push((event.renewal_id, event.seq));
    }
    assert_eq!(
        seqs,
        [
            (web.id, 1),
            (api.id, 1),
            (web.id, 2),
            (web.id, 3),
            (api.id, 2)
        ]
    );
    store
        .close_renewal(
            web.id,
            RenewalStatus::Failed,
            Some("CA said no"),
            at(2, 500),
        )
        .await
        .unwrap();

    let reopened = scratch.store().await;
    let steps = reopened.steps(web.id).await.unwrap();
    let read: Vec<_> = steps.iter().map(|s| (s.seq, s.step, s.status)).collect();
    assert_eq!(
        read,
        [
            (1, Step::LoadKey, StepStatus::Started),
            (2, Step::LoadKey, StepStatus::Succeeded),
            (3, Step::SubmitOrder, StepStatus::Failed),
        ]
    );
    let closed = reopened.renewal(web.id).await.unwrap().unwrap();
    assert_eq!(closed.status, RenewalStatus::Failed);
    assert_eq!(closed.error.as_deref(), Some("CA said no"));
    assert_eq!(closed.finished_at, Some(at(2, 500)));
    assert_eq!(closed.trigger, Reason::Forced);
    assert_eq!(
        reopened.renewal(api.id).await.unwrap().unwrap().status,
        RenewalStatus::Running
    );
    assert_eq!(reopened.renewal(999).await.unwrap(), None);
}

async fn concurrent_steps_of_one_renewal_get_distinct_seqs(backend: Backend) {
    let scratch = Scratch::on(backend);
    let store = scratch.store().await;
    let renewal = store
        .open_renewal(&cert("web"), Reason::Forced, at(0, 0))
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..32 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let message = format!("event {i}");
            let event = store
                .record_step(
                    renewal.id,
                    Step::AwaitIssuance,
                    StepStatus::Started,
                    &message,
                    at(i, 0),
                )
                .await
                .unwrap();
            event.seq
        });
    }
    let mut seqs = tasks.join_all().await;
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=32).collect::<Vec<u32>>());
    let stored = scratch.store().await.steps(renewal.id).await.unwrap();
    assert_eq!(stored.iter().map(|s| s.seq).collect::<Vec<_>>(), seqs);
}

async fn steps_and_closes_of_unknown_renewals_fail(backend: Backend) {
    let store = Scratch::on(backend).store().await;
    let step = store
        .record_step(7, Step::LoadKey, StepStatus::Started, "", at(0, 0))
        .await;
    assert!(
        matches!(
            step,
            Err(StoreError::Sqlite { .. } | StoreError::Surreal { .. })
        ),
        "foreign key: {step:?}"
    );
    let close = store
        .close_renewal(7, RenewalStatus::Succeeded, None, at(0, 0))
        .await;
    assert!(
        matches!(
            close,
            Err(StoreError::Sqlite { .. } | StoreError::Surreal { .. })
        ),
        "{close:?}"
    );
}

async fn renewals_are_listed_newest_first_up_to_the_limit(backend: Backend) {
    let scratch = Scratch::on(backend);
    let store = scratch.store().await;
    let web = cert("web");
    // Opened out of time order, with a tie at t=20 that the later id wins.
    let mut ids = Vec::new();
    for t in [20, 10, 30, 20] {
        ids.push(
            store
                .open_renewal(&web, Reason::RenewalDue, at(t, 0))
                .await
                .unwrap()
                .id,
        );
    }
    store
        .open_renewal(&cert("other"), Reason::RenewalDue, at(99, 0))
        .await
        .unwrap();

    let reopened = scratch.store().await;
    let listed = |limit| {
        let reopened = &reopened;
        let web = web.clone();
        async move {
            let rows = reopened.renewals(&web, limit).await.unwrap();
            rows.iter().map(|r| r.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(10).await, [ids[2], ids[3], ids[0], ids[1]]);
    assert_eq!(listed(2).await, [ids[2], ids[3]]);
    assert_eq!(listed(0).await, Vec::<i64>::new());
    assert!(
        reopened
            .renewals(&cert("none"), 5)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn interrupting_closes_only_running_rows(backend: Backend) {
    let scratch = Scratch::on(backend);
    let store = scratch.store().await;
    let done = store
        .open_renewal(&cert("a"), Reason::Forced, at(0, 0))
        .await
        .unwrap();
    store
        .close_renewal(done.id, RenewalStatus::Succeeded, None, at(1, 0))
        .await
        .unwrap();
    let failed = store
        .open_renewal(&cert("b"), Reason::Forced, at(0, 0))
        .await
        .unwrap();
    store
        .close_renewal(failed.id, RenewalStatus::Failed, Some("boom"), at(1, 0))
        .await
        .unwrap();
    let open_a = store
        .open_renewal(&cert("c"), Reason::Forced, at(2, 0))
        .await
        .unwrap();
    let open_b = store
        .open_renewal(&cert("d"), Reason::Forced, at(3, 0))
        .await
        .unwrap();

    let interrupted = store.interrupt_open_renewals(at(50, 7)).await.unwrap();
    assert_eq!(
        interrupted.iter().map(|r| r.id).collect::<Vec<_>>(),
        [open_a.id, open_b.id]
    );
    for row in &interrupted {
        assert_eq!(row.status, RenewalStatus::Interrupted);
        assert_eq!(row.finished_at, Some(at(50, 7)));
        assert_eq!(
            row.error.as_deref(),
            Some("rotad stopped before this renewal finished")
        );
    }

    let reopened = scratch.store().await;
    assert_eq!(
        reopened.renewal(open_a.id).await.unwrap().as_ref(),
        interrupted.first()
    );
    let untouched = reopened.renewal(failed.id).await.unwrap().unwrap();
    assert_eq!(
        (untouched.status, untouched.error.as_deref()),
        (RenewalStatus::Failed, Some("boom"))
    );
    assert_eq!(
        reopened
            .renewal(done.id)
            .await
            .unwrap()
            .unwrap()
            .finished_at,
        Some(at(1, 0))
    );
    for cert_id in ["a", "b", "c", "d"] {
        let listed = reopened.renewals(&cert(cert_id), 10).await.unwrap();
        assert!(listed.iter().all(|r| r.status != RenewalStatus::Running));
    }
    assert!(
        reopened
            .interrupt_open_renewals(at(60, 0))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn last_statuses_come_from_each_certs_newest_renewal(backend: Backend) {
    let scratch = Scratch::on(backend);
    let store = scratch.store().await;
    // `web`: the failed renewal started later than the succeeded one, though opened first.
    let late = store
        .open_renewal(&cert("web"), Reason::Forced, at(100, 0))
        .await
        .unwrap();
    store
        .close_renewal(late.id, RenewalStatus::Failed, Some("x"), at(101, 0))
        .await
        .unwrap();
    let early = store
        .open_renewal(&cert("web"), Reason::Forced, at(50, 0))
        .await
        .unwrap();
    store
        .close_renewal(early.id, RenewalStatus::Succeeded, None, at(51, 0))
        .await
        .unwrap();
    let api = store
        .open_renewal(&cert("api"), Reason::Forced, at(0, 0))
        .await
        .unwrap();
    store
        .close_renewal(api.id, RenewalStatus::Succeeded, None, at(1, 0))
        .await
        .unwrap();
    store
        .open_renewal(&cert("api"), Reason::Forced, at(2, 0))
        .await
        .unwrap();

    let statuses = scratch.store().await.last_renewal_statuses().await.unwrap();
    assert_eq!(statuses.len(), 2);
    assert_eq!(statuses[&cert("web")], RenewalStatus::Failed);
    assert_eq!(statuses[&cert("api")], RenewalStatus::Running);

    let last = scratch.store().await.last_renewals().await.unwrap();
    assert_eq!(last.len(), 2);
    assert_eq!(
        last[&cert("web")].id,
        late.id,
        "the newest by start, as above"
    );
    assert_eq!(last[&cert("api")].status, RenewalStatus::Running);

    // The metrics see each finished renewal with its running time, never a running one.
    let mut outcomes: Vec<_> = scratch
        .store()
        .await
        .renewal_outcomes()
        .await
        .unwrap()
        .into_iter()
        .map(|o| (o.cert_id.to_string(), o.status, o.seconds))
        .collect();
    outcomes.sort_by(|a, b| a.0.cmp(&b.0).then(a.2.total_cmp(&b.2)));
    assert_eq!(
        outcomes,
        [
            ("api".to_owned(), RenewalStatus::Succeeded, 1.0),
            ("web".to_owned(), RenewalStatus::Failed, 1.0),
            ("web".to_owned(), RenewalStatus::Succeeded, 1.0),
        ]
    );
}

async fn a_dry_run_is_marked_listed_and_never_the_last_live_status(backend: Backend) {
    let scratch = Scratch::on(backend);
    let store = scratch.store().await;
    let live = store
        .open_renewal(&cert("web"), Reason::Forced, at(0, 0))
        .await
        .unwrap();
    store
        .close_renewal(live.id, RenewalStatus::Succeeded, None, at(1, 0))
        .await
        .unwrap();
    let dry = store
        .open_dry_run(&cert("web"), Reason::Forced, at(5, 0))
        .await
        .unwrap();
    assert!(dry.dry_run && !live.dry_run);
    store
        .close_renewal(
            dry.id,
            RenewalStatus::Failed,
            Some("staging said no"),
            at(6, 0),
        )
        .await
        .unwrap();
    // A cert with dry runs only has no last live status at all.
    store
        .open_dry_run(&cert("api"), Reason::Forced, at(7, 0))
        .await
        .unwrap();

    let reopened = scratch.store().await;
    let statuses = reopened.last_renewal_statuses().await.unwrap();
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert_eq!(statuses[&cert("web")], RenewalStatus::Succeeded);
    let listed = reopened.renewals(&cert("web"), 10).await.unwrap();
    let marks: Vec<(i64, bool)> = listed.iter().map(|r| (r.id, r.dry_run)).collect();
    assert_eq!(marks, [(dry.id, true), (live.id, false)]);
}

#[tokio::test]
async fn a_hand_edited_value_reads_as_corrupt() {
    let scratch = Scratch::new();
    let store = scratch.sqlite();
    let renewal = store
        .open_renewal(&cert("web"), Reason::Forced, at(0, 0))
        .await
        .unwrap();
    scratch
        .raw()
        .execute(
            "UPDATE renewals SET status = 'paused' WHERE id = ?1",
            [renewal.id],
        )
        .unwrap();
    let read = store.renewal(renewal.id).await;
    assert!(
        matches!(
            read,
            Err(StoreError::Corrupt {
                what: "renewals.status",
                ..
            })
        ),
        "{read:?}"
    );
}

both_stores!(
    a_renewal_opens_numbers_its_steps_and_closes,
    concurrent_steps_of_one_renewal_get_distinct_seqs,
    steps_and_closes_of_unknown_renewals_fail,
    renewals_are_listed_newest_first_up_to_the_limit,
    interrupting_closes_only_running_rows,
    last_statuses_come_from_each_certs_newest_renewal,
    a_dry_run_is_marked_listed_and_never_the_last_live_status
);
