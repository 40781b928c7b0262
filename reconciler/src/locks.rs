//! Poison-tolerant locking. The reconciler's mutexes guard plain maps that every writer leaves
//! consistent between statements, so a panic elsewhere (one renewal's bug) must not take the
//! whole daemon down with `PoisonError`s.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, ignoring poisoning.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
