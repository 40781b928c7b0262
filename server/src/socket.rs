//! The UNIX socket, rota's admin channel: whoever can open it can do anything rotad does, so
//! its mode (0660) and group (`daemon.socket_group`) are the access control. rotad removes
//! only a stale *socket* it finds at the path (checked with lstat; never a regular file, a
//! directory or a symlink) and changes the mode and group only of the socket it has just
//! created, in a directory no other user can write to.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, bail};
use tokio::net::{UnixListener, UnixStream};

use rota_api::config::{ConfigErrors, LoadedConfig};
use rota_providers::atomic_write::create_dir_all_with_mode;

/// The socket's mode: its owner and group may use the CLI, nobody else.
const SOCKET_MODE: u32 = 0o660;

/// The gid `daemon.socket_group` names, if set: a number as is, a name looked up in the
/// system's group database (so LDAP and other NSS sources work).
pub(crate) fn socket_gid(loaded: &LoadedConfig) -> Result<Option<u32>, ConfigErrors> {
    let Some(group) = &loaded.config.daemon.socket_group else {
        return Ok(None);
    };
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(Some(gid));
    }
    let (message, hint) = match nix::unistd::Group::from_name(group) {
        Ok(Some(found)) => return Ok(Some(found.gid.as_raw())),
        Ok(None) => (
            format!("there is no group `{group}` on this host"),
            format!(
                "create it (`groupadd {group}`) and add the users who may run `rota`, or name an existing group"
            ),
        ),
        Err(e) => (
            format!("cannot look up group `{group}`: {e}"),
            "check the system's group database (/etc/group, NSS)".to_owned(),
        ),
    };
    let path = "daemon.socket_group";
    Err(ConfigErrors(vec![loaded.issue_at(
        path,
        message,
        Some(hint),
    )]))
}

/// Binds the CLI socket at `path`, replacing a stale socket but never a live rotad's nor
/// anything that is not a socket, then gives it mode 0660 and group `gid`.
pub(crate) async fn bind_socket(path: &Path, gid: Option<u32>) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_dir_all_with_mode(dir, 0o755)
            .with_context(|| format!("creating {}", dir.display()))?;
        refuse_shared_directory(dir)?;
    }
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("inspecting {}", path.display())),
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).await.is_ok() {
                bail!("another rotad is already listening on {}", path.display());
            }
            std::fs::remove_file(path)
                .with_context(|| format!("removing the stale socket {}", path.display()))?;
        }
        Ok(meta) => bail!(
            "daemon.socket_path {} exists and is not a socket (it is {}); rotad will not remove it: move it away or choose another socket_path",
            path.display(),
            describe(meta.file_type()),
        ),
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("binding daemon.socket_path {}", path.display()))?;
    let made = std::fs::symlink_metadata(path)
        .with_context(|| format!("inspecting the new socket {}", path.display()))?;
    if !made.file_type().is_socket() {
        bail!(
            "{} was replaced right after rotad created it; refusing to change its mode",
            path.display()
        );
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    if let Some(gid) = gid {
        std::os::unix::fs::lchown(path, None, Some(gid)).with_context(|| {
            format!(
                "giving {} to group {gid} (daemon.socket_group); rotad must run as root or be a member of that group",
                path.display()
            )
        })?;
    }
    Ok(listener)
}

/// Removes the socket at `path` at exit if it still is a socket (lstat), never what may have
/// replaced it.
pub(crate) fn remove_socket(path: &Path) {
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if is_socket {
        let _ = std::fs::remove_file(path);
    }
}

/// Refuses a socket directory other users may write to without the sticky bit: they could
/// swap the socket for a link between its creation and its chmod.
fn refuse_shared_directory(dir: &Path) -> anyhow::Result<()> {
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("inspecting {}", dir.display()))?
        .permissions()
        .mode();
    let shared = mode & 0o022 != 0 && mode & 0o1000 == 0;
    if shared {
        bail!(
            "the socket's directory {} is writable by other users (mode {:o}); make it writable by rotad's user only (chmod go-w) or choose another daemon.socket_path",
            dir.display(),
            mode & 0o7777
        );
    }
    Ok(())
}

fn describe(kind: std::fs::FileType) -> &'static str {
    if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_file() {
        "a regular file"
    } else {
        "another kind of file"
    }
}
