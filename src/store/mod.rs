//! The store contract ([`SessionStore`]), what a commit asks of a store ([`Commit`]), and the
//! stores this crate ships.
//!
//! # Example
//!
//! ```
//! use axum_tessera::{Key, SessionConfig, SessionLayer, store::MemoryStore};
//!
//! let store = MemoryStore::new().max_sessions(100_000);
//! let layer = SessionLayer::new(SessionConfig::web(Key::generate())).with_store(store);
//! # let _ = layer;
//! ```

#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod conformance;
mod memory;
#[cfg(feature = "redis")]
mod redis;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::live::Registry;

/// The moment (Unix ms, system clock) after which a write sent now under `timeout` must not
/// start, or commit, on the server: the time its client gives up, less a margin (a quarter of
/// the timeout, at most 250 ms) for the answer's way back and for clock skew between this
/// machine and the server. The Redis scripts and the PostgreSQL statements check it there.
#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) fn write_deadline_ms(timeout: std::time::Duration) -> i64 {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let margin = (timeout / 4).min(Duration::from_millis(250));
    i64::try_from((now + timeout).saturating_sub(margin).as_millis()).unwrap_or(i64::MAX)
}

/// The outcome a Redis script or a PostgreSQL statement answers with a word; `None` for a
/// word no commit answers, which each store reports as its own kind of failure.
#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) fn commit_answer(answer: &str) -> Option<Result<CommitOutcome, StoreError>> {
    Some(match answer {
        "applied" => Ok(CommitOutcome::Applied),
        "collision" => Ok(CommitOutcome::Collision),
        "missing" => Ok(CommitOutcome::Missing),
        "limit" => Err(StoreError::from_kind(StoreErrorKind::LimitReached)),
        _ => return None,
    })
}

pub use crate::error::{StoreError, StoreErrorKind};
pub use crate::record::{Patch, Record, SessionInfo};
pub use crate::token::StoreKey;
pub(crate) use memory::Found;
pub use memory::MemoryStore;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::RedisStore;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use sql::PostgresStore;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use sql::SqliteStore;

use serde_json::Value;

/// What one request's commit asks a store to do, in one call.
///
/// Exhaustive, so a store matches every variant without a catch-all arm that would turn a
/// future variant into a panic in the commit path: a new variant is a breaking change of
/// this crate, announced as one.
#[derive(Clone, Debug, PartialEq)]
pub enum Commit {
    /// Create a new record. Create-only: if `key` exists the store changes nothing and answers
    /// [`CommitOutcome::Collision`].
    Create {
        /// Where to file the record.
        key: StoreKey,
        /// The whole new record.
        record: Record,
    },
    /// Apply `patch` to an existing record. If the record is gone (destroyed or expired) the
    /// store changes nothing and answers [`CommitOutcome::Missing`]: a patch never resurrects.
    Patch {
        /// The record to patch.
        key: StoreKey,
        /// The changes.
        patch: Patch,
    },
    /// Privilege change: apply `patch` to the record at `from`, file the result under `to`
    /// (create-only) and delete `from`, atomically. `Missing` if `from` is gone, `Collision` if
    /// `to` exists.
    Move {
        /// The old key, which stops working.
        from: StoreKey,
        /// The new key.
        to: StoreKey,
        /// Changes made in the same request.
        patch: Patch,
    },
    /// Delete the record (absent is fine).
    Delete {
        /// The record to delete.
        key: StoreKey,
    },
}

/// How a store answered a [`Commit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommitOutcome {
    /// Done.
    Applied,
    /// A create (or move target) found the key taken; nothing was written.
    Collision,
    /// The record to patch or move no longer exists; nothing was written.
    Missing,
}

/// A change of one data key that the store applies atomically against the value it holds,
/// for counters and other read-modify-write values that concurrent requests (on one
/// instance or many) must not lose. See [`SessionStore::update`].
///
/// Exhaustive for the same reason as [`Commit`].
#[derive(Clone, Debug, PartialEq)]
pub enum Update {
    /// Add `by` to the integer under the key. An absent key, or a value that is not an
    /// integer, counts as 0 (so the value becomes `by`).
    Increment {
        /// What to add (negative to subtract).
        by: i64,
    },
    /// Write `new` (remove the key when `None`) only if the key holds exactly `expected`
    /// now (`None`: the key is absent).
    CompareAndSet {
        /// The value the caller read.
        expected: Option<Value>,
        /// The value to write.
        new: Option<Value>,
    },
}

/// How a store answered an [`Update`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum UpdateOutcome {
    /// Applied; the key's value now (`None`: removed).
    Applied(Option<Value>),
    /// A [`Update::CompareAndSet`] found another value (the one given here); nothing was
    /// written.
    Conflict(Option<Value>),
    /// No live record under the store key; nothing was written.
    Missing,
}

/// What [`SessionStore::lookup`] found.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Lookup {
    /// A live record.
    Live(Record),
    /// A record the store still held but that had expired; it is not served, only reported,
    /// so the layer can tell a timeout from an unknown ID.
    Expired(Record),
    /// No record.
    Missing,
}

/// What a store does when a commit would give a principal more sessions than its limit.
///
/// Set with [`MemoryStore::max_sessions_per_principal`] (and the same method on
/// `RedisStore`, `SqliteStore`, `PostgresStore`). Only commits that add a session to a
/// principal count: a login (a [`Commit::Create`], [`Commit::Move`] or [`Commit::Patch`]
/// whose record ends up with a principal it did not have). Rotating the ID of a session that already belongs to the principal does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitPolicy {
    /// Delete the principal's oldest sessions (earliest login) to make room.
    EvictOldest,
    /// Refuse: the commit fails with [`StoreErrorKind::LimitReached`](crate::store::StoreErrorKind)
    /// and changes nothing; the layer answers the request with
    /// [`SessionLimitReached`](crate::rejection::SessionLimitReached) (409).
    Reject,
}

/// A place sessions live.
///
/// # Guarantees a store must give
///
/// * **Expiry.** `load` and `sessions_of` never return a record at or past its
///   [`Record::expires_at`], judged by the store's own clock, even before any sweeper or
///   server-side TTL has removed it; `lookup` may report it as [`Lookup::Expired`] but never
///   as live. A patch or move of such a record answers [`CommitOutcome::Missing`].
/// * **Create-only.** [`Commit::Create`] and the target of [`Commit::Move`] never overwrite a
///   live record: they answer [`CommitOutcome::Collision`] and change nothing.
/// * **Patches, not overwrites.** [`Commit::Patch`] changes only the data keys the
///   [`Patch`] names (plus the times, and the principal and flash when they are present), so
///   concurrent commits that change different keys of one session all survive. For the same
///   key the commit applied last wins.
/// * **No resurrection.** A patch or move of a record that is gone (deleted, moved away,
///   expired) answers [`CommitOutcome::Missing`] and writes nothing.
/// * **Move is all-or-nothing for the client.** After an `Applied` move the old key loads
///   nothing and the new key loads the patched record; after `Missing` or `Collision` the old
///   record is as it was.
/// * **Index.** `sessions_of` lists every live session whose principal has that ID (newest
///   `last_seen` first), and `delete_sessions_of` deletes all of them.
/// * **Limit.** With a per-principal limit configured, a commit that adds a session to a
///   principal at the limit either evicts the oldest sessions ([`LimitPolicy::EvictOldest`])
///   or fails with [`StoreErrorKind::LimitReached`](crate::store::StoreErrorKind) and writes nothing
///   ([`LimitPolicy::Reject`]).
/// * **Atomic updates.** [`SessionStore::update`] applies its [`Update`] to the value the
///   store holds at that moment, under the same lock or script as a commit, so concurrent
///   updates of one key (from any number of instances) all count. It changes no time and
///   never resurrects: a gone or expired record answers [`UpdateOutcome::Missing`].
/// * **Corrupt records.** A record the store cannot decode is reported as a
///   [`StoreErrorKind::Corrupt`](crate::store::StoreErrorKind) error (never `Unavailable`), and
///   [`Commit::Delete`] removes it like any other, so the layer can treat it as gone.
/// * **Failure.** Any other failure is a [`StoreError`] (`Unavailable`, `Timeout`, `Corrupt`),
///   returned within the store's timeout, never a panic or a hang.
///
/// The conformance suite in `store::conformance` (feature `test-util`) checks all of these;
/// run it against any store you write.
pub trait SessionStore: Send + Sync + 'static {
    /// Loads the live record filed under `key`.
    fn load(
        &self,
        key: &StoreKey,
    ) -> impl Future<Output = Result<Option<Record>, StoreError>> + Send;

    /// Like [`load`](Self::load), but reports an expired record the store still holds
    /// instead of hiding it, so the layer can report why a session ended. The layer only
    /// calls this; the default maps `load` to `Live` / `Missing`.
    fn lookup(&self, key: &StoreKey) -> impl Future<Output = Result<Lookup, StoreError>> + Send {
        async move {
            Ok(match self.load(key).await? {
                Some(record) => Lookup::Live(record),
                None => Lookup::Missing,
            })
        }
    }

    /// How many sessions the store holds, if it can tell without I/O (for
    /// [`SessionLayer::stats`](crate::SessionLayer::stats)). Default `None`.
    fn session_count(&self) -> Option<usize> {
        None
    }

    /// Applies one request's changes.
    fn commit(
        &self,
        commit: Commit,
    ) -> impl Future<Output = Result<CommitOutcome, StoreError>> + Send;

    /// Applies `update` to the data key `field` of the live record under `key`, atomically
    /// (see the guarantees above). The default answers
    /// [`StoreErrorKind::Unsupported`](crate::store::StoreErrorKind): a store that cannot update
    /// atomically must not pretend to.
    fn update(
        &self,
        key: &StoreKey,
        field: &str,
        update: Update,
    ) -> impl Future<Output = Result<UpdateOutcome, StoreError>> + Send {
        let _ = (key, field, update);
        async { Err(StoreError::from_kind(StoreErrorKind::Unsupported)) }
    }

    /// Lists the live sessions of the principal whose
    /// [`Principal::index_key`](crate::Principal::index_key) is `principal`.
    fn sessions_of(
        &self,
        principal: &str,
    ) -> impl Future<Output = Result<Vec<SessionInfo>, StoreError>> + Send;

    /// Deletes every session of the principal whose
    /// [`Principal::index_key`](crate::Principal::index_key) is `principal` ("log out everywhere") and
    /// answers how many there were.
    fn delete_sessions_of(
        &self,
        principal: &str,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The layer's store. The default [`MemoryStore`] is called directly (its work is
/// synchronous, so there is no future to box or to carry); any other store goes through
/// [`DynStore`], one boxed future per call.
#[derive(Clone)]
pub(crate) enum LayerStore {
    Memory(MemoryStore),
    Dyn(Arc<dyn DynStore>),
}

impl LayerStore {
    pub(crate) fn new<S: SessionStore>(store: S) -> Self {
        match (&store as &dyn Any).downcast_ref::<MemoryStore>() {
            Some(memory) => Self::Memory(memory.clone()),
            None => Self::Dyn(Arc::new(store)),
        }
    }

    pub(crate) async fn lookup(&self, key: &StoreKey) -> Result<Lookup, StoreError> {
        match self {
            Self::Memory(store) => Ok(store.lookup_now(key)),
            Self::Dyn(store) => store.lookup(key).await,
        }
    }

    /// Whether `key` holds a live record, when the store can tell without I/O; `true` when
    /// it cannot (a live handle then learns of a gone session from the store's notice or
    /// its deadline).
    pub(crate) fn is_live_now(&self, key: &StoreKey) -> bool {
        match self {
            Self::Memory(store) => store.is_live_now(key),
            Self::Dyn(_) => true,
        }
    }

    /// The registry of live handles the store notifies itself (`MemoryStore`, `RedisStore`,
    /// `PostgresStore`, `SqliteStore`);
    /// `None` for a store that cannot notify.
    pub(crate) fn live_registry(&self) -> Option<Arc<Registry>> {
        match self {
            Self::Memory(store) => Some(store.live_registry().clone()),
            Self::Dyn(store) => {
                let any = store.as_any();
                #[cfg(feature = "redis")]
                if let Some(redis) = any.downcast_ref::<RedisStore>() {
                    return Some(redis.live_registry());
                }
                // SQLite tells its own handles of its commits, in-process, as MemoryStore does.
                #[cfg(feature = "postgres")]
                if let Some(postgres) = any.downcast_ref::<crate::store::PostgresStore>() {
                    return Some(postgres.live_registry());
                }
                #[cfg(feature = "sqlite")]
                if let Some(sqlite) = any.downcast_ref::<crate::store::SqliteStore>() {
                    return Some(sqlite.live_registry().clone());
                }
                let _ = any;
                None
            }
        }
    }

    pub(crate) fn session_count(&self) -> Option<usize> {
        match self {
            Self::Memory(store) => Some(store.len()),
            Self::Dyn(store) => store.session_count(),
        }
    }

    /// `now`: the time on the store's own clock when the caller has just read it.
    pub(crate) async fn commit(
        &self,
        commit: Commit,
        now: Option<i64>,
    ) -> Result<CommitOutcome, StoreError> {
        match (self, now) {
            (Self::Memory(store), Some(now)) => store.commit_at(commit, now),
            (Self::Memory(store), None) => store.commit_now(commit),
            (Self::Dyn(store), _) => store.commit(commit).await,
        }
    }

    pub(crate) async fn update(
        &self,
        key: &StoreKey,
        field: &str,
        update: Update,
    ) -> Result<UpdateOutcome, StoreError> {
        match self {
            Self::Memory(store) => Ok(store.update_now(key, field, update)),
            Self::Dyn(store) => store.update(key, field, update).await,
        }
    }

    pub(crate) async fn sessions_of(
        &self,
        principal: &str,
    ) -> Result<Vec<SessionInfo>, StoreError> {
        match self {
            Self::Memory(store) => SessionStore::sessions_of(store, principal).await,
            Self::Dyn(store) => store.sessions_of(principal).await,
        }
    }

    pub(crate) async fn delete_sessions_of(&self, principal: &str) -> Result<u64, StoreError> {
        match self {
            Self::Memory(store) => SessionStore::delete_sessions_of(store, principal).await,
            Self::Dyn(store) => store.delete_sessions_of(principal).await,
        }
    }
}

/// Object-safe mirror of [`SessionStore`], so the layer and the extractors need no store type
/// parameter.
pub(crate) trait DynStore: Send + Sync + 'static {
    /// For the stores the layer knows more of (the live registry of `RedisStore` and
    /// `SqliteStore`).
    fn as_any(&self) -> &dyn Any;
    fn lookup<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, Result<Lookup, StoreError>>;
    fn session_count(&self) -> Option<usize>;
    fn commit(&self, commit: Commit) -> BoxFuture<'_, Result<CommitOutcome, StoreError>>;
    fn update<'a>(
        &'a self,
        key: &'a StoreKey,
        field: &'a str,
        update: Update,
    ) -> BoxFuture<'a, Result<UpdateOutcome, StoreError>>;
    fn sessions_of<'a>(
        &'a self,
        principal: &'a str,
    ) -> BoxFuture<'a, Result<Vec<SessionInfo>, StoreError>>;
    fn delete_sessions_of<'a>(
        &'a self,
        principal: &'a str,
    ) -> BoxFuture<'a, Result<u64, StoreError>>;
}

impl<T: SessionStore> DynStore for T {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn lookup<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, Result<Lookup, StoreError>> {
        Box::pin(SessionStore::lookup(self, key))
    }

    fn session_count(&self) -> Option<usize> {
        SessionStore::session_count(self)
    }

    fn commit(&self, commit: Commit) -> BoxFuture<'_, Result<CommitOutcome, StoreError>> {
        Box::pin(SessionStore::commit(self, commit))
    }

    fn update<'a>(
        &'a self,
        key: &'a StoreKey,
        field: &'a str,
        update: Update,
    ) -> BoxFuture<'a, Result<UpdateOutcome, StoreError>> {
        Box::pin(SessionStore::update(self, key, field, update))
    }

    fn sessions_of<'a>(
        &'a self,
        principal: &'a str,
    ) -> BoxFuture<'a, Result<Vec<SessionInfo>, StoreError>> {
        Box::pin(SessionStore::sessions_of(self, principal))
    }

    fn delete_sessions_of<'a>(
        &'a self,
        principal: &'a str,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(SessionStore::delete_sessions_of(self, principal))
    }
}
