//! [`MemoryStore`]: the embedded default store, sharded and bounded with LRU eviction.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use lru::LruCache;

use crate::clock::{Clock, SystemClock};
use crate::error::StoreError;
use crate::record::{Record, SessionInfo};
use crate::store::{Commit, CommitOutcome, Lookup, SessionStore};
use crate::token::StoreKey;

const DEFAULT_MAX_SESSIONS: usize = 1_000_000;
/// Below this many sessions one shard holds everything, so eviction order is exact LRU.
const SHARDING_THRESHOLD: usize = 1024;
const SHARDS: usize = 16;

/// Store keys are SHA-256 outputs of random IDs, already uniform: hashing them again buys
/// nothing, so the map uses their first eight bytes as the hash.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Shard = LruCache<StoreKey, Record, BuildHasherDefault<KeyHasher>>;

/// An in-process session store: the default, with nothing to set up.
///
/// Sharded to keep lock contention low, bounded by [`MemoryStore::max_sessions`] (the least
/// recently used session is evicted first), and an expired record is never returned even
/// before [`MemoryStore::sweep`] removes it. Clones share the same sessions. Sessions do not
/// survive a restart and are not shared between processes: use `RedisStore` for a fleet.
///
/// # Example
///
/// ```
/// use axum_tessera::store::MemoryStore;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let store = MemoryStore::new().max_sessions(10_000);
/// let _sweeper = store.spawn_sweeper(std::time::Duration::from_secs(60));
/// assert_eq!(store.len(), 0);
/// # }
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    max_sessions: usize,
    clock: Arc<dyn Clock>,
    /// Principal ID -> keys. May hold stale keys (evicted or expired); readers re-check each
    /// record, so the index never needs to be exact, only complete.
    index: Mutex<HashMap<String, HashSet<StoreKey>>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("len", &self.len())
            .field("max_sessions", &self.inner.max_sessions)
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store holding at most 1,000,000 sessions, on the system clock.
    pub fn new() -> Self {
        Self::build(DEFAULT_MAX_SESSIONS, Arc::new(SystemClock))
    }

    fn build(max_sessions: usize, clock: Arc<dyn Clock>) -> Self {
        let max_sessions = max_sessions.max(1);
        let shards = if max_sessions < SHARDING_THRESHOLD {
            1
        } else {
            SHARDS
        };
        Self {
            inner: Arc::new(Inner {
                shards: (0..shards)
                    .map(|_| Mutex::new(LruCache::unbounded_with_hasher(Default::default())))
                    .collect(),
                per_shard: max_sessions.div_ceil(shards),
                max_sessions,
                clock,
                index: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Caps the number of sessions (default 1,000,000; at least 1). When full, creating a
    /// session evicts the least recently used one (exactly below 1024 sessions; per shard
    /// above). Call before sharing the store: it starts a new, empty store.
    #[must_use]
    pub fn max_sessions(self, max: usize) -> Self {
        Self::build(max, self.inner.clock.clone())
    }

    /// Reads time from `clock` (default: the system clock). Give it the same clock as the
    /// layer's [`SessionConfig::clock`](crate::SessionConfig::clock). Starts a new, empty store.
    #[must_use]
    pub fn with_clock(self, clock: impl Clock) -> Self {
        Self::build(self.inner.max_sessions, Arc::new(clock))
    }

    /// Number of records held, including expired ones not yet swept.
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Whether the store holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every expired record now and answers how many went.
    pub fn sweep(&self) -> usize {
        let now = self.inner.clock.now();
        let mut removed = 0;
        for shard in self.inner.shards.iter() {
            let mut shard = lock(shard);
            let dead: Vec<StoreKey> = shard
                .iter()
                .filter(|(_, r)| r.is_expired(now))
                .map(|(k, _)| *k)
                .collect();
            for key in dead {
                shard.pop(&key);
                removed += 1;
            }
        }
        removed
    }

    /// Runs [`MemoryStore::sweep`] every `period` on the current Tokio runtime until the
    /// store is dropped.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn spawn_sweeper(&self, period: Duration) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let removed = MemoryStore { inner }.sweep();
                tracing::debug!(removed, "memory store sweep");
            }
        })
    }

    fn shard(&self, key: &StoreKey) -> MutexGuard<'_, Shard> {
        let n = self.inner.shards.len();
        let word = u64::from_le_bytes(key.as_bytes()[8..16].try_into().expect("8 bytes"));
        let i = usize::try_from(word % n as u64).unwrap_or(0);
        lock(&self.inner.shards[i])
    }

    fn insert(&self, shard: &mut Shard, key: StoreKey, record: Record) {
        if let Some(p) = record.principal() {
            lock(&self.inner.index)
                .entry(p.id().to_owned())
                .or_default()
                .insert(key);
        }
        shard.push(key, record);
        while shard.len() > self.inner.per_shard {
            if shard.pop_lru().is_none() {
                break;
            }
        }
    }
}

/// A poisoned lock only means another thread panicked mid-update of plain data; the map is
/// still structurally sound, so keep serving rather than failing every request after.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SessionStore for MemoryStore {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        let now = self.inner.clock.now();
        let mut shard = self.shard(key);
        match shard.get(key) {
            Some(r) if !r.is_expired(now) => Ok(Some(r.clone())),
            Some(_) => {
                shard.pop(key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn lookup(&self, key: &StoreKey) -> Result<Lookup, StoreError> {
        let now = self.inner.clock.now();
        let mut shard = self.shard(key);
        Ok(match shard.get(key) {
            Some(r) if !r.is_expired(now) => Lookup::Live(r.clone()),
            Some(_) => shard.pop(key).map_or(Lookup::Missing, Lookup::Expired),
            None => Lookup::Missing,
        })
    }

    fn session_count(&self) -> Option<usize> {
        Some(self.len())
    }

    async fn commit(&self, commit: Commit) -> Result<CommitOutcome, StoreError> {
        let now = self.inner.clock.now();
        match commit {
            Commit::Create { key, record } => {
                let mut shard = self.shard(&key);
                if shard.peek(&key).is_some_and(|r| !r.is_expired(now)) {
                    return Ok(CommitOutcome::Collision);
                }
                self.insert(&mut shard, key, record);
                Ok(CommitOutcome::Applied)
            }
            Commit::Patch { key, patch } => {
                let mut shard = self.shard(&key);
                let Some(record) = shard.get_mut(&key).filter(|r| !r.is_expired(now)) else {
                    shard.pop(&key);
                    return Ok(CommitOutcome::Missing);
                };
                patch.apply(record);
                if let Some(Some(p)) = patch.principal() {
                    lock(&self.inner.index)
                        .entry(p.id().to_owned())
                        .or_default()
                        .insert(key);
                }
                Ok(CommitOutcome::Applied)
            }
            Commit::Move { from, to, patch } => {
                let Some(mut record) = self.shard(&from).pop(&from).filter(|r| !r.is_expired(now))
                else {
                    return Ok(CommitOutcome::Missing);
                };
                patch.apply(&mut record);
                let mut shard = self.shard(&to);
                if shard.peek(&to).is_some_and(|r| !r.is_expired(now)) {
                    drop(shard);
                    // Put the original back untouched: a collision must change nothing.
                    let mut original = self.shard(&from);
                    original.push(from, record);
                    return Ok(CommitOutcome::Collision);
                }
                self.insert(&mut shard, to, record);
                Ok(CommitOutcome::Applied)
            }
            Commit::Delete { key } => {
                self.shard(&key).pop(&key);
                Ok(CommitOutcome::Applied)
            }
        }
    }

    async fn sessions_of(&self, principal: &str) -> Result<Vec<SessionInfo>, StoreError> {
        let now = self.inner.clock.now();
        let keys: Vec<StoreKey> = lock(&self.inner.index)
            .get(principal)
            .map(|set| set.iter().copied().collect())
            .unwrap_or_default();
        let mut out = Vec::new();
        let mut stale = Vec::new();
        for key in keys {
            let shard = self.shard(&key);
            match shard.peek(&key) {
                Some(r)
                    if !r.is_expired(now) && r.principal().is_some_and(|p| p.id() == principal) =>
                {
                    out.push(r.info(key));
                }
                _ => stale.push(key),
            }
        }
        if !stale.is_empty() {
            let mut index = lock(&self.inner.index);
            if let Some(set) = index.get_mut(principal) {
                for key in &stale {
                    set.remove(key);
                }
                if set.is_empty() {
                    index.remove(principal);
                }
            }
        }
        out.sort_by_key(|info| std::cmp::Reverse(info.last_seen()));
        Ok(out)
    }

    async fn delete_sessions_of(&self, principal: &str) -> Result<u64, StoreError> {
        let now = self.inner.clock.now();
        let keys = lock(&self.inner.index)
            .remove(principal)
            .unwrap_or_default();
        let mut deleted = 0;
        for key in keys {
            let mut shard = self.shard(&key);
            let owned = shard
                .peek(&key)
                .is_some_and(|r| r.principal().is_some_and(|p| p.id() == principal));
            if owned && shard.pop(&key).is_some_and(|r| !r.is_expired(now)) {
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}
