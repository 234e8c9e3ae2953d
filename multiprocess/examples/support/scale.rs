//! Simulated work for the tutorial examples: `sleep(secs)` sleeps
//! `secs × SLEEP_SCALE` seconds (default scale 1.0), so
//! `SLEEP_SCALE=0.01` runs every example in a moment.

use std::time::Duration;

/// The factor from the `SLEEP_SCALE` environment variable (default 1.0).
pub(crate) fn factor() -> f64 {
    std::env::var("SLEEP_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|f| f.is_finite() && *f >= 0.0)
        .unwrap_or(1.0)
}

/// Sleeps `secs` seconds of simulated work, scaled.
pub(crate) fn sleep(secs: f64) {
    std::thread::sleep(Duration::from_secs_f64(secs * factor()));
}
