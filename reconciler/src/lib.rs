//! The reconciler: desired state (the config, hot-reloaded) against observed state (what the
//! install backends read back), with renewals acted out by the renewer pipeline through the
//! work queue. It talks to backends and the store only through their traits.

mod ari;
mod backoff;
mod clock;
mod conditions;
mod desired;
mod dns;
mod observe;
mod plan;
mod queue;
mod reconciler;
mod recover;
mod renew;
mod revoke;
mod watcher;

pub use ari::{AriStatus, pick_time};
pub use clock::{Clock, ManualClock, SystemClock, rfc3339};
pub use desired::{CertRuntime, ConfigDiff, Desired};
pub use observe::inspect_pem;
pub use plan::{Observation, Plan};
pub use reconciler::{CertState, Prepared, Reconciler, RenewRequestError, StartError};
pub use renew::RenewError;
pub use revoke::RevokeError;
pub use watcher::{WatchError, watch_config};
