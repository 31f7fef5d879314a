//! `SqliteStore` on real SQLite files: the conformance suite, two store instances (two pools)
//! racing on one file, a row broken behind the store's back, a held write lock, the sweep,
//! the statements each request costs, and live handles told of the store's commits.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum_tessera::__fuzz::SessionId;
use axum_tessera::clock::ManualClock;
use axum_tessera::live::{EndReason, LiveEvent, LiveSession};
use axum_tessera::store::conformance::{Setup, StoreFactory};
use axum_tessera::store::{
    Commit, CommitOutcome, LimitPolicy, Record, SessionStore, SqliteStore, StoreErrorKind, Update,
    UpdateOutcome,
};
use axum_tessera::{ConfigError, SessionConfig, SessionLayer};
use http::StatusCode;
use sqlx::{Connection as _, Executor as _, SqliteConnection};
use tokio::sync::mpsc;

use crate::support::sql::{self, api_app, log_in, request, table_for};
use crate::support::sqlite::SqliteFile;
use crate::support::statements;

const T0: i64 = 1_700_000_000;

async fn store_on(file: &SqliteFile) -> SqliteStore {
    let store = SqliteStore::new(file.pool().await);
    store.migrate().await.expect("migrate");
    store
}

/// One database file per factory; each check gets its own table in it.
fn factory() -> impl StoreFactory {
    let file = Arc::new(SqliteFile::new());
    move |setup: Setup| {
        let file = file.clone();
        async move {
            let store = SqliteStore::new(file.pool().await)
                .table(&table_for(setup.namespace()))
                .expect("a valid table name")
                .with_clock(setup.clock());
            let store = match setup.limit() {
                Some((max, policy)) => store.max_sessions_per_principal(max, policy),
                None => store,
            };
            store.migrate().await.expect("migrate");
            store
        }
    }
}

axum_tessera::store_conformance_tests!(factory());

#[tokio::test]
async fn migrate_is_idempotent_and_table_names_are_checked() {
    let file = SqliteFile::new();
    let store = SqliteStore::new(file.pool().await)
        .table("custom_sessions")
        .expect("valid");
    store.migrate().await.expect("first");
    store.migrate().await.expect("again");
    let app = api_app(store);
    let token = log_in(&app).await;
    assert_eq!(request(&app, "GET", "/me", Some(&token)).await.1, "alice");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM custom_sessions")
        .fetch_one(&file.pool().await)
        .await
        .unwrap();
    assert_eq!(rows, 1);

    let refused = SqliteStore::new(file.pool().await).table("sessions; DROP TABLE x");
    assert!(matches!(refused, Err(ConfigError::InvalidTableName { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pools_on_one_file_lose_no_key_of_one_session() {
    let file = SqliteFile::new();
    let timeout = Duration::from_secs(20);
    let a = store_on(&file).await.command_timeout(timeout);
    let b = SqliteStore::new(file.pool().await).command_timeout(timeout);
    sql::two_instances_lose_no_key(api_app(a), api_app(b), 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pools_on_one_file_lose_no_increment() {
    let file = SqliteFile::new();
    let timeout = Duration::from_secs(20);
    let a = store_on(&file).await.command_timeout(timeout);
    let b = SqliteStore::new(file.pool().await).command_timeout(timeout);
    sql::increments_all_count(a, b, 400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pools_on_one_file_lose_no_compare_and_set() {
    let file = SqliteFile::new();
    let timeout = Duration::from_secs(20);
    let a = store_on(&file).await.command_timeout(timeout);
    let b = SqliteStore::new(file.pool().await).command_timeout(timeout);
    sql::compare_and_set_loses_no_update(a, b, 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_row_counts_as_gone() {
    struct Case {
        name: &'static str,
        damage: &'static str,
    }
    let cases = [
        Case {
            name: "data is not JSON",
            damage: "data = '{\"cart\": '",
        },
        Case {
            name: "data is not an object",
            damage: "data = '[1, 2]'",
        },
        Case {
            name: "a time is text",
            damage: "created = 'yesterday'",
        },
        Case {
            name: "the principal has the wrong shape",
            damage: "principal_data = '{\"kind\": 5}'",
        },
        Case {
            name: "the bound IP is not an address",
            damage: "bound_ip = 'not an address'",
        },
    ];
    for case in cases {
        eprintln!("case: {}", case.name);
        let file = SqliteFile::new();
        let store = store_on(&file).await;
        let pool = file.pool().await;
        sql::corrupt_row_counts_as_gone(store, |key| async move {
            let sql = format!("UPDATE tessera_sessions SET {} WHERE key = ?1", case.damage);
            let done = sqlx::query(&sql)
                .bind(key.as_bytes().to_vec())
                .execute(&pool)
                .await
                .expect("raw update");
            assert_eq!(done.rows_affected(), 1, "{}", case.name);
        })
        .await;
    }
}

/// While another connection holds the write lock, writes fail with `Timeout` within the
/// command timeout, and none of them is applied once the lock is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_write_lock_times_out_and_nothing_is_applied_later() {
    let file = SqliteFile::new();
    let store = store_on(&file)
        .await
        .command_timeout(Duration::from_millis(200));
    let key = SessionId::generate().store_key();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let created = store
        .commit(Commit::Create {
            key,
            record: Record::new(now, now + 3600),
        })
        .await
        .unwrap();
    assert_eq!(created, CommitOutcome::Applied);

    let mut holder = SqliteConnection::connect_with(&file.options())
        .await
        .unwrap();
    holder.execute("BEGIN IMMEDIATE").await.unwrap();
    let mut kinds = Vec::new();
    for _ in 0..5 {
        let result = store.update(&key, "n", Update::Increment { by: 1 }).await;
        kinds.push(result.map_err(|e| e.kind()));
    }
    let deleted = store.commit(Commit::Delete { key }).await;
    kinds.push(
        deleted
            .map(|_| UpdateOutcome::Missing)
            .map_err(|e| e.kind()),
    );
    eprintln!("writes under a held lock: {kinds:?}");
    assert!(
        kinds.iter().all(|k| *k == Err(StoreErrorKind::Timeout)),
        "{kinds:?}"
    );
    holder.execute("ROLLBACK").await.unwrap();

    // Give the connection workers time to run whatever they still held.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let record = store
        .load(&key)
        .await
        .unwrap()
        .expect("the delete was not applied");
    assert_eq!(
        record.data().get("n"),
        None,
        "no increment applied after its timeout"
    );
    assert_eq!(
        store
            .update(&key, "n", Update::Increment { by: 1 })
            .await
            .unwrap(),
        UpdateOutcome::Applied(Some(serde_json::json!(1))),
        "writes work again"
    );
}

#[tokio::test]
async fn sweep_deletes_expired_rows_through_the_expiry_index() {
    let file = SqliteFile::new();
    let clock = ManualClock::new(T0);
    let store = store_on(&file).await.with_clock(clock.clone());
    for (n, ttl) in [(3, 10), (2, 100)] {
        for _ in 0..n {
            let outcome = store
                .commit(Commit::Create {
                    key: SessionId::generate().store_key(),
                    record: Record::new(T0, T0 + ttl),
                })
                .await
                .unwrap();
            assert_eq!(outcome, CommitOutcome::Applied);
        }
    }
    clock.set(T0 + 50);
    assert_eq!(store.sweep().await.unwrap(), 3);
    assert_eq!(store.sweep().await.unwrap(), 0, "nothing left to sweep");
    let pool = file.pool().await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM tessera_sessions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 2);
    let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(
        "EXPLAIN QUERY PLAN SELECT key FROM tessera_sessions WHERE expires_at <= 1 LIMIT 1000",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let plan: Vec<&str> = plan.iter().map(|row| row.3.as_str()).collect();
    assert!(
        plan.iter()
            .any(|step| step.contains("INDEX tessera_sessions_expires_at")),
        "{plan:?}"
    );

    let sweeper = store.spawn_sweeper(Duration::from_millis(20));
    clock.set(T0 + 100);
    let mut left = -1;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        left = sqlx::query_scalar("SELECT count(*) FROM tessera_sessions")
            .fetch_one(&pool)
            .await
            .unwrap();
        if left == 0 {
            break;
        }
    }
    assert_eq!(left, 0, "the sweeper removes them");
    drop(store);
    tokio::time::timeout(Duration::from_secs(5), sweeper)
        .await
        .expect("the sweeper ends with the store")
        .unwrap();
}

/// Statements per request, as sqlx logs them (BEGIN IMMEDIATE and COMMIT are not logged:
/// every write is one transaction around the statements counted here): a load is one
/// statement, and so is every commit without a per-principal limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_per_request() {
    const N: usize = 20;
    statements::install();
    let file = SqliteFile::new();
    store_on(&file).await;
    let app = api_app(SqliteStore::new(file.logged_pool(statements::LEVEL).await));
    let token = log_in(&app).await;
    let (mut rotating, mut leaving) = (Vec::new(), Vec::new());
    for _ in 0..N {
        rotating.push(log_in(&app).await);
        leaving.push(Some(log_in(&app).await));
    }

    struct Case {
        name: &'static str,
        method: &'static str,
        uri: &'static str,
        tokens: Vec<Option<String>>,
        expect: Vec<(&'static str, usize)>,
    }
    let same = |t: &str| vec![Some(t.to_owned()); N];
    let cases = [
        Case {
            name: "read (load only)",
            method: "GET",
            uri: "/me",
            tokens: same(&token),
            expect: vec![("SELECT", N)],
        },
        Case {
            name: "write (load + patch commit)",
            method: "POST",
            uri: "/set/k",
            tokens: same(&token),
            expect: vec![("SELECT", N), ("UPDATE", N)],
        },
        Case {
            name: "login without a session (create)",
            method: "POST",
            uri: "/login",
            tokens: vec![None; N],
            expect: vec![("INSERT", N)],
        },
        Case {
            name: "login rotating a session (load + move)",
            method: "POST",
            uri: "/login",
            tokens: rotating.into_iter().map(Some).collect(),
            expect: vec![("SELECT", N), ("UPDATE", N)],
        },
        Case {
            name: "logout (load + delete)",
            method: "POST",
            uri: "/logout",
            tokens: leaving,
            expect: vec![("DELETE", N), ("SELECT", N)],
        },
        Case {
            name: "route that never touches the session",
            method: "GET",
            uri: "/health",
            tokens: same(&token),
            expect: vec![],
        },
    ];
    for case in cases {
        statements::take();
        for token in &case.tokens {
            let (status, _) = request(&app, case.method, case.uri, token.as_deref()).await;
            assert_eq!(status, StatusCode::OK, "{}", case.name);
        }
        let counts = statements::by_verb(&statements::take(), "tessera_sessions");
        eprintln!("{} x{N}: statements {counts:?}", case.name);
        let expect: Vec<(String, usize)> = case
            .expect
            .iter()
            .map(|(verb, n)| ((*verb).to_owned(), *n))
            .collect();
        assert_eq!(counts, expect, "{}", case.name);
    }
}

/// A bearer-token service on `store` with the live tests' routes (`crate::live::routes`), whose
/// `/live` hands each opened live handle out.
fn live_app(store: SqliteStore) -> (Router, mpsc::UnboundedReceiver<LiveSession>) {
    let (tx, rx) = mpsc::unbounded_channel::<LiveSession>();
    let cfg = SessionConfig::api(crate::support::key(7));
    let router = crate::live::routes()
        .with_state(tx)
        .layer(SessionLayer::new(cfg).with_store(store));
    (router, rx)
}

async fn call(app: &Router, method: &str, uri: &str, token: Option<&str>) -> String {
    let (status, body) = request(app, method, uri, token).await;
    assert_eq!(status, StatusCode::OK, "{method} {uri}: {body}");
    body
}

/// The next event of `live`, or a failure after a few seconds.
async fn next(live: &mut LiveSession) -> LiveEvent {
    tokio::time::timeout(Duration::from_secs(5), live.next())
        .await
        .expect("an event in time")
        .expect("an event before the end")
}

fn ended(event: LiveEvent) -> EndReason {
    match event {
        LiveEvent::Ended(end) => end.reason(),
        other => panic!("expected the end, got {other:?}"),
    }
}

/// Live handles on an `SqliteStore` hear of the commits the store makes in this process, as
/// on a `MemoryStore`: a change of scopes, a logout, a logout everywhere from another
/// device, and an eviction by the per-principal limit each reach the open handle at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_handles_hear_of_commits_in_process() {
    let file = SqliteFile::new();
    let store = store_on(&file).await;
    let (app, mut opened) = live_app(store.clone());

    let token = call(&app, "POST", "/login/alice", None).await;
    assert_eq!(call(&app, "GET", "/live", Some(&token)).await, "open");
    let mut live = opened.recv().await.unwrap();
    let token = call(&app, "POST", "/scopes", Some(&token)).await;
    assert_eq!(
        next(&mut live).await,
        LiveEvent::Changed {
            scopes: ["read", "write"].map(String::from).into(),
            rotated: true
        },
        "a privilege change rotates the ID; the handle follows"
    );
    call(&app, "POST", "/logout", Some(&token)).await;
    assert_eq!(ended(next(&mut live).await), EndReason::LoggedOut);

    let here = call(&app, "POST", "/login/alice", None).await;
    let there = call(&app, "POST", "/login/alice", None).await;
    assert_eq!(call(&app, "GET", "/live", Some(&here)).await, "open");
    let mut live = opened.recv().await.unwrap();
    call(&app, "POST", "/everywhere", Some(&there)).await;
    assert_eq!(ended(next(&mut live).await), EndReason::LoggedOutEverywhere);

    let (limited, mut opened) = live_app(
        SqliteStore::new(file.pool().await).max_sessions_per_principal(1, LimitPolicy::EvictOldest),
    );
    let first = call(&limited, "POST", "/login/bob", None).await;
    assert_eq!(call(&limited, "GET", "/live", Some(&first)).await, "open");
    let mut live = opened.recv().await.unwrap();
    call(&limited, "POST", "/login/bob", None).await;
    assert_eq!(ended(next(&mut live).await), EndReason::SessionLimit);
}
