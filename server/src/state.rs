//! What every API handler can reach, whichever transport the request came on.

use std::sync::Arc;

use rota_reconciler::Reconciler;
use rota_store::AuditStore;

/// What every handler can reach.
#[derive(Clone)]
pub(crate) struct AppState {
    pub reconciler: Reconciler,
    pub store: Arc<dyn AuditStore>,
    /// Serializes config applies so two cannot interleave their write and commit.
    pub apply_lock: Arc<tokio::sync::Mutex<()>>,
}
