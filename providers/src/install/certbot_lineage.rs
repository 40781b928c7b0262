//! certbot's lineage layout, for `install: { kind: filesystem, certbot_archive }`: the files
//! in `live/NAME/` are symlinks to numbered versions in `archive/NAME/` (`cert3.pem`,
//! `privkey3.pem`, ...). certbot refuses a lineage whose live files are not such symlinks, so
//! rota renews an imported lineage the way `certbot renew` does: it writes the next version
//! into the archive (new names only, never replacing a file) and then swaps each live symlink
//! for one pointing at it, atomically (a new link renamed over the old one, never followed).
//! `cert.pem` is swapped last: it is what rota reads back, so an install cut short is seen as
//! the old cert and retried.

use std::io;
use std::path::{Component, Path, PathBuf};

use rota_api::{BackendError, IssuedCert, SecretString};

use super::pem_files::blocking;
use crate::atomic_write::{create_atomic, create_dir_all_with_mode};

/// certbot's four kinds, in the order rota swaps them (`cert` last).
const KINDS: [&str; 4] = ["privkey", "chain", "fullchain", "cert"];

/// Writes the next version of the lineage into `archive` and points `live`'s links at it.
pub(crate) async fn install(
    backend: &'static str,
    live: &Path,
    archive: &Path,
    cert: &IssuedCert,
    key: &SecretString,
) -> Result<(), BackendError> {
    let (live, archive) = (live.to_owned(), archive.to_owned());
    let contents = [
        (key.expose().as_bytes().to_vec(), 0o600),
        (cert.chain_pem.as_bytes().to_vec(), 0o644),
        (cert.fullchain_pem().into_bytes(), 0o644),
        (cert.cert_pem.as_bytes().to_vec(), 0o644),
    ];
    blocking(backend, "writing", move || {
        for dir in [&archive, &live] {
            create_dir_all_with_mode(dir, 0o755)
                .map_err(|e| BackendError::io(backend, "creating", dir, e))?;
        }
        let version = next_version(&archive)
            .map_err(|e| BackendError::io(backend, "reading", &archive, e))?;
        let mut targets = Vec::with_capacity(KINDS.len());
        for (kind, (bytes, mode)) in KINDS.iter().zip(&contents) {
            let target = archive.join(format!("{kind}{version}.pem"));
            create_atomic(&target, bytes, *mode)
                .map_err(|e| BackendError::io(backend, "writing", &target, e))?;
            targets.push(target);
        }
        for (kind, target) in KINDS.iter().zip(&targets) {
            let link = live.join(format!("{kind}.pem"));
            point_link(&link, &relative_to(&live, target))
                .map_err(|e| BackendError::io(backend, "linking", &link, e))?;
        }
        Ok(())
    })
    .await
}

/// One more than the highest version of any kind in `archive` (1 for an empty archive).
fn next_version(archive: &Path) -> io::Result<u32> {
    let mut highest = 0;
    for entry in std::fs::read_dir(archive)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        let version = KINDS.iter().find_map(|kind| {
            name.strip_prefix(kind)?
                .strip_suffix(".pem")?
                .parse::<u32>()
                .ok()
        });
        highest = highest.max(version.unwrap_or(0));
    }
    Ok(highest + 1)
}

/// Replaces whatever is at `link` by a symlink to `target`: a new link under a temporary name,
/// renamed over the old one, so a reader sees the old target or the new one.
fn point_link(link: &Path, target: &Path) -> io::Result<()> {
    let name = link
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the link has no file name"))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}.link", std::process::id()));
    let temp = link.with_file_name(temp_name);
    match std::fs::remove_file(&temp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::os::unix::fs::symlink(target, &temp)?;
    std::fs::rename(&temp, link).inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })
}

/// `target` as seen from directory `from` (`../../archive/NAME/cert2.pem`, as certbot writes
/// it), so the lineage can be moved or mounted elsewhere as a whole.
fn relative_to(from: &Path, target: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = target.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for part in &to[common..] {
        out.push(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::install::pem_files::issued;

    #[tokio::test]
    async fn each_install_is_a_new_version_and_the_live_links_follow() {
        let dir = tempfile::tempdir().unwrap();
        let (live, archive) = (dir.path().join("live/web"), dir.path().join("archive/web"));
        std::fs::create_dir_all(&archive).unwrap();
        // A lineage certbot made: version 1, live links relative.
        for kind in KINDS {
            std::fs::write(archive.join(format!("{kind}1.pem")), format!("{kind} 1\n")).unwrap();
        }
        std::fs::create_dir_all(&live).unwrap();
        for kind in KINDS {
            std::os::unix::fs::symlink(
                format!("../../archive/web/{kind}1.pem"),
                live.join(format!("{kind}.pem")),
            )
            .unwrap();
        }
        let key = SecretString::new("key\n".into());
        install("filesystem", &live, &archive, &issued("2"), &key)
            .await
            .unwrap();
        for kind in KINDS {
            let link = live.join(format!("{kind}.pem"));
            assert!(
                std::fs::symlink_metadata(&link).unwrap().is_symlink(),
                "{kind}"
            );
            assert_eq!(
                std::fs::read_link(&link).unwrap(),
                Path::new(&format!("../../archive/web/{kind}2.pem"))
            );
            assert_eq!(
                std::fs::read_to_string(archive.join(format!("{kind}1.pem"))).unwrap(),
                format!("{kind} 1\n"),
                "the previous version is kept"
            );
        }
        assert_eq!(
            std::fs::read_to_string(live.join("cert.pem")).unwrap(),
            "leaf 2\n"
        );
        assert_eq!(
            std::fs::read_to_string(live.join("privkey.pem")).unwrap(),
            "key\n"
        );
        install("filesystem", &live, &archive, &issued("3"), &key)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(live.join("fullchain.pem")).unwrap(),
            "leaf 3\nroot\n"
        );
        let leftovers: Vec<_> = std::fs::read_dir(&live)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
