//! The store conformance suite: one set of checks every [`SessionStore`] must pass, so a
//! store behaves the same behind the layer whatever keeps the bytes.
//!
//! Each check is an `async fn` taking a [`StoreFactory`];
//! [`store_conformance_tests!`](crate::store_conformance_tests) turns the whole list into
//! `#[tokio::test]`s, and [`run_all`] runs it in one go (for a backend that is expensive to
//! start, such as a Redis Cluster).
//!
//! The checks drive time with a [`ManualClock`]: a store must read "now" from the clock the
//! [`Setup`] hands it, for expiry decisions it makes itself (server-side TTLs may run on real
//! time; the store re-checks [`Record::expires_at`] against its clock).
//!
//! # Example
//!
//! ```
//! use axum_tessera::store::conformance::Setup;
//! use axum_tessera::store::MemoryStore;
//!
//! fn factory() -> impl axum_tessera::store::conformance::StoreFactory {
//!     |setup: Setup| async move {
//!         let store = MemoryStore::new().with_clock(setup.clock());
//!         match setup.limit() {
//!             Some((max, policy)) => store.max_sessions_per_principal(max, policy),
//!             None => store,
//!         }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! axum_tessera::store::conformance::run_all(&factory()).await;
//! # }
//! ```
//!
//! In a test file, `axum_tessera::store_conformance_tests!(factory());` generates one
//! `#[tokio::test]` per check (the crate needs `tokio` with the `macros` and
//! `rt-multi-thread` features as a dev-dependency).

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::clock::{Clock, ManualClock};
use crate::error::StoreErrorKind;
use crate::principal::Principal;
use crate::record::{Patch, Record};
use crate::store::{Commit, CommitOutcome, LimitPolicy, Lookup, SessionStore};
use crate::token::{SessionId, StoreKey};

mod index;
mod records;
mod updates;

pub use index::*;
pub use records::*;
pub use updates::*;

/// Where every check's clock starts (Unix seconds).
const T0: i64 = 1_700_000_000;
/// Lifetime of the records the checks create.
const TTL: i64 = 3600;
/// Tasks racing on one session in the concurrency checks.
const TASKS: usize = 32;

/// What a check asks of the store it gets.
#[derive(Clone, Debug)]
pub struct Setup {
    clock: ManualClock,
    limit: Option<(usize, LimitPolicy)>,
    namespace: String,
}

impl Setup {
    /// The clock the store must read "now" from.
    pub fn clock(&self) -> ManualClock {
        self.clock.clone()
    }

    /// The per-principal limit to configure, if the check needs one.
    pub fn limit(&self) -> Option<(usize, LimitPolicy)> {
        self.limit
    }

    /// A name unique to the check: stores sharing one backend use it as a key prefix so
    /// checks running in parallel do not see each other's sessions.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
}

/// Builds a fresh, empty store for one check.
///
/// Implemented for any `Fn(Setup) -> impl Future<Output = impl SessionStore>`.
pub trait StoreFactory: Send + Sync {
    /// The store under test.
    type Store: SessionStore;

    /// A store configured as `setup` says, sharing nothing with stores made before.
    fn store(&self, setup: Setup) -> impl Future<Output = Self::Store> + Send;
}

impl<F, Fut, S> StoreFactory for F
where
    F: Fn(Setup) -> Fut + Send + Sync,
    Fut: Future<Output = S> + Send,
    S: SessionStore,
{
    type Store = S;

    fn store(&self, setup: Setup) -> impl Future<Output = S> + Send {
        self(setup)
    }
}

/// Generates one `#[tokio::test]` per conformance check, each with a store from `$factory`
/// (an expression evaluating to a [`StoreFactory`], evaluated once per test).
///
/// ```no_run
/// use axum_tessera::store::{conformance::Setup, MemoryStore};
///
/// axum_tessera::store_conformance_tests!(|setup: Setup| async move {
///     let store = MemoryStore::new().with_clock(setup.clock());
///     match setup.limit() {
///         Some((max, policy)) => store.max_sessions_per_principal(max, policy),
///         None => store,
///     }
/// });
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! store_conformance_tests {
    ($factory:expr) => {
        $crate::store_conformance_tests!(@each $factory;
            load_missing,
            create_then_load,
            remember_and_consent_survive_patches_and_moves,
            create_is_create_only,
            concurrent_patches_of_different_keys_all_survive,
            same_key_last_writer_wins,
            patch_never_resurrects,
            concurrent_patch_and_delete_never_resurrects,
            move_keeps_data_and_kills_old_key,
            move_onto_taken_key_changes_nothing,
            move_of_missing_session_is_missing,
            delete_is_idempotent,
            expired_records_are_never_returned,
            sessions_of_lists_live_sessions,
            delete_sessions_of_logs_out_everywhere,
            limit_reject_refuses_and_writes_nothing,
            limit_evict_oldest_makes_room,
            limit_counts_a_patch_that_logs_in,
            limit_holds_under_concurrent_logins,
            concurrent_increments_all_count,
            compare_and_set_refuses_a_changed_value,
            update_never_resurrects,
        );
    };
    (@each $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let factory = $factory;
                $crate::store::conformance::$name(&factory).await;
            }
        )*
    };
}

/// Runs every check in turn.
///
/// # Panics
///
/// At the first check the store fails, naming it.
pub async fn run_all(factory: &impl StoreFactory) {
    load_missing(factory).await;
    create_then_load(factory).await;
    remember_and_consent_survive_patches_and_moves(factory).await;
    create_is_create_only(factory).await;
    concurrent_patches_of_different_keys_all_survive(factory).await;
    same_key_last_writer_wins(factory).await;
    patch_never_resurrects(factory).await;
    concurrent_patch_and_delete_never_resurrects(factory).await;
    move_keeps_data_and_kills_old_key(factory).await;
    move_onto_taken_key_changes_nothing(factory).await;
    move_of_missing_session_is_missing(factory).await;
    delete_is_idempotent(factory).await;
    expired_records_are_never_returned(factory).await;
    sessions_of_lists_live_sessions(factory).await;
    delete_sessions_of_logs_out_everywhere(factory).await;
    limit_reject_refuses_and_writes_nothing(factory).await;
    limit_evict_oldest_makes_room(factory).await;
    limit_counts_a_patch_that_logs_in(factory).await;
    limit_holds_under_concurrent_logins(factory).await;
    concurrent_increments_all_count(factory).await;
    compare_and_set_refuses_a_changed_value(factory).await;
    update_never_resurrects(factory).await;
}

struct Ctx<S> {
    store: Arc<S>,
    clock: ManualClock,
}

async fn ctx<F: StoreFactory>(
    factory: &F,
    name: &str,
    limit: Option<(usize, LimitPolicy)>,
) -> Ctx<F::Store> {
    let clock = ManualClock::new(T0);
    let namespace = format!("{name}-{}", SessionId::generate().short());
    let store = factory
        .store(Setup {
            clock: clock.clone(),
            limit,
            namespace,
        })
        .await;
    Ctx {
        store: Arc::new(store),
        clock,
    }
}

fn new_key() -> StoreKey {
    SessionId::generate().store_key()
}

/// The index key of the principal most checks use.
fn alice() -> String {
    Principal::user("alice").index_key()
}

/// A record created now, with `principal` (if any), a user agent, a client binding and `data`.
fn record(now: i64, principal: Option<&str>, data: &[(&str, Value)]) -> Record {
    let mut r = Record::new(now, now + TTL);
    r.set_principal(principal.map(|p| Principal::user(p).with_scopes(["read"])));
    r.set_user_agent(Some("conformance/1"));
    // A store that drops the binding would make every bound session look stolen.
    r.set_binding(
        Some("5e55".repeat(16)),
        Some(std::net::IpAddr::from([203, 0, 113, 5])),
    );
    for (k, v) in data {
        r.data_mut().insert((*k).to_owned(), v.clone());
    }
    r
}

fn refresh(now: i64) -> Patch {
    Patch::new(now, now + TTL)
}

fn set(now: i64, key: &str, value: Value) -> Patch {
    let mut p = refresh(now);
    p.set(key.to_owned(), value);
    p
}

fn login(now: i64, principal: &str) -> Patch {
    let mut p = refresh(now);
    p.replace_principal(Some(Principal::user(principal)));
    p
}

impl<S: SessionStore> Ctx<S> {
    fn now(&self) -> i64 {
        self.clock.now()
    }

    async fn load(&self, key: &StoreKey) -> Option<Record> {
        self.store.load(key).await.expect("load")
    }

    async fn commit(&self, commit: Commit) -> CommitOutcome {
        self.store.commit(commit).await.expect("commit")
    }

    async fn create(&self, key: StoreKey, record: Record) -> CommitOutcome {
        self.commit(Commit::Create { key, record }).await
    }

    async fn patch(&self, key: StoreKey, patch: Patch) -> CommitOutcome {
        self.commit(Commit::Patch { key, patch }).await
    }

    /// Creates a session of `principal` now and returns its key.
    async fn session_of(&self, principal: Option<&str>) -> StoreKey {
        let key = new_key();
        let outcome = self.create(key, record(self.now(), principal, &[])).await;
        assert_eq!(outcome, CommitOutcome::Applied, "creating a session");
        key
    }

    async fn keys_of(&self, principal: &str) -> BTreeSet<StoreKey> {
        self.store
            .sessions_of(&Principal::user(principal).index_key())
            .await
            .expect("sessions_of")
            .iter()
            .map(|i| i.key())
            .collect()
    }
}
