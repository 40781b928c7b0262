//! `dcv: { kind: webroot }` on disk: the token file, its mode and directories, removal,
//! idempotence, and the refusal of tokens that could leave the challenge directory.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rota_api::config::{Config, DcvSpec, WebrootDcv};
use rota_api::{BackendError, BackendFactory, ChallengeKind, DcvBackend, DcvChallenge};
use rota_providers::Providers;

const TOKEN: &str = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";
const KEY_AUTHORIZATION: &str =
    "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.nP1qzpXGymHBrUEepNY9HCsQk7K8KhOypzEt62jcerQ";

/// The webroot solver for `webroot`, built the way rotad builds it.
fn solver(webroot: &Path) -> Arc<dyn DcvBackend> {
    let dir = webroot.parent().unwrap();
    let text = format!(
        "certs:\n  - id: web\n    domains: [a.test]\n    key_path: {d}/web.key\n    \
         ca: {{ kind: local }}\n    dcv: {{ kind: webroot, directory: {w} }}\n    \
         install: {{ kind: filesystem, directory: {d}/out }}\n",
        d = dir.display(),
        w = webroot.display()
    );
    let config: Config = rota_api::config::load_str(&dir.join("rota.yaml"), text)
        .unwrap()
        .config;
    let spec = config.certs[0]
        .dcv
        .clone()
        .expect("the cert names a dcv solver");
    assert_eq!(
        spec,
        DcvSpec::Webroot(WebrootDcv {
            directory: webroot.to_owned()
        })
    );
    Providers::new().dcv(&config, &spec).unwrap()
}

fn http01(token: &str) -> DcvChallenge {
    DcvChallenge::Http01 {
        domain: "a.test".into(),
        token: token.into(),
        key_authorization: KEY_AUTHORIZATION.into(),
    }
}

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every path under `dir`, relative to it, sorted.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(next) = pending.pop() {
        for entry in fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path.clone());
            }
            found.push(path.strip_prefix(dir).unwrap().to_owned());
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn publish_writes_the_key_authorization_and_remove_deletes_it() {
    let dir = tempfile::tempdir().unwrap();
    let webroot = dir.path().join("www");
    let dcv = solver(&webroot);
    assert_eq!(dcv.kind(), "webroot");
    assert_eq!(dcv.supported_kinds(), [ChallengeKind::Http01]);
    assert!(dcv.supports(&http01(TOKEN)));

    dcv.publish(&http01(TOKEN)).await.unwrap();
    let challenge_dir = webroot.join(".well-known/acme-challenge");
    let file = challenge_dir.join(TOKEN);
    assert_eq!(fs::read_to_string(&file).unwrap(), KEY_AUTHORIZATION);
    assert_eq!(mode_of(&file), 0o644);
    // The missing document root and both directories under it were created 0755.
    for created in [&webroot, &webroot.join(".well-known"), &challenge_dir] {
        assert_eq!(mode_of(created), 0o755, "{}", created.display());
    }

    dcv.remove(&http01(TOKEN)).await.unwrap();
    assert!(!file.exists());
    assert!(
        challenge_dir.is_dir(),
        "the directories stay for the next renewal"
    );
}

#[tokio::test]
async fn publish_and_remove_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let webroot = dir.path().join("www");
    let dcv = solver(&webroot);
    dcv.publish(&http01(TOKEN)).await.unwrap();
    dcv.publish(&http01(TOKEN)).await.unwrap();
    let file = webroot.join(".well-known/acme-challenge").join(TOKEN);
    assert_eq!(fs::read_to_string(&file).unwrap(), KEY_AUTHORIZATION);
    assert_eq!(
        tree(&webroot.join(".well-known/acme-challenge")),
        [PathBuf::from(TOKEN)],
        "no temp file left behind"
    );

    dcv.remove(&http01(TOKEN)).await.unwrap();
    dcv.remove(&http01(TOKEN)).await.unwrap();
    assert!(
        tree(&webroot.join(".well-known/acme-challenge")).is_empty(),
        "the token is gone"
    );
    // Removing from a document root that never had a challenge is success too, and
    // creates nothing.
    let never = dir.path().join("never");
    solver(&never).remove(&http01(TOKEN)).await.unwrap();
    assert!(!never.exists(), "remove created {}", never.display());
}

#[tokio::test]
async fn an_existing_document_root_keeps_its_mode() {
    let dir = tempfile::tempdir().unwrap();
    let webroot = dir.path().join("www");
    fs::create_dir(&webroot).unwrap();
    fs::set_permissions(&webroot, fs::Permissions::from_mode(0o750)).unwrap();
    solver(&webroot).publish(&http01(TOKEN)).await.unwrap();
    assert_eq!(mode_of(&webroot), 0o750);
}

#[tokio::test]
async fn path_shaped_tokens_are_refused_before_touching_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let webroot = dir.path().join("www");
    fs::create_dir(&webroot).unwrap();
    let dcv = solver(&webroot);
    // A victim file the traversal tokens aim at: it must survive `remove` too.
    let victim = webroot.join("index.html");
    fs::write(&victim, "home").unwrap();
    for token in [
        "",
        "..",
        "../../index.html",
        "../index",
        "a/b",
        "/etc/passwd",
        "a\\b",
        "..\\index",
        "tok.en",
        "tok en",
        "tok\nen",
        "tøken",
    ] {
        for (action, result) in [
            ("publish", dcv.publish(&http01(token)).await),
            ("remove", dcv.remove(&http01(token)).await),
        ] {
            match result {
                Err(BackendError::Invalid { backend, detail }) => {
                    assert_eq!(backend, "webroot");
                    assert!(
                        detail.contains("could escape the challenge directory"),
                        "{action} {token:?}: {detail}"
                    );
                }
                other => panic!("{action} {token:?}: expected Invalid, got {other:?}"),
            }
        }
    }
    assert_eq!(
        tree(&webroot),
        [PathBuf::from("index.html")],
        "nothing written"
    );
    assert_eq!(fs::read_to_string(&victim).unwrap(), "home");
}

#[tokio::test]
async fn dns01_challenges_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let webroot = dir.path().join("www");
    let dcv = solver(&webroot);
    let dns = DcvChallenge::Dns01 {
        record_name: "_acme-challenge.a.test".into(),
        record_value: "v".into(),
        ttl: 60,
    };
    assert!(!dcv.supports(&dns));
    let err = dcv.publish(&dns).await.unwrap_err();
    assert!(matches!(err, BackendError::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("HTTP-01 only"), "{err}");
    assert!(dcv.remove(&dns).await.is_err());
    assert!(!webroot.exists(), "nothing created");
}
