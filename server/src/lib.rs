//! rotad: the daemon's wiring (config, audit store, backends, reconciler, config watcher) and
//! its API, one axum router served on the TCP `listen_addr` and on the UNIX socket.

mod api;
mod apply;
mod daemon;
mod dashboard;
mod error;
mod guard;
mod listener;
mod metrics;
mod objects;
mod socket;
mod state;
mod tls;
mod views;

pub use daemon::{DaemonOptions, run};
