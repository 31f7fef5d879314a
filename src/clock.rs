//! Time sources: the system clock, and (feature `test-util`) a `ManualClock` that tests move
//! by hand.

use std::sync::{Arc, LazyLock};
#[cfg(not(any(target_os = "linux", target_os = "android")))]
use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;

#[cfg(any(test, feature = "test-util"))]
mod manual;
#[cfg(any(test, feature = "test-util"))]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub use manual::ManualClock;

/// Where the layer and the stores read the current time from.
///
/// Inject a `ManualClock` (feature `test-util`) to test idle and absolute expiry without
/// waiting.
pub trait Clock: Send + Sync + 'static {
    /// Current time in whole Unix seconds.
    fn now(&self) -> i64;
}

/// The system clock every configuration starts with, shared so the layer can tell it from
/// one a test injected (only layers on it share a default store).
pub(crate) fn default_clock() -> Arc<dyn Clock> {
    static SYSTEM: LazyLock<Arc<dyn Clock>> = LazyLock::new(|| Arc::new(SystemClock));
    SYSTEM.clone()
}

/// The operating system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn now(&self) -> i64 {
        // Read on every request. Sessions count whole seconds, so the coarse clock (the time
        // of the last tick, a few milliseconds behind at most) does: it is a plain vDSO read,
        // where the fine clock reads and scales the TSC (~45 ns against ~6 ns on a VM).
        rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse).tv_sec
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn now(&self) -> i64 {
        // `SystemTime` skips the calendar arithmetic that
        // `OffsetDateTime::now_utc().unix_timestamp()` does only to undo it.
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
            Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
        }
    }
}

/// Converts Unix seconds to a date for public accessors; out-of-range values saturate.
pub(crate) fn to_datetime(unix_seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix_seconds).unwrap_or(if unix_seconds < 0 {
        OffsetDateTime::UNIX_EPOCH
    } else {
        OffsetDateTime::from_unix_timestamp(253_402_300_799).expect("year 9999 is in range")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_reads_unix_seconds() {
        // The coarse clock may trail the fine one by a tick, so across a second boundary it
        // can still read the second before.
        let before = OffsetDateTime::now_utc().unix_timestamp();
        let now = SystemClock.now();
        let after = OffsetDateTime::now_utc().unix_timestamp();
        assert!(
            (before - 1..=after).contains(&now),
            "{before} - 1 <= {now} <= {after}"
        );
    }
}
