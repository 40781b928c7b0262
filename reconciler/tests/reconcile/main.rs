//! The reconciler against fake backends: each test plays one scenario (a crash mid-renewal,
//! a failing CA, a busy queue, a config change) and asserts on what the fakes and the audit
//! store observed.

mod support;

mod alerts;
mod cluster;
mod concurrency;
mod config_change;
mod crash_recovery;
mod dry_run;
mod failures;
mod install_sync;
mod isolation;
mod renewal_window;
mod restart;
mod revocation;
mod success;
