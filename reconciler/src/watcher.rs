//! Hot reload: watches the config file's directory (so editors that replace the file by
//! rename are followed), waits for writes to settle, and applies the new text if it is valid.
//! SIGHUP asks for the same reload, for changes a directory watch cannot see (a config
//! symlinked from elsewhere, a network filesystem) and for `systemctl reload rotad`.
//! An invalid change is logged with every error, surfaced to the API, and the running config
//! is kept. Settings read only at start (listener, socket, state paths) keep their running
//! values; the ones the file changes are reported as needing a restart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use rota_api::config::{ConfigErrors, LoadedConfig, load_str, read_config};

use crate::reconciler::{Prepared, Reconciler};

/// Writes closer together than this count as one change.
const SETTLE: Duration = Duration::from_millis(300);

/// Why the watcher could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// The directory watch could not be set up.
    #[error("cannot watch {path}: {source}")]
    Watch {
        /// The directory.
        path: PathBuf,
        /// What notify said.
        #[source]
        source: notify::Error,
    },
    /// The SIGHUP handler could not be installed.
    #[error("cannot install the SIGHUP handler: {0}")]
    Signal(#[source] std::io::Error),
}

/// Starts watching `path`; changes are applied to `reconciler` until it shuts down.
pub fn watch_config(reconciler: &Reconciler, path: &Path) -> Result<(), WatchError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."))
        .to_owned();
    let name = path.file_name().map(ToOwned::to_owned);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let relevant = !matches!(event.kind, EventKind::Access(_))
            && event.paths.iter().any(|p| p.file_name() == name.as_deref());
        if relevant {
            let _ = tx.send(());
        }
    })
    .map_err(|source| WatchError::Watch {
        path: dir.clone(),
        source,
    })?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|source| WatchError::Watch {
            path: dir.clone(),
            source,
        })?;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(WatchError::Signal)?;
    let this = reconciler.clone();
    let path = path.to_owned();
    reconciler.shared.tasks.spawn(async move {
        // The watcher lives as long as this task.
        let _watcher = watcher;
        loop {
            tokio::select! {
                () = this.shared.shutdown.cancelled() => break,
                got = rx.recv() => if got.is_none() { break },
                _ = hangup.recv() => tracing::info!("SIGHUP received; reading the config again"),
            }
            while tokio::time::timeout(SETTLE, rx.recv())
                .await
                .is_ok_and(|got| got.is_some())
            {}
            this.reload(&path).await;
        }
    });
    Ok(())
}

impl Reconciler {
    async fn reload(&self, path: &Path) {
        let read_path = path.to_owned();
        // Read with the loader's size limit: a file grown past it is refused unread.
        let text = match tokio::task::spawn_blocking(move || read_config(&read_path)).await {
            Ok(Ok(text)) => text,
            Ok(Err(errors)) => {
                self.config_refused(&errors);
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the config panicked");
                return;
            }
        };
        if text == self.desired().loaded.text {
            return;
        }
        tracing::info!(path = %path.display(), "config file changed; reloading");
        let owned = path.to_owned();
        let loaded = tokio::task::spawn_blocking(move || load_str(&owned, text)).await;
        match loaded {
            Ok(Ok(loaded)) => match self.prepare_hand_edit(loaded) {
                Ok(prepared) => {
                    self.commit(prepared);
                }
                Err(errors) => self.config_refused(&errors),
            },
            Ok(Err(errors)) => self.config_refused(&errors),
            Err(e) => tracing::error!(error = %e, "loading the config panicked"),
        }
    }

    /// A hand edit keeps the running values of the restart-only settings and remembers the
    /// ones it changes, for `rota status`.
    fn prepare_hand_edit(&self, mut loaded: LoadedConfig) -> Result<Prepared, ConfigErrors> {
        let restart_required = loaded.keep_restart_only(&self.desired().loaded.config)?;
        let mut prepared = self.prepare(loaded)?;
        prepared.restart_required = restart_required;
        Ok(prepared)
    }
}
