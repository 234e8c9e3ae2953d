//! Timeouts as deadlines, computed once at the start of a blocking call.

use std::time::{Duration, Instant};

/// `Instant::now() + timeout`, or `None` (wait forever) when the sum would
/// overflow, so `Duration::MAX` means "no timeout".
pub(crate) fn after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// Time left until `deadline` (zero once passed); `None` means forever.
#[cfg_attr(loom, allow(dead_code))] // the futex model ignores deadlines
pub(crate) fn remaining(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}
