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
            limit_holds_under_concurrent_logins,
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
    limit_holds_under_concurrent_logins(factory).await;
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

/// `load` of a key never written answers `None`, `lookup` answers `Missing`.
pub async fn load_missing(factory: &impl StoreFactory) {
    let c = ctx(factory, "load_missing", None).await;
    assert_eq!(c.load(&new_key()).await, None);
    assert_eq!(
        c.store.lookup(&new_key()).await.expect("lookup"),
        Lookup::Missing
    );
}

/// A created record loads back equal, field by field.
pub async fn create_then_load(factory: &impl StoreFactory) {
    let c = ctx(factory, "create_then_load", None).await;
    let key = new_key();
    let mut r = record(
        c.now(),
        Some("alice"),
        &[
            ("n", json!(1)),
            ("s", json!("text with \"quotes\" and ünïcödé")),
            ("nested", json!({"a": [1, 2, {"b": null}]})),
            ("", json!(false)),
        ],
    );
    r.flash_mut().push("saved".into());
    assert_eq!(c.create(key, r.clone()).await, CommitOutcome::Applied);
    assert_eq!(c.load(&key).await, Some(r.clone()), "round trip");
    assert_eq!(
        c.store.lookup(&key).await.expect("lookup"),
        Lookup::Live(r),
        "lookup agrees with load"
    );
}

/// A create on a live key changes nothing and answers `Collision`.
pub async fn create_is_create_only(factory: &impl StoreFactory) {
    let c = ctx(factory, "create_is_create_only", None).await;
    let key = new_key();
    let first = record(c.now(), None, &[("who", json!("first"))]);
    assert_eq!(c.create(key, first.clone()).await, CommitOutcome::Applied);
    let second = record(c.now(), Some("mallory"), &[("who", json!("second"))]);
    assert_eq!(c.create(key, second).await, CommitOutcome::Collision);
    assert_eq!(
        c.load(&key).await,
        Some(first),
        "the first record is untouched"
    );
    assert!(
        c.keys_of("mallory").await.is_empty(),
        "a refused create is not indexed"
    );
}

/// Many tasks patching different keys of one session at once: every key survives.
pub async fn concurrent_patches_of_different_keys_all_survive(factory: &impl StoreFactory) {
    let c = ctx(factory, "concurrent_different_keys", None).await;
    let key = c.session_of(None).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..TASKS {
        let store = c.store.clone();
        let patch = set(c.now(), &format!("k{i}"), json!(i));
        tasks.spawn(async move { store.commit(Commit::Patch { key, patch }).await });
    }
    while let Some(done) = tasks.join_next().await {
        assert_eq!(done.expect("task").expect("patch"), CommitOutcome::Applied);
    }
    let data = c.load(&key).await.expect("live").data().clone();
    for i in 0..TASKS {
        assert_eq!(data.get(&format!("k{i}")), Some(&json!(i)), "key k{i} lost");
    }
}

/// Sequential writes to one key: the last applied wins; a remove after a set removes.
/// Concurrent writes: the survivor is one of the values written, whole.
pub async fn same_key_last_writer_wins(factory: &impl StoreFactory) {
    let c = ctx(factory, "same_key_last_writer_wins", None).await;
    let key = c.session_of(None).await;
    c.patch(key, set(c.now(), "k", json!("one"))).await;
    c.patch(key, set(c.now(), "k", json!("two"))).await;
    let data = c.load(&key).await.expect("live").data().clone();
    assert_eq!(data.get("k"), Some(&json!("two")));

    let mut remove = refresh(c.now());
    remove.remove("k".into());
    assert_eq!(c.patch(key, remove).await, CommitOutcome::Applied);
    assert!(!c.load(&key).await.expect("live").data().contains_key("k"));

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..TASKS {
        let store = c.store.clone();
        let patch = set(c.now(), "k", json!({"writer": i, "pad": "x".repeat(i)}));
        tasks.spawn(async move { store.commit(Commit::Patch { key, patch }).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task").expect("patch");
    }
    let value = c.load(&key).await.expect("live").data()["k"].clone();
    let writer = value["writer"].as_u64().expect("a whole value") as usize;
    assert_eq!(value, json!({"writer": writer, "pad": "x".repeat(writer)}));
}

/// A patch to a deleted record answers `Missing` and does not bring it back.
pub async fn patch_never_resurrects(factory: &impl StoreFactory) {
    let c = ctx(factory, "patch_never_resurrects", None).await;
    let key = c.session_of(Some("alice")).await;
    assert_eq!(
        c.commit(Commit::Delete { key }).await,
        CommitOutcome::Applied
    );
    assert_eq!(
        c.patch(key, set(c.now(), "k", json!(1))).await,
        CommitOutcome::Missing
    );
    assert_eq!(
        c.patch(key, refresh(c.now())).await,
        CommitOutcome::Missing,
        "a bare refresh does not resurrect either"
    );
    assert_eq!(c.load(&key).await, None);
    assert!(c.keys_of("alice").await.is_empty());
}

/// Patches racing a delete: once the delete is done the session stays gone.
pub async fn concurrent_patch_and_delete_never_resurrects(factory: &impl StoreFactory) {
    let c = ctx(factory, "concurrent_patch_and_delete", None).await;
    let key = c.session_of(None).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..TASKS {
        let store = c.store.clone();
        let commit = if i == TASKS / 2 {
            Commit::Delete { key }
        } else {
            Commit::Patch {
                key,
                patch: set(c.now(), &format!("k{i}"), json!(i)),
            }
        };
        tasks.spawn(async move { store.commit(commit).await });
    }
    while let Some(done) = tasks.join_next().await {
        let outcome = done.expect("task").expect("commit");
        assert!(
            matches!(outcome, CommitOutcome::Applied | CommitOutcome::Missing),
            "{outcome:?}"
        );
    }
    assert_eq!(c.load(&key).await, None, "the delete is final");
}

/// A move files the patched record under the new key; the old key is dead for loads and
/// patches, and the principal's index follows.
pub async fn move_keeps_data_and_kills_old_key(factory: &impl StoreFactory) {
    let c = ctx(factory, "move_keeps_data", None).await;
    let from = new_key();
    let created = record(c.now(), None, &[("cart", json!(["tea"]))]);
    c.create(from, created.clone()).await;
    c.clock.advance(time::Duration::seconds(5));

    let to = new_key();
    let mut patch = login(c.now(), "alice");
    patch.set("step".into(), json!(2));
    let outcome = c
        .commit(Commit::Move {
            from,
            to,
            patch: patch.clone(),
        })
        .await;
    assert_eq!(outcome, CommitOutcome::Applied);
    assert_eq!(c.load(&from).await, None, "old key is dead");
    let mut expect = created;
    patch.apply(&mut expect);
    assert_eq!(c.load(&to).await, Some(expect), "data kept, patch applied");
    assert_eq!(
        c.patch(from, set(c.now(), "late", json!(1))).await,
        CommitOutcome::Missing,
        "a late patch of the old key goes nowhere"
    );
    assert_eq!(c.keys_of("alice").await, BTreeSet::from([to]));

    // Rotating again within the principal keeps exactly one indexed session.
    let again = new_key();
    let outcome = c
        .commit(Commit::Move {
            from: to,
            to: again,
            patch: refresh(c.now()),
        })
        .await;
    assert_eq!(outcome, CommitOutcome::Applied);
    assert_eq!(c.keys_of("alice").await, BTreeSet::from([again]));
}

/// A move onto a live key answers `Collision` and changes neither record.
pub async fn move_onto_taken_key_changes_nothing(factory: &impl StoreFactory) {
    let c = ctx(factory, "move_collision", None).await;
    let from = new_key();
    let to = new_key();
    let a = record(c.now(), Some("alice"), &[("who", json!("a"))]);
    let b = record(c.now(), Some("bob"), &[("who", json!("b"))]);
    c.create(from, a.clone()).await;
    c.create(to, b.clone()).await;
    let mut patch = login(c.now() + 1, "carol");
    patch.set("who".into(), json!("changed"));
    let outcome = c.commit(Commit::Move { from, to, patch }).await;
    assert_eq!(outcome, CommitOutcome::Collision);
    assert_eq!(c.load(&from).await, Some(a), "source untouched");
    assert_eq!(c.load(&to).await, Some(b), "target untouched");
    assert!(c.keys_of("carol").await.is_empty());
    assert_eq!(c.keys_of("alice").await, BTreeSet::from([from]));
}

/// Moving a session that is gone answers `Missing` and creates nothing.
pub async fn move_of_missing_session_is_missing(factory: &impl StoreFactory) {
    let c = ctx(factory, "move_missing", None).await;
    let to = new_key();
    let outcome = c
        .commit(Commit::Move {
            from: new_key(),
            to,
            patch: login(c.now(), "alice"),
        })
        .await;
    assert_eq!(outcome, CommitOutcome::Missing);
    assert_eq!(c.load(&to).await, None);
    assert!(c.keys_of("alice").await.is_empty());
}

/// Delete removes the record; deleting an absent key is fine.
pub async fn delete_is_idempotent(factory: &impl StoreFactory) {
    let c = ctx(factory, "delete", None).await;
    let key = c.session_of(Some("alice")).await;
    let other = c.session_of(Some("alice")).await;
    for round in ["first", "again"] {
        assert_eq!(
            c.commit(Commit::Delete { key }).await,
            CommitOutcome::Applied,
            "{round}"
        );
        assert_eq!(c.load(&key).await, None, "{round}");
    }
    assert!(c.load(&other).await.is_some(), "other sessions untouched");
    assert_eq!(c.keys_of("alice").await, BTreeSet::from([other]));
}

/// Past `expires_at` (by the store's clock) a record is dead everywhere, and its key may
/// be created afresh.
pub async fn expired_records_are_never_returned(factory: &impl StoreFactory) {
    let c = ctx(factory, "expiry", None).await;
    let key = c.session_of(Some("alice")).await;
    let moved_from = c.session_of(Some("alice")).await;
    c.clock.advance(time::Duration::seconds(TTL - 1));
    assert!(c.load(&key).await.is_some(), "alive one second before");
    c.clock.advance(time::Duration::seconds(1));
    assert_eq!(c.load(&key).await, None, "dead at expires_at");
    let lookup = c.store.lookup(&moved_from).await.expect("lookup");
    assert!(
        matches!(lookup, Lookup::Expired(_) | Lookup::Missing),
        "lookup reports, never serves, an expired record: {lookup:?}"
    );
    assert_eq!(
        c.patch(key, set(c.now(), "k", json!(1))).await,
        CommitOutcome::Missing
    );
    let to = new_key();
    let outcome = c
        .commit(Commit::Move {
            from: moved_from,
            to,
            patch: refresh(c.now()),
        })
        .await;
    assert_eq!(outcome, CommitOutcome::Missing);
    assert_eq!(c.load(&to).await, None);
    assert!(c.keys_of("alice").await.is_empty(), "not listed");
    assert_eq!(
        c.store.delete_sessions_of(&alice()).await.expect("delete"),
        0,
        "not counted"
    );
    let fresh = record(c.now(), None, &[("new", json!(true))]);
    assert_eq!(c.create(key, fresh.clone()).await, CommitOutcome::Applied);
    assert_eq!(c.load(&key).await, Some(fresh));
}

/// `sessions_of` lists exactly the live sessions of the principal, newest first, and
/// follows logouts.
pub async fn sessions_of_lists_live_sessions(factory: &impl StoreFactory) {
    let c = ctx(factory, "sessions_of", None).await;
    let a1 = c.session_of(Some("alice")).await;
    c.clock.advance(time::Duration::seconds(10));
    let a2 = c.session_of(Some("alice")).await;
    let bob = c.session_of(Some("bob")).await;
    c.session_of(None).await;

    let list = c.store.sessions_of(&alice()).await.expect("sessions_of");
    let keys: Vec<StoreKey> = list.iter().map(|i| i.key()).collect();
    assert_eq!(keys, vec![a2, a1], "newest last_seen first");
    assert_eq!(list[0].principal(), Some("alice"));
    assert_eq!(list[0].user_agent(), Some("conformance/1"));
    assert_eq!(list[1].created().unix_timestamp(), T0);
    assert_eq!(c.keys_of("bob").await, BTreeSet::from([bob]));
    assert!(c.keys_of("nobody").await.is_empty());

    let mut logout = refresh(c.now());
    logout.replace_principal(None);
    assert_eq!(c.patch(a1, logout).await, CommitOutcome::Applied);
    assert_eq!(c.keys_of("alice").await, BTreeSet::from([a2]), "logged out");
    c.patch(a1, login(c.now(), "bob")).await;
    assert_eq!(
        c.keys_of("bob").await,
        BTreeSet::from([a1, bob]),
        "re-owned"
    );
}

/// `delete_sessions_of` deletes every session of the principal and nobody else's.
pub async fn delete_sessions_of_logs_out_everywhere(factory: &impl StoreFactory) {
    let c = ctx(factory, "delete_sessions_of", None).await;
    let a1 = c.session_of(Some("alice")).await;
    let a2 = c.session_of(Some("alice")).await;
    let bob = c.session_of(Some("bob")).await;
    let anon = c.session_of(None).await;
    let n = c.store.delete_sessions_of(&alice()).await.expect("delete");
    assert_eq!(n, 2);
    assert_eq!(c.load(&a1).await, None);
    assert_eq!(c.load(&a2).await, None);
    assert!(c.load(&bob).await.is_some());
    assert!(c.load(&anon).await.is_some());
    assert!(c.keys_of("alice").await.is_empty());
    assert_eq!(
        c.store.delete_sessions_of(&alice()).await.expect("again"),
        0
    );
    let back = c.session_of(Some("alice")).await;
    assert_eq!(
        c.keys_of("alice").await,
        BTreeSet::from([back]),
        "can log in again"
    );
}

fn is_limit(result: Result<CommitOutcome, crate::StoreError>) -> bool {
    matches!(result, Err(e) if e.kind() == StoreErrorKind::LimitReached)
}

/// `Reject`: the login past the limit fails with `LimitReached` and writes nothing;
/// rotations within the principal and logins after a logout still work.
pub async fn limit_reject_refuses_and_writes_nothing(factory: &impl StoreFactory) {
    let c = ctx(factory, "limit_reject", Some((2, LimitPolicy::Reject))).await;
    let a1 = c.session_of(Some("alice")).await;
    let a2 = c.session_of(Some("alice")).await;

    let third = new_key();
    let result = c
        .store
        .commit(Commit::Create {
            key: third,
            record: record(c.now(), Some("alice"), &[]),
        })
        .await;
    assert!(is_limit(result), "create past the limit");
    assert_eq!(c.load(&third).await, None, "nothing written");

    let anon = new_key();
    let before = record(c.now(), None, &[("cart", json!(1))]);
    c.create(anon, before.clone()).await;
    let to = new_key();
    let result = c
        .store
        .commit(Commit::Move {
            from: anon,
            to,
            patch: login(c.now(), "alice"),
        })
        .await;
    assert!(is_limit(result), "login by move past the limit");
    assert_eq!(c.load(&anon).await, Some(before), "old session untouched");
    assert_eq!(c.load(&to).await, None);

    let rotated = new_key();
    let outcome = c
        .commit(Commit::Move {
            from: a1,
            to: rotated,
            patch: refresh(c.now()),
        })
        .await;
    assert_eq!(
        outcome,
        CommitOutcome::Applied,
        "rotation is not a new session"
    );
    assert_eq!(c.keys_of("alice").await, BTreeSet::from([rotated, a2]));
    c.session_of(Some("bob")).await;

    c.commit(Commit::Delete { key: a2 }).await;
    c.session_of(Some("alice")).await;
    c.clock.advance(time::Duration::seconds(TTL));
    c.session_of(Some("alice")).await;
    c.session_of(Some("alice")).await;
    assert_eq!(
        c.keys_of("alice").await.len(),
        2,
        "expired sessions free places"
    );
}

/// `EvictOldest`: a login past the limit deletes the earliest logged-in sessions.
pub async fn limit_evict_oldest_makes_room(factory: &impl StoreFactory) {
    let c = ctx(factory, "limit_evict", Some((2, LimitPolicy::EvictOldest))).await;
    let a1 = c.session_of(Some("alice")).await;
    c.clock.advance(time::Duration::seconds(1));
    let a2 = c.session_of(Some("alice")).await;
    c.clock.advance(time::Duration::seconds(1));
    let a3 = c.session_of(Some("alice")).await;
    assert_eq!(c.load(&a1).await, None, "oldest evicted");
    assert_eq!(c.keys_of("alice").await, BTreeSet::from([a2, a3]));

    c.clock.advance(time::Duration::seconds(1));
    let anon = c.session_of(None).await;
    let to = new_key();
    let outcome = c
        .commit(Commit::Move {
            from: anon,
            to,
            patch: login(c.now(), "alice"),
        })
        .await;
    assert_eq!(outcome, CommitOutcome::Applied);
    assert_eq!(c.load(&a2).await, None, "next oldest evicted by a login");
    assert_eq!(c.keys_of("alice").await, BTreeSet::from([a3, to]));
}

/// Many concurrent logins of one principal under `Reject`: exactly `limit` succeed.
pub async fn limit_holds_under_concurrent_logins(factory: &impl StoreFactory) {
    const LIMIT: usize = 3;
    let c = ctx(
        factory,
        "limit_concurrent",
        Some((LIMIT, LimitPolicy::Reject)),
    )
    .await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let store = c.store.clone();
        let commit = Commit::Create {
            key: new_key(),
            record: record(c.now(), Some("alice"), &[]),
        };
        tasks.spawn(async move { store.commit(commit).await });
    }
    let mut applied = 0;
    while let Some(done) = tasks.join_next().await {
        match done.expect("task") {
            Ok(CommitOutcome::Applied) => applied += 1,
            other => assert!(is_limit(other.clone()), "{other:?}"),
        }
    }
    assert_eq!(applied, LIMIT);
    assert_eq!(c.keys_of("alice").await.len(), LIMIT);
}
