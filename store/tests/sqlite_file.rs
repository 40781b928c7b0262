//! The database file itself: permissions, journal mode, schema versioning, durability.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use rota_api::DcvChallenge;
use rota_api::config::{CloudflareDcv, DcvSpec};
use rota_api::status::{BackoffState, Reason, RenewalStatus, Step, StepStatus};
use rota_store::{AuditStore, SpecGeneration, SqliteStore, StoreError};
use support::{Scratch, at, cert};

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn creates_the_file_owner_only_in_new_owner_only_directories() {
    let scratch = Scratch::new();
    let nested = scratch.dir.path().join("var/lib/rota/rota.db");
    let store = SqliteStore::open(&nested).unwrap();
    store
        .open_renewal(&cert("web"), Reason::NotInstalled, at(0, 0))
        .await
        .unwrap();

    assert_eq!(mode(&nested), 0o600, "database file");
    for dir in ["var", "var/lib", "var/lib/rota"] {
        assert_eq!(
            mode(&scratch.dir.path().join(dir)),
            0o700,
            "created directory {dir}"
        );
    }
    let wal = scratch.dir.path().join("var/lib/rota/rota.db-wal");
    assert_eq!(
        mode(&wal),
        0o600,
        "SQLite gives the WAL the database's mode"
    );
}

#[test]
fn tightens_an_existing_file_readable_by_others() {
    let scratch = Scratch::new();
    let path = scratch.db_path();
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, b"").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();

    scratch.sqlite();
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn a_file_that_is_not_a_database_is_refused_and_never_chmod_ed() {
    let scratch = Scratch::new();
    let path = scratch.db_path();
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, b"root:x:0:0:root:/root:/bin/bash\n").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();

    let Err(err) = SqliteStore::open(&path) else {
        panic!("a foreign file must be refused");
    };
    assert!(err.to_string().contains("not a SQLite database"), "{err}");
    assert_eq!(mode(&path), 0o644, "its mode is left as it was");
    assert_eq!(
        fs::read(&path).unwrap(),
        b"root:x:0:0:root:/root:/bin/bash\n",
        "and its content"
    );
}

#[test]
fn a_symlinked_database_path_is_refused_and_its_target_untouched() {
    let scratch = Scratch::new();
    let path = scratch.db_path();
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let target = scratch.dir.path().join("elsewhere");
    fs::write(&target, b"").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::symlink(&target, &path).unwrap();

    let Err(err) = SqliteStore::open(&path) else {
        panic!("a symlink must be refused");
    };
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert_eq!(mode(&target), 0o644);
}

#[test]
fn leaves_an_existing_parent_directory_alone() {
    let scratch = Scratch::new();
    let parent = scratch.db_path().parent().unwrap().to_owned();
    fs::create_dir(&parent).unwrap();
    fs::set_permissions(&parent, fs::Permissions::from_mode(0o755)).unwrap();

    scratch.sqlite();
    assert_eq!(
        mode(&parent),
        0o755,
        "only directories rota creates are made 0700"
    );
}

#[test]
fn the_file_is_in_wal_mode() {
    let scratch = Scratch::new();
    let _store = scratch.sqlite();
    let mode: String = scratch
        .raw()
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn migrations_run_once_and_record_the_version() {
    let scratch = Scratch::new();
    drop(scratch.sqlite());
    let version = scratch.count("PRAGMA user_version");
    assert!(version >= 1, "user_version is set: {version}");
    let tables = "SELECT count(*) FROM sqlite_schema WHERE type = 'table' \
                  AND name IN ('renewals', 'renewal_steps', 'issued_certs', 'conditions', \
                  'backoffs', 'spec_generations', 'dcv_journal')";
    assert_eq!(scratch.count(tables), 7);

    drop(scratch.sqlite());
    drop(scratch.sqlite());
    assert_eq!(
        scratch.count("PRAGMA user_version"),
        version,
        "reopening is a no-op"
    );
    assert_eq!(scratch.count(tables), 7);
}

#[test]
fn a_database_from_a_newer_rota_is_refused_untouched() {
    let scratch = Scratch::new();
    fs::create_dir_all(scratch.db_path().parent().unwrap()).unwrap();
    scratch
        .raw()
        .execute_batch("CREATE TABLE from_the_future (x); PRAGMA user_version = 1000;")
        .unwrap();

    let Err(err) = SqliteStore::open(&scratch.db_path()) else {
        panic!("a newer schema must be refused");
    };
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("1000") && message.contains("newer rota"),
        "{message}"
    );
    assert_eq!(scratch.count("PRAGMA user_version"), 1000);
    assert_eq!(
        scratch.count("SELECT count(*) FROM sqlite_schema WHERE name = 'renewals'"),
        0,
        "no migration was applied over it"
    );
}

#[tokio::test]
async fn everything_survives_close_and_reopen() {
    let scratch = Scratch::new();
    let web = cert("web");
    let store = scratch.sqlite();
    let renewal = store
        .open_renewal(&web, Reason::RenewalDue, at(10, 123_456_789))
        .await
        .unwrap();
    store
        .record_step(
            renewal.id,
            Step::LoadKey,
            StepStatus::Succeeded,
            "key loaded",
            at(11, 1),
        )
        .await
        .unwrap();
    let backoff = BackoffState {
        failures: 2,
        next_attempt_at: at(3600, 5),
        generation: 42,
    };
    store.put_backoff(&web, Some(&backoff)).await.unwrap();
    let generation = SpecGeneration {
        spec_hash: 42,
        generation: 3,
    };
    store.put_spec_generation(&web, generation).await.unwrap();
    drop(store);

    let reopened = scratch.sqlite();
    assert_eq!(
        reopened.renewal(renewal.id).await.unwrap(),
        Some(renewal.clone())
    );
    let steps = reopened.steps(renewal.id).await.unwrap();
    assert_eq!(
        (steps.len(), steps[0].at),
        (1, at(11, 1)),
        "exact to the nanosecond"
    );
    assert_eq!(reopened.backoffs().await.unwrap()[&web], backoff);
    assert_eq!(reopened.spec_generations().await.unwrap()[&web], generation);
    assert_eq!(
        reopened.last_renewal_statuses().await.unwrap()[&web],
        RenewalStatus::Running
    );
}

#[tokio::test]
async fn a_journal_entry_is_in_the_file_when_journal_dcv_returns() {
    let scratch = Scratch::new();
    let store = scratch.sqlite();
    let renewal = store
        .open_renewal(&cert("api"), Reason::NotInstalled, at(0, 0))
        .await
        .unwrap();
    let challenge = DcvChallenge::Dns01 {
        record_name: "_acme-challenge.api.test".into(),
        record_value: "token".into(),
        ttl: 60,
    };
    let id = store
        .journal_dcv(
            renewal.id,
            &cert("api"),
            &DcvSpec::Cloudflare(CloudflareDcv {}),
            &challenge,
            at(1, 0),
        )
        .await
        .unwrap();
    // Read by another connection while the store is still open: the entry is committed.
    let stored: String = scratch
        .raw()
        .query_row(
            "SELECT challenge FROM dcv_journal WHERE id = ?1",
            [id],
            |row| row.get(0),
        )
        .unwrap();
    assert!(stored.contains("_acme-challenge.api.test"), "{stored}");
}
