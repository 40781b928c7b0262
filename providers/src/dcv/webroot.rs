//! `dcv: { kind: webroot, directory }`: HTTP-01 through a web server the operator already runs.
//! rota drops the key authorization at `<directory>/.well-known/acme-challenge/<token>` and the
//! server serves it as a static file; rota never binds port 80 itself. The token comes from the
//! CA and becomes a file name, so anything that is not a plain base64url string is refused
//! before the disk is touched: a misbehaving CA must not be able to write outside the challenge
//! directory.
//!
//! The document root usually belongs to the web server's user, who must not be able to turn
//! rotad (root) into a writer of arbitrary files either: `.well-known` or `acme-challenge` may
//! be symlinks (some setups share one challenge directory between sites) only if they resolve
//! inside the document root; one that leads outside it is refused before anything is created
//! or written. The token file itself is written as every rota file is, never through a
//! symlink (see `atomic_write`).

use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use rota_api::{BackendError, ChallengeKind, DcvBackend, DcvChallenge};

use crate::atomic_write::{create_dir_all_with_mode, write_atomic};

/// The config `kind` of this solver.
const KIND: &str = "webroot";

/// Where RFC 8555 §8.3 says the CA fetches the response, relative to the document root.
const CHALLENGE_DIR: &str = ".well-known/acme-challenge";

/// Answers HTTP-01 by writing token files under a web server's document root.
pub(crate) struct WebrootDcv {
    /// The document root.
    root: PathBuf,
    /// `<root>/.well-known/acme-challenge`.
    challenge_dir: PathBuf,
}

impl WebrootDcv {
    /// A solver writing under the document root `directory`.
    pub(crate) fn new(directory: &Path) -> Self {
        Self {
            root: directory.to_owned(),
            challenge_dir: directory.join(CHALLENGE_DIR),
        }
    }

    /// The token file for `challenge`, and the body to serve, once the token is known safe.
    fn token_file<'c>(
        &self,
        challenge: &'c DcvChallenge,
    ) -> Result<(PathBuf, &'c str), BackendError> {
        match challenge {
            DcvChallenge::Http01 {
                token,
                key_authorization,
                ..
            } => {
                check_token(token)?;
                Ok((self.challenge_dir.join(token), key_authorization))
            }
            DcvChallenge::Dns01 { .. } | DcvChallenge::DnsCname { .. } => {
                Err(BackendError::invalid(
                    KIND,
                    format!(
                        "webroot answers HTTP-01 only, but was asked to publish {}; \
                     use a DNS solver (cloudflare, namecheap) for DNS records",
                        challenge.describe()
                    ),
                ))
            }
        }
    }
}

/// Refuses every token that is not a non-empty base64url string (RFC 8555 §8.3), which rules
/// out `/`, `\`, `..` and every other way a file name could leave the challenge directory.
fn check_token(token: &str) -> Result<(), BackendError> {
    let base64url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if !token.is_empty() && token.bytes().all(base64url) {
        return Ok(());
    }
    Err(BackendError::invalid(
        KIND,
        format!(
            "the CA sent the HTTP-01 token {token:?}, which is not a base64url string and \
             could escape the challenge directory; nothing was written"
        ),
    ))
}

#[async_trait]
impl DcvBackend for WebrootDcv {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn supported_kinds(&self) -> &[ChallengeKind] {
        &[ChallengeKind::Http01]
    }

    async fn publish(&self, challenge: &DcvChallenge) -> Result<(), BackendError> {
        let (path, body) = self.token_file(challenge)?;
        let (root, dir) = (self.root.clone(), self.challenge_dir.clone());
        let body = body.to_owned();
        run_blocking(&path, "writing", move |path| {
            check_within_root(&root)?;
            create_dir_all_with_mode(&dir, 0o755)
                .map_err(|e| BackendError::io(KIND, "creating", &dir, e))?;
            // Replacing an existing file makes a second publish (retry, crash recovery) a no-op.
            write_atomic(path, body.as_bytes(), 0o644)
                .map_err(|e| BackendError::io(KIND, "writing", path, e))
        })
        .await
    }

    async fn remove(&self, challenge: &DcvChallenge) -> Result<(), BackendError> {
        let (path, _) = self.token_file(challenge)?;
        let root = self.root.clone();
        // The directories stay: the web server's config may point at them, and other certs
        // sharing this document root may have challenges in flight.
        run_blocking(&path, "removing", move |path| {
            check_within_root(&root)?;
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    Err(BackendError::io(KIND, "removing", path, e))
                }
                _ => Ok(()),
            }
        })
        .await
    }
}

/// Refuses a `.well-known` or `acme-challenge` under `root` that is a symlink leading outside
/// `root` (or nowhere). Components that do not exist yet are fine: rota creates them as
/// directories. (A symlink swapped in between this check and the write is not caught; the
/// check stops the planted-in-advance case, which needs no race.)
fn check_within_root(root: &Path) -> Result<(), BackendError> {
    let io_error = |path: &Path, e| BackendError::io(KIND, "checking", path, e);
    let real_root = match root.canonicalize() {
        Ok(real) => real,
        // Nothing planted in a document root that does not exist yet; rota creates it.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(root, e)),
    };
    let mut current = root.to_owned();
    for component in Path::new(CHALLENGE_DIR).components() {
        current.push(component);
        match std::fs::symlink_metadata(&current) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error(&current, e)),
            Ok(meta) if !meta.is_symlink() => {}
            Ok(_) => {
                let target = current.canonicalize().ok();
                if !target.as_ref().is_some_and(|t| t.starts_with(&real_root)) {
                    let shown =
                        target.map_or_else(|| "nowhere".to_owned(), |t| t.display().to_string());
                    return Err(BackendError::invalid(
                        KIND,
                        format!(
                            "{} is a symlink to {shown}, outside the document root {}: rota will not \
                             write challenge files through it; make it a directory, or a symlink to \
                             one inside the document root",
                            current.display(),
                            real_root.display()
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Runs `work` on `path` on the blocking pool, so file I/O never stalls the runtime.
async fn run_blocking(
    path: &Path,
    action: &'static str,
    work: impl FnOnce(&Path) -> Result<(), BackendError> + Send + 'static,
) -> Result<(), BackendError> {
    let owned = path.to_owned();
    tokio::task::spawn_blocking(move || work(&owned))
        .await
        .map_err(|e| {
            BackendError::io(
                KIND,
                action,
                path,
                io::Error::other(format!("the file task failed: {e}")),
            )
        })?
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn http01(token: &str) -> DcvChallenge {
        DcvChallenge::Http01 {
            domain: "a.test".to_owned(),
            token: token.to_owned(),
            key_authorization: format!("{token}.thumbprint"),
        }
    }

    #[tokio::test]
    async fn symlinks_leading_outside_the_document_root_are_refused() {
        // One row per place a web server's user could plant a symlink.
        for (link, points_inside, why) in [
            (
                ".well-known",
                false,
                "the well-known directory leads outside",
            ),
            (
                ".well-known/acme-challenge",
                false,
                "the challenge directory leads outside",
            ),
            (
                ".well-known/acme-challenge",
                true,
                "a challenge directory shared inside the root",
            ),
        ] {
            let scratch = tempfile::tempdir().unwrap();
            let (root, outside) = (scratch.path().join("www"), scratch.path().join("etc"));
            std::fs::create_dir_all(root.join("shared")).unwrap();
            if link != ".well-known" {
                std::fs::create_dir(root.join(".well-known")).unwrap();
            }
            std::fs::create_dir(&outside).unwrap();
            let target = if points_inside {
                root.join("shared")
            } else {
                outside.clone()
            };
            symlink(&target, root.join(link)).unwrap();
            let solver = WebrootDcv::new(&root);

            let published = solver.publish(&http01("tok")).await;
            let written: Vec<_> = std::fs::read_dir(&outside).unwrap().collect();
            assert!(
                written.is_empty(),
                "{why}: nothing may land outside the root"
            );
            if points_inside {
                published.unwrap();
                assert!(
                    root.join("shared/tok").exists(),
                    "{why}: written through the link"
                );
            } else {
                let err = published.unwrap_err().to_string();
                assert!(err.contains("outside the document root"), "{why}: {err}");
                assert!(
                    solver.remove(&http01("tok")).await.is_err(),
                    "{why}: remove refuses too"
                );
            }
        }
    }

    #[test]
    fn tokens_outside_base64url_are_refused() {
        // One row per way a token could name something other than a file in the directory.
        for (token, why) in [
            ("", "empty: would name the directory itself"),
            ("..", "parent directory"),
            ("../etc", "traversal"),
            ("a/b", "slash"),
            ("a\\b", "backslash"),
            ("abc.def", "dot (not base64url)"),
            ("abc=", "base64 padding"),
            ("a b", "space"),
            ("é", "non-ASCII"),
            ("a\0b", "NUL"),
        ] {
            assert!(check_token(token).is_err(), "{why}: {token:?} accepted");
        }
        for token in ["evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA", "a", "A-_9"] {
            check_token(token).unwrap();
        }
    }
}
