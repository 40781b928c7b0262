//! Key rollover (`key.rotation`). Under `every_renewal` or `after_days`, rota keeps a second
//! key one renewal ahead at `<key_path>.next` (0600), so its pin can be published before any
//! cert uses it. A renewal that is due to switch signs its CSR with `.next`; only once a cert
//! for it is installed does `.next` become `key_path`. The installed cert's public key is the
//! truth: whenever it is `.next`'s, the switch is completed (after the install, or at the next
//! renewal after a crash in between). The replaced key is archived as
//! `<key_path>.<UTC time of the switch, YYYYMMDDTHHMMSSZ>` (0600) and never deleted.
//!
//! A key's age (for `after_days`) is the modification time of its file: a switch stamps it
//! with the time the key went live; rota never writes a key file again afterwards.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rota_api::config::{KeyRotation, KeyType};
use time::OffsetDateTime;
use time::macros::format_description;

use crate::atomic_write::{create_atomic, rename_durably};
use crate::keys::{self, CertKey, KeyError};

/// Where the key prepared for the next switch lives: `<key_path>.next`.
#[must_use]
pub fn next_path(key_path: &Path) -> PathBuf {
    with_suffix(key_path, ".next")
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The key a renewal signs its CSR with.
#[derive(Debug)]
pub struct RenewalKey {
    /// The key.
    pub key: CertKey,
    /// True when `key_path` was missing and this renewal generated it.
    pub generated: bool,
    /// True when it is the prepared `.next` key, because the rotation is due.
    pub next: bool,
}

/// How a renewal gets the key at `key_path`: [`keys::load_or_generate`] for a live one,
/// [`keys::load_or_generate_unsaved`] for a dry run, which must write nothing.
pub type KeyLoader = fn(&Path, KeyType) -> Result<keys::LoadedKey, KeyError>;

/// Loads (or, through `load`, generates) the key at `key_path` and, when `rotation` says a
/// switch is due at `now` and a `.next` key was prepared, returns that one instead. Blocking.
pub fn key_for_renewal(
    key_path: &Path,
    key_type: KeyType,
    rotation: KeyRotation,
    now: OffsetDateTime,
    load: KeyLoader,
) -> Result<RenewalKey, KeyError> {
    let current = load(key_path, key_type)?;
    if !current.generated
        && switch_due(key_path, rotation, now)?
        && let Some(next) = read_key(&next_path(key_path))?
    {
        return Ok(RenewalKey {
            key: next,
            generated: false,
            next: true,
        });
    }
    Ok(RenewalKey {
        key: current.key,
        generated: current.generated,
        next: false,
    })
}

/// Whether `rotation` wants this renewal to move to the next key.
fn switch_due(
    key_path: &Path,
    rotation: KeyRotation,
    now: OffsetDateTime,
) -> Result<bool, KeyError> {
    match rotation {
        KeyRotation::Never => Ok(false),
        KeyRotation::EveryRenewal => Ok(true),
        KeyRotation::AfterDays(days) => {
            let since = std::fs::metadata(key_path)
                .and_then(|m| m.modified())
                .map_err(|source| KeyError::Read {
                    path: key_path.to_owned(),
                    source,
                })?;
            let age = SystemTime::from(now)
                .duration_since(since)
                .unwrap_or(Duration::ZERO);
            Ok(age >= Duration::from_secs(u64::from(days) * 24 * 60 * 60))
        }
    }
}

/// The key at `path`, or `None` when there is no file.
fn read_key(path: &Path) -> Result<Option<CertKey>, KeyError> {
    match std::fs::read(path) {
        Ok(bytes) => keys::load(path, &bytes).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(KeyError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// What [`settle`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Settled {
    /// The installed cert is not `.next`'s (or there is no `.next`): nothing to do.
    Unchanged,
    /// `.next` became the key; the old key was archived at the path given, if there was one.
    Switched(Option<PathBuf>),
}

/// Completes a switch when the installed cert (whose `SubjectPublicKeyInfo` is
/// `installed_spki`) was signed for the `.next` key: archives `key_path`, then moves `.next`
/// into its place, stamped with `now` as the time the key went live. Every step is atomic
/// and `key_path` is never missing, so a crash anywhere is finished by the next call. Blocking.
pub fn settle(
    key_path: &Path,
    installed_spki: &[u8],
    now: OffsetDateTime,
) -> Result<Settled, KeyError> {
    let next = next_path(key_path);
    match read_key(&next)? {
        Some(key) if key.public_key_der() == installed_spki => {}
        _ => return Ok(Settled::Unchanged),
    }
    let write_error = |path: &Path, source| KeyError::Write {
        path: path.to_owned(),
        source,
    };
    let archived = match std::fs::read(key_path) {
        Ok(old) => Some(archive(key_path, &old, now).map_err(|e| write_error(key_path, e))?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(KeyError::Read {
                path: key_path.to_owned(),
                source,
            });
        }
    };
    std::fs::File::options()
        .write(true)
        .open(&next)
        .and_then(|file| file.set_modified(now.into()))
        .map_err(|e| write_error(&next, e))?;
    rename_durably(&next, key_path).map_err(|e| write_error(key_path, e))?;
    tracing::info!(path = %key_path.display(), archived = ?archived, "switched to the prepared next key");
    Ok(Settled::Switched(archived))
}

/// Writes `old` (the key being replaced) to `<key_path>.<YYYYMMDDTHHMMSSZ>`, 0600; a
/// second switch within the same second gets `.1`, `.2`… appended. An archive already
/// holding these bytes (a crash after archiving) is reused.
fn archive(key_path: &Path, old: &[u8], now: OffsetDateTime) -> io::Result<PathBuf> {
    let stamp = now
        .to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .map_err(io::Error::other)?;
    let base = with_suffix(key_path, &format!(".{stamp}"));
    for n in 0..1000 {
        let path = if n == 0 {
            base.clone()
        } else {
            with_suffix(&base, &format!(".{n}"))
        };
        match create_atomic(&path, old, 0o600) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if std::fs::read(&path)? == old {
                    return Ok(path);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{}.1 to .999 are all taken", base.display()),
    ))
}

/// Prepares the next key (`<key_path>.next`, 0600) when `rotation` asks for one and there is
/// none; returns it when it was generated now. Blocking.
pub fn ensure_next(
    key_path: &Path,
    key_type: KeyType,
    rotation: KeyRotation,
) -> Result<Option<CertKey>, KeyError> {
    let next = next_path(key_path);
    // Checked first so that an RSA key is not generated only to be thrown away.
    if rotation == KeyRotation::Never || std::fs::symlink_metadata(&next).is_ok() {
        return Ok(None);
    }
    let loaded = keys::generate(&next, key_type)?;
    Ok(loaded.generated.then_some(loaded.key))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use time::macros::datetime;

    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 60 * 60);

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn spki_of(path: &Path) -> Vec<u8> {
        read_key(path).unwrap().unwrap().public_key_der()
    }

    /// The key a live renewal of a P-256 cert signs with.
    fn live_key(key_path: &Path, rotation: KeyRotation, now: OffsetDateTime) -> RenewalKey {
        key_for_renewal(
            key_path,
            KeyType::EcdsaP256,
            rotation,
            now,
            keys::load_or_generate,
        )
        .unwrap()
    }

    #[test]
    fn never_prepares_nothing_and_keeps_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("k.pem");
        let now = OffsetDateTime::now_utc();
        let first = live_key(&key_path, KeyRotation::Never, now);
        assert!(
            ensure_next(&key_path, KeyType::EcdsaP256, KeyRotation::Never)
                .unwrap()
                .is_none()
        );
        assert!(!next_path(&key_path).exists());
        let again = live_key(&key_path, KeyRotation::Never, now);
        assert!(!again.next);
        assert_eq!(first.key.public_key_der(), again.key.public_key_der());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn every_renewal_signs_with_next_and_switches_only_once_installed() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("k.pem");
        let rotation = KeyRotation::EveryRenewal;
        let now = datetime!(2026-12-01 10:00:00 UTC);
        // The first renewal has no announced key yet: it uses (and creates) key_path.
        let first = live_key(&key_path, rotation, now);
        assert!(first.generated && !first.next);
        let announced = ensure_next(&key_path, KeyType::EcdsaP256, rotation)
            .unwrap()
            .unwrap();
        assert_eq!(mode_of(&next_path(&key_path)), 0o600);
        let old_bytes = std::fs::read(&key_path).unwrap();
        // The second one signs with the announced key…
        let second = live_key(&key_path, rotation, now);
        assert!(second.next);
        assert_eq!(second.key.public_key_der(), announced.public_key_der());
        // …but an installed cert of the old key switches nothing (a failed install).
        assert_eq!(
            settle(&key_path, &first.key.public_key_der(), now).unwrap(),
            Settled::Unchanged
        );
        assert_eq!(std::fs::read(&key_path).unwrap(), old_bytes);
        // Once the cert of the announced key is installed, it becomes the key.
        let archived = dir.path().join("k.pem.20261201T100000Z");
        assert_eq!(
            settle(&key_path, &announced.public_key_der(), now).unwrap(),
            Settled::Switched(Some(archived.clone()))
        );
        assert_eq!(spki_of(&key_path), announced.public_key_der());
        assert!(!next_path(&key_path).exists());
        assert_eq!(std::fs::read(&archived).unwrap(), old_bytes);
        assert_eq!(mode_of(&archived), 0o600);
        assert_eq!(mode_of(&key_path), 0o600);
        assert_eq!(
            std::fs::metadata(&key_path).unwrap().modified().unwrap(),
            SystemTime::from(now)
        );
        // Settling again (a restart) changes nothing.
        assert_eq!(
            settle(&key_path, &announced.public_key_der(), now).unwrap(),
            Settled::Unchanged
        );
    }

    #[test]
    fn a_crash_after_archiving_is_finished_by_the_next_settle() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("k.pem");
        let rotation = KeyRotation::EveryRenewal;
        let now = datetime!(2026-12-01 10:00:00 UTC);
        live_key(&key_path, rotation, now);
        let next = ensure_next(&key_path, KeyType::EcdsaP256, rotation)
            .unwrap()
            .unwrap();
        let old = std::fs::read(&key_path).unwrap();
        // The archive was written, then the process died before the rename.
        let first_archive = archive(&key_path, &old, now).unwrap();
        let settled = settle(&key_path, &next.public_key_der(), now).unwrap();
        assert_eq!(settled, Settled::Switched(Some(first_archive)));
        assert_eq!(spki_of(&key_path), next.public_key_der());
        // A different key archived in the same second gets its own name.
        let other = archive(&key_path, b"another key", now).unwrap();
        assert_eq!(other, dir.path().join("k.pem.20261201T100000Z.1"));
    }

    #[test]
    fn after_days_switches_only_once_the_key_is_old_enough() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("k.pem");
        let rotation = KeyRotation::AfterDays(30);
        let born = OffsetDateTime::now_utc();
        live_key(&key_path, rotation, born);
        ensure_next(&key_path, KeyType::EcdsaP256, rotation).unwrap();
        for (age, due) in [(DAY * 29, false), (DAY * 30 + DAY / 24, true)] {
            let renewal = live_key(&key_path, rotation, born + age);
            assert_eq!(renewal.next, due, "after {age:?}");
        }
    }
}
