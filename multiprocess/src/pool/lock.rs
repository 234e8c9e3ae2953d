//! Mutex helpers for the pool's bookkeeping: a poisoned lock is taken over
//! (a panicking callback must not wedge the pool), and a condition wait
//! with an optional deadline.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// Locks `m`, taking it over if a panic poisoned it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits once on `cv` (until notified, or at most until `deadline`); the
/// guard comes back as `Err` without waiting if the deadline has passed.
pub(crate) fn wait_until<'a, T>(
    cv: &Condvar,
    guard: MutexGuard<'a, T>,
    deadline: Option<Instant>,
) -> Result<MutexGuard<'a, T>, MutexGuard<'a, T>> {
    match deadline {
        None => Ok(cv.wait(guard).unwrap_or_else(|e| e.into_inner())),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(guard);
            }
            Ok(cv
                .wait_timeout(guard, left)
                .unwrap_or_else(|e| e.into_inner())
                .0)
        }
    }
}
