//! Time sources: the system clock and a [`ManualClock`] that tests move by hand.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;

/// Where the layer and the stores read the current time from.
///
/// Inject a [`ManualClock`] to test idle and absolute expiry without waiting.
pub trait Clock: Send + Sync + 'static {
    /// Current time in whole Unix seconds.
    fn now(&self) -> i64;
}

/// The operating system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        // Read on every request: `SystemTime` skips the calendar arithmetic that
        // `OffsetDateTime::now_utc().unix_timestamp()` does only to undo it.
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
            Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
        }
    }
}

/// A clock that only moves when told to; clones share the same time.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use axum_tessera::{Clock, ManualClock};
///
/// let clock = ManualClock::new(1_700_000_000);
/// clock.advance(Duration::from_secs(5 * 60));
/// assert_eq!(clock.now(), 1_700_000_300);
/// ```
#[derive(Clone, Default)]
pub struct ManualClock {
    now: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock standing at `unix_seconds`.
    pub fn new(unix_seconds: i64) -> Self {
        Self {
            now: Arc::new(AtomicI64::new(unix_seconds)),
        }
    }

    /// Moves the clock forward by `by`, to the whole second (saturating). To go back, use
    /// [`set`](Self::set).
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_secs()).unwrap_or(i64::MAX);
        // `fetch_update` rather than `fetch_add`: an add would wrap around at `i64::MAX`.
        let _ = self
            .now
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                Some(now.saturating_add(by))
            });
    }

    /// Sets the clock to `unix_seconds`.
    pub fn set(&self, unix_seconds: i64) {
        self.now.store(unix_seconds, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ManualClock").field(&self.now()).finish()
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
        let before = OffsetDateTime::now_utc().unix_timestamp();
        let now = SystemClock.now();
        let after = OffsetDateTime::now_utc().unix_timestamp();
        assert!(
            (before..=after).contains(&now),
            "{before} <= {now} <= {after}"
        );
    }
}
