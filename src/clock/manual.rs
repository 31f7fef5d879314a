//! [`ManualClock`]: a clock for tests, moved by hand.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use time::Duration;

use super::Clock;

/// A clock that only moves when told to; clones share the same time.
///
/// # Example
///
/// ```
/// use axum_tessera::clock::{Clock, ManualClock};
/// use time::Duration;
///
/// let clock = ManualClock::new(1_700_000_000);
/// clock.advance(Duration::minutes(5));
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

    /// Moves the clock by `by` (which may be negative), to the whole second.
    pub fn advance(&self, by: Duration) {
        self.now.fetch_add(by.whole_seconds(), Ordering::SeqCst);
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
