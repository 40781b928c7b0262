//! The reconciler: desired state (the config, hot-reloaded) against observed state (what the
//! install backends read back), with renewals acted out by the renewer pipeline through the
//! work queue, and every cert looked at again at the time its plan names. It talks to
//! backends and the store only through their traits.

mod alert_policy;
mod alerts;
mod ari;
mod backoff;
mod clock;
mod cluster;
mod conditions;
mod desired;
mod dns;
mod events;
mod forward;
mod install_sync;
mod locks;
mod observe;
mod plan;
mod progress;
mod queue;
mod reconciler;
mod recover;
mod renew;
mod renewal;
mod renewal_info;
mod revoke;
mod schedule;
mod startup;
mod state;
mod watcher;

pub use alerts::AlertTestError;
pub use ari::{AriStatus, pick_time};
pub use clock::{Clock, ManualClock, Sleep, SystemClock, rfc3339};
pub use cluster::Cluster;
pub use desired::{CertRuntime, ConfigDiff, Desired};
pub use events::CertEvent;
pub use observe::inspect_pem;
pub use plan::{Observation, Plan, renewal_time};
pub use progress::Following;
pub use reconciler::{Prepared, Reconciler, RenewRequestError, RenewTicket, StartError};
pub use renew::RenewError;
pub use revoke::RevokeError;
pub use state::CertState;
pub use watcher::{WatchError, watch_config};
