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

mod memory;

use std::future::Future;
use std::pin::Pin;

pub use memory::MemoryStore;

use crate::error::StoreError;
use crate::record::{Patch, Record, SessionInfo};
use crate::token::StoreKey;

/// What one request's commit asks a store to do, in one call.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
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

/// A place sessions live.
///
/// # Guarantees a store must give
///
/// * `load` never returns a record at or past its [`Record::expires_at`].
/// * Commits are patches: concurrent commits that change different data keys of one session
///   both survive; for the same key the last writer wins.
/// * Creates are create-only and patches never resurrect a deleted record (see [`Commit`]).
/// * `sessions_of` / `delete_sessions_of` see every live session whose principal has that ID.
///
/// The conformance suite in `store::conformance` (feature `test-util`) checks all of these.
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

    /// Lists the live sessions of the principal with ID `principal`.
    fn sessions_of(
        &self,
        principal: &str,
    ) -> impl Future<Output = Result<Vec<SessionInfo>, StoreError>> + Send;

    /// Deletes every session of the principal with ID `principal` ("log out everywhere") and
    /// answers how many there were.
    fn delete_sessions_of(
        &self,
        principal: &str,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Object-safe mirror of [`SessionStore`], so the layer and the extractors need no store type
/// parameter.
pub(crate) trait DynStore: Send + Sync + 'static {
    fn lookup<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, Result<Lookup, StoreError>>;
    fn session_count(&self) -> Option<usize>;
    fn commit(&self, commit: Commit) -> BoxFuture<'_, Result<CommitOutcome, StoreError>>;
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
    fn lookup<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, Result<Lookup, StoreError>> {
        Box::pin(SessionStore::lookup(self, key))
    }

    fn session_count(&self) -> Option<usize> {
        SessionStore::session_count(self)
    }

    fn commit(&self, commit: Commit) -> BoxFuture<'_, Result<CommitOutcome, StoreError>> {
        Box::pin(SessionStore::commit(self, commit))
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
