//! `PostgresStore` on real PostgreSQL servers started by the tests: the conformance suite,
//! two store instances (two pools) racing on one database, a row broken behind the store's
//! back, a blocked write the server aborts itself, the server frozen and restarted under
//! load, and the statements each request costs, counted by `pg_stat_statements`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum_tessera::__fuzz::SessionId;
use axum_tessera::clock::ManualClock;
use axum_tessera::store::conformance::{Setup, StoreFactory};
use axum_tessera::store::{
    Commit, CommitOutcome, LimitPolicy, PostgresStore, Record, SessionStore, StoreKey, Update,
    UpdateOutcome,
};
use axum_tessera::ConfigError;
use http::StatusCode;
use serde_json::json;
use sqlx::postgres::PgPool;
use sqlx::{Connection as _, Executor as _, PgConnection};

use crate::support::postgres::PgServer;
use crate::support::sql::{self, api_app, log_in, request, table_for};

const T0: i64 = 1_700_000_000;
/// The command timeout of the fault tests: long enough that a busy machine (CI on two
/// cores) does not time out calls outside the fault, which would blur the counts.
const TIMEOUT: Duration = Duration::from_secs(1);
/// The command timeout of the blocked-write test, where every call times out anyway.
const SHORT_TIMEOUT: Duration = Duration::from_millis(300);

/// A store in a table of its own on the shared server, migrated.
async fn store_in(table: &str, pool_size: u32) -> PostgresStore {
    let store = PostgresStore::new(PgServer::shared().pool(pool_size).await)
        .table(table)
        .expect("a valid table name");
    store.migrate().await.expect("migrate");
    store
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", SessionId::generate().short())
}

/// Each check gets its own table on the shared server.
fn factory() -> impl StoreFactory {
    |setup: Setup| async move {
        let store = store_in(&table_for(setup.namespace()), 8)
            .await
            .with_clock(setup.clock());
        match setup.limit() {
            Some((max, policy)) => store.max_sessions_per_principal(max, policy),
            None => store,
        }
    }
}

axum_tessera::store_conformance_tests!(factory());

async fn create_session(store: &PostgresStore) -> StoreKey {
    let key = SessionId::generate().store_key();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let outcome = store
        .commit(Commit::Create {
            key,
            record: Record::new(now, now + 3600),
        })
        .await
        .expect("create");
    assert_eq!(outcome, CommitOutcome::Applied);
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_is_idempotent_and_tables_may_live_in_a_schema() {
    let pool = PgServer::shared().pool(4).await;
    let schema = unique("auth");
    pool.execute(format!("CREATE SCHEMA {schema}").as_str())
        .await
        .unwrap();
    let table = format!("{schema}.sessions");
    let store = PostgresStore::new(pool.clone()).table(&table).unwrap();
    store.migrate().await.expect("first");
    store.migrate().await.expect("again");
    let app = api_app(store);
    let token = log_in(&app).await;
    assert_eq!(request(&app, "GET", "/me", Some(&token)).await.1, "alice");
    let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 ORDER BY 1",
    )
    .bind(&schema)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        indexes,
        ["sessions_expires_at", "sessions_pkey", "sessions_principal"]
    );
    assert!(matches!(
        PostgresStore::new(pool).table("s; DROP TABLE x"),
        Err(ConfigError::InvalidTableName { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pools_on_one_database_lose_no_key_of_one_session() {
    let table = unique("pairs");
    let a = store_in(&table, 8).await;
    let b = PostgresStore::new(PgServer::shared().pool(8).await)
        .table(&table)
        .unwrap();
    sql::two_instances_lose_no_key(api_app(a), api_app(b), 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pools_on_one_database_lose_no_increment() {
    let table = unique("increments");
    let a = store_in(&table, 8).await;
    let b = PostgresStore::new(PgServer::shared().pool(8).await)
        .table(&table)
        .unwrap();
    sql::increments_all_count(a, b, 400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pools_on_one_database_lose_no_compare_and_set() {
    let table = unique("cas");
    let a = store_in(&table, 8).await;
    let b = PostgresStore::new(PgServer::shared().pool(8).await)
        .table(&table)
        .unwrap();
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
            name: "the principal has the wrong shape",
            damage: r#"principal_data = '{"kind": 5}'"#,
        },
        Case {
            name: "data is not an object",
            damage: r#"data = '"text"'"#,
        },
        Case {
            name: "flash is not a list of strings",
            damage: r#"flash = '{"a": 1}'"#,
        },
        Case {
            name: "the bound IP is not an address",
            damage: "bound_ip = 'not an address'",
        },
    ];
    for case in cases {
        eprintln!("case: {}", case.name);
        let table = unique("corrupt");
        let store = store_in(&table, 4).await;
        let pool = PgServer::shared().pool(2).await;
        sql::corrupt_row_counts_as_gone(store, |key| async move {
            let sql = format!("UPDATE {table} SET {} WHERE key = $1", case.damage);
            let done = sqlx::query(&sql)
                .bind(key.as_bytes().as_slice())
                .execute(&pool)
                .await
                .expect("raw update");
            assert_eq!(done.rows_affected(), 1, "{}", case.name);
        })
        .await;
    }
}

/// Writes blocked by another transaction's row lock fail with `Timeout`; the server aborts
/// them itself (the `lock_timeout` each write statement sets), so none waits on after the
/// client gave up, and none is applied once the lock is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_write_is_aborted_by_the_server_and_never_applied() {
    let table = unique("blocked");
    let store = store_in(&table, 8).await.command_timeout(SHORT_TIMEOUT);
    let key = create_session(&store).await;

    let mut holder = PgConnection::connect_with(&PgServer::shared().options())
        .await
        .unwrap();
    holder.execute("BEGIN").await.unwrap();
    sqlx::query(&format!("SELECT 1 FROM {table} WHERE key = $1 FOR UPDATE"))
        .bind(key.as_bytes().as_slice())
        .execute(&mut holder)
        .await
        .unwrap();

    let mut kinds = BTreeMap::<String, usize>::new();
    for _ in 0..5 {
        let result = store.update(&key, "n", Update::Increment { by: 1 }).await;
        *kinds
            .entry(format!("{:?}", result.map_err(|e| e.kind())))
            .or_default() += 1;
    }
    eprintln!("writes under a held row lock: {kinds:?}");
    assert_eq!(kinds, BTreeMap::from([("Err(Timeout)".to_owned(), 5)]));

    // Wait past the server-side timeout: no backend is still waiting for the lock.
    tokio::time::sleep(SHORT_TIMEOUT * 3).await;
    let waiting: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE wait_event_type = 'Lock' AND query LIKE '%' || $1 || '%'",
    )
    .bind(&table)
    .fetch_one(&mut holder)
    .await
    .unwrap();
    assert_eq!(
        waiting, 0,
        "the server aborted the blocked statements itself"
    );
    holder.execute("ROLLBACK").await.unwrap();

    tokio::time::sleep(SHORT_TIMEOUT).await;
    let record = store.load(&key).await.unwrap().expect("live");
    assert_eq!(
        record.data().get("n"),
        None,
        "nothing applied after the timeout"
    );
    assert_eq!(
        store
            .update(&key, "n", Update::Increment { by: 1 })
            .await
            .unwrap(),
        UpdateOutcome::Applied(Some(json!(1))),
        "writes work again"
    );
}

/// What the writers of a fault test saw.
#[derive(Default, Debug)]
struct Tally {
    /// Per session: increments the store acknowledged.
    acked: BTreeMap<StoreKey, i64>,
    /// Per session: increments that failed (their outcome may be unknown).
    failed: BTreeMap<StoreKey, i64>,
    kinds: BTreeMap<String, usize>,
    /// Calls that took far longer than the command timeout allows.
    hung: usize,
}

/// `writers` tasks increment their own session's counter until `stop`, each call bounded
/// by 10 times the command timeout (a hang is counted, not waited for).
async fn load_until(store: &PostgresStore, keys: &[StoreKey], stop: Arc<AtomicBool>) -> Tally {
    let mut tasks = tokio::task::JoinSet::new();
    for key in keys.iter().copied() {
        let (store, stop) = (store.clone(), stop.clone());
        tasks.spawn(async move {
            let mut tally = Tally::default();
            for _ in 0..2_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let call = store.update(&key, "n", Update::Increment { by: 1 });
                match tokio::time::timeout(TIMEOUT * 10, call).await {
                    Ok(Ok(UpdateOutcome::Applied(_))) => {
                        *tally.acked.entry(key).or_default() += 1;
                    }
                    Ok(other) => {
                        *tally.failed.entry(key).or_default() += 1;
                        let kind = format!("{:?}", other.map_err(|e| e.kind()));
                        *tally.kinds.entry(kind).or_default() += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(_) => tally.hung += 1,
                }
            }
            tally
        });
    }
    let mut total = Tally::default();
    while let Some(done) = tasks.join_next().await {
        let tally = done.expect("writer");
        for (k, n) in tally.acked {
            *total.acked.entry(k).or_default() += n;
        }
        for (k, n) in tally.failed {
            *total.failed.entry(k).or_default() += n;
        }
        for (k, n) in tally.kinds {
            *total.kinds.entry(k).or_default() += n;
        }
        total.hung += tally.hung;
    }
    total
}

/// After a fault: every acknowledged increment (since the counters were `before`) is in the
/// database; the failed ones that
/// were applied anyway (the fault hit a statement between its deadline check and its commit,
/// where no client can know the outcome) are counted, at most one
/// per writer. Answers (acknowledged, failed, failed but applied).
async fn counters(store: &PostgresStore, keys: &[StoreKey]) -> Vec<i64> {
    let mut out = Vec::new();
    for key in keys {
        let n = store
            .load(key)
            .await
            .expect("load")
            .expect("live")
            .data()
            .get("n")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0);
        out.push(n);
    }
    out
}

async fn check_counts(
    store: &PostgresStore,
    keys: &[StoreKey],
    before: &[i64],
    tally: &Tally,
) -> (i64, i64, i64) {
    let (mut acked, mut failed, mut in_doubt) = (0, 0, 0);
    let after = counters(store, keys).await;
    for ((key, before), after) in keys.iter().zip(before).zip(after) {
        let stored = after - before;
        let ok = tally.acked.get(key).copied().unwrap_or(0);
        let bad = tally.failed.get(key).copied().unwrap_or(0);
        assert!(
            stored >= ok,
            "acknowledged increments lost: {stored} < {ok}"
        );
        assert!(
            stored <= ok + bad,
            "more increments than were sent: {stored} > {ok} + {bad}"
        );
        acked += ok;
        failed += bad;
        in_doubt += stored - ok;
    }
    assert!(
        in_doubt <= keys.len() as i64,
        "{in_doubt} failed writes applied: more than one commit in flight per writer"
    );
    (acked, failed, in_doubt)
}

async fn wait_until_serving(store: &PostgresStore, key: &StoreKey) {
    for _ in 0..200 {
        if store.load(key).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the store did not recover");
}

/// The postmaster and its backends frozen (SIGSTOP) under load: calls fail with `Timeout`
/// (or `Unavailable`) within the command timeout instead of hanging, writes that failed are
/// not applied after the thaw (but for a commit already past its deadline check), and the
/// store serves again once the server thaws.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_under_load_gives_timeouts_and_recovers() {
    const WRITERS: usize = 6;
    let server = PgServer::start();
    let store = PostgresStore::new(server.pool(WRITERS as u32 + 2).await).command_timeout(TIMEOUT);
    store.migrate().await.unwrap();
    let mut keys = Vec::new();
    for _ in 0..WRITERS {
        keys.push(create_session(&store).await);
    }
    let before = counters(&store, &keys).await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let (store, keys, stop) = (store.clone(), keys.clone(), stop.clone());
        async move { load_until(&store, &keys, stop).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.freeze(true);
    tokio::time::sleep(TIMEOUT * 3).await;
    server.freeze(false);
    tokio::time::sleep(TIMEOUT * 2).await;
    stop.store(true, Ordering::SeqCst);
    let tally = load.await.unwrap();
    wait_until_serving(&store, &keys[0]).await;
    // The transactions the thaw released finish (commit or roll back) before we count.
    tokio::time::sleep(TIMEOUT * 2).await;
    let (acked, failed, in_doubt) = check_counts(&store, &keys, &before, &tally).await;
    eprintln!(
        "frozen 3 s under {WRITERS} writers (timeout {TIMEOUT:?}): {acked} acknowledged, \
         {failed} failed {:?}, {in_doubt} failed but applied (commit in flight), {} hung",
        tally.kinds, tally.hung
    );
    assert_eq!(tally.hung, 0, "every call answered within the timeout");
    assert!(failed > 0, "the freeze was felt");
    assert!(
        tally
            .kinds
            .keys()
            .all(|k| k == "Err(Timeout)" || k == "Err(Unavailable)"),
        "{:?}",
        tally.kinds
    );
    let after = store
        .update(&keys[0], "n", Update::Increment { by: 1 })
        .await;
    assert!(matches!(after, Ok(UpdateOutcome::Applied(_))), "{after:?}");
}

/// The server stopped (a clean `fast` shutdown, then a crash: `immediate`) and started
/// again under load: no acknowledged write is lost, calls fail with `Unavailable` or
/// `Timeout` while it is down, and the store serves again without a restart of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_write_is_lost_across_a_restart() {
    const WRITERS: usize = 6;
    let server = PgServer::start();
    let store = PostgresStore::new(server.pool(WRITERS as u32 + 2).await).command_timeout(TIMEOUT);
    store.migrate().await.unwrap();
    let mut keys = Vec::new();
    for _ in 0..WRITERS {
        keys.push(create_session(&store).await);
    }
    let app = api_app(store.clone());
    let token = log_in(&app).await;
    request(&app, "POST", "/set/before", Some(&token)).await;

    for mode in ["fast", "immediate"] {
        let before = counters(&store, &keys).await;
        let stop = Arc::new(AtomicBool::new(false));
        let load = tokio::spawn({
            let (store, keys, stop) = (store.clone(), keys.clone(), stop.clone());
            async move { load_until(&store, &keys, stop).await }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        server.stop(mode);
        tokio::time::sleep(TIMEOUT * 2).await;
        let (status, _) = request(&app, "GET", "/me", Some(&token)).await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{mode}: load while down"
        );
        server.start_again();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        stop.store(true, Ordering::SeqCst);
        let tally = load.await.unwrap();
        wait_until_serving(&store, &keys[0]).await;
        let (acked, failed, in_doubt) = check_counts(&store, &keys, &before, &tally).await;
        eprintln!(
            "stop -m {mode} and start under {WRITERS} writers: {acked} acknowledged (none \
             lost), {failed} failed {:?}, {in_doubt} failed but applied, {} hung",
            tally.kinds, tally.hung
        );
        assert_eq!(tally.hung, 0);
        assert!(failed > 0, "{mode}: the outage was felt");
        assert!(
            tally
                .kinds
                .keys()
                .all(|k| k == "Err(Timeout)" || k == "Err(Unavailable)"),
            "{:?}",
            tally.kinds
        );
    }
    assert_eq!(request(&app, "GET", "/me", Some(&token)).await.1, "alice");
    assert_eq!(
        request(&app, "GET", "/keys", Some(&token)).await.1,
        "before",
        "a session written before the restarts survives them"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_deletes_expired_rows_through_the_expiry_index() {
    let table = unique("sweep");
    let clock = ManualClock::new(T0);
    let store = store_in(&table, 4).await.with_clock(clock.clone());
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
    assert_eq!(store.sweep().await.unwrap(), 0);
    let pool = PgServer::shared().pool(2).await;
    let count = |pool: PgPool| {
        let sql = format!("SELECT count(*) FROM {table}");
        async move {
            sqlx::query_scalar::<_, i64>(&sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(count(pool.clone()).await, 2);

    let mut conn = pool.acquire().await.unwrap();
    conn.execute("SET enable_seqscan = off").await.unwrap();
    let plan: Vec<String> = sqlx::query_scalar(&format!(
        "EXPLAIN SELECT key FROM {table} WHERE expires_at <= 1 LIMIT 1000"
    ))
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert!(
        plan.iter()
            .any(|line| line.contains(&format!("{table}_expires_at"))),
        "{plan:?}"
    );
    drop(conn);

    let sweeper = store.spawn_sweeper(Duration::from_millis(20));
    clock.set(T0 + 100);
    let mut left = -1;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        left = count(pool.clone()).await;
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

/// Statements per request, counted by the server (`pg_stat_statements`). A load is one
/// statement, and so is every commit (one round trip each), but for a login under a
/// per-principal limit: one transaction of four messages, `BEGIN; SET LOCAL ...; SET LOCAL
/// ...` (one simple-query message), `SELECT pg_advisory_xact_lock($1)`, the commit
/// statement, `COMMIT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_per_request_counted_by_the_server() {
    const N: i64 = 20;
    let server = PgServer::start();
    let admin = server.pool(2).await;
    admin
        .execute("CREATE EXTENSION pg_stat_statements")
        .await
        .unwrap();
    let store = PostgresStore::new(server.pool(4).await);
    store.migrate().await.unwrap();
    let app = api_app(store.clone());
    let limited = api_app(store.max_sessions_per_principal(1000, LimitPolicy::EvictOldest));
    let token = log_in(&app).await;
    let sessions = || async {
        let mut tokens = Vec::new();
        for _ in 0..N {
            tokens.push(Some(log_in(&app).await));
        }
        tokens
    };
    let (rotating, leaving, rotating_limited) =
        (sessions().await, sessions().await, sessions().await);

    struct Case<'a> {
        name: &'static str,
        app: &'a axum::Router,
        method: &'static str,
        uri: &'static str,
        tokens: Vec<Option<String>>,
        expect: Vec<(&'static str, i64)>,
    }
    let same = |t: &str| vec![Some(t.to_owned()); N as usize];
    let write = |statement: &'static str| vec![(statement, N)];
    let with_load = |mut v: Vec<(&'static str, i64)>| {
        v.push(("SELECT (lookup)", N));
        v.sort();
        v
    };
    let cases = [
        Case {
            name: "read (load only)",
            app: &app,
            method: "GET",
            uri: "/me",
            tokens: same(&token),
            expect: vec![("SELECT (lookup)", N)],
        },
        Case {
            name: "write (load + patch commit)",
            app: &app,
            method: "POST",
            uri: "/set/k",
            tokens: same(&token),
            expect: with_load(write("UPDATE (patch)")),
        },
        Case {
            name: "login without a session (create)",
            app: &app,
            method: "POST",
            uri: "/login",
            tokens: vec![None; N as usize],
            expect: write("WITH (create)"),
        },
        Case {
            name: "login rotating a session (load + move)",
            app: &app,
            method: "POST",
            uri: "/login",
            tokens: rotating,
            expect: with_load(write("WITH (move)")),
        },
        Case {
            name: "logout (load + delete)",
            app: &app,
            method: "POST",
            uri: "/logout",
            tokens: leaving,
            expect: with_load(write("DELETE (delete)")),
        },
        Case {
            name: "login rotating a session under a per-principal limit",
            app: &limited,
            method: "POST",
            uri: "/login",
            tokens: rotating_limited,
            expect: with_load(vec![
                ("BEGIN", N),
                ("COMMIT", N),
                ("SELECT pg_advisory_xact_lock", N),
                ("SET LOCAL idle_in_transaction_session_timeout", N),
                ("SET LOCAL statement_timeout", N),
                ("WITH (move)", N),
            ]),
        },
        Case {
            name: "route that never touches the session",
            app: &app,
            method: "GET",
            uri: "/health",
            tokens: same(&token),
            expect: vec![],
        },
    ];
    for case in cases {
        admin
            .execute("SELECT pg_stat_statements_reset()")
            .await
            .unwrap();
        for token in &case.tokens {
            let (status, _) = request(case.app, case.method, case.uri, token.as_deref()).await;
            assert_eq!(status, StatusCode::OK, "{}", case.name);
        }
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT query, calls FROM pg_stat_statements")
                .fetch_all(&admin)
                .await
                .unwrap();
        let mut counts = BTreeMap::<&'static str, i64>::new();
        for (query, calls) in &rows {
            if let Some(label) = label(query) {
                *counts.entry(label).or_default() += calls;
            }
        }
        let counts: Vec<(&str, i64)> = counts.into_iter().collect();
        eprintln!("{} x{N}: statements {counts:?}", case.name);
        assert_eq!(counts, case.expect, "{}", case.name);
    }
}

/// What a statement the store ran is, by its text (`None`: not the store's).
fn label(query: &str) -> Option<&'static str> {
    let q = query.trim_start();
    if !q.contains("tessera_sessions") {
        return [
            ("BEGIN", "BEGIN"),
            ("COMMIT", "COMMIT"),
            (
                "SELECT pg_advisory_xact_lock",
                "SELECT pg_advisory_xact_lock",
            ),
            ("SET LOCAL statement_timeout", "SET LOCAL statement_timeout"),
            (
                "SET LOCAL idle_in_transaction_session_timeout",
                "SET LOCAL idle_in_transaction_session_timeout",
            ),
        ]
        .into_iter()
        .find(|(prefix, _)| q.starts_with(prefix))
        .map(|(_, label)| label);
    }
    Some(if q.starts_with("SELECT") {
        "SELECT (lookup)"
    } else if q.starts_with("WITH updated") {
        "UPDATE (patch)"
    } else if q.starts_with("WITH src0") {
        "WITH (move)"
    } else if q.starts_with("WITH taken") {
        "WITH (create)"
    } else if q.starts_with("WITH gone") {
        "DELETE (delete)"
    } else {
        "other"
    })
}

/// A login under a per-principal limit that times out waiting for the principal's lock
/// leaves its pool connection usable: the next request on that connection is served. (With
/// the lock in the `BEGIN` message, the failed transaction went back to the pool open, and
/// every later statement on the connection failed as "transaction is aborted".)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_wait_that_times_out_leaves_the_connection_usable() {
    let table = unique("lock_wait");
    let holder_store = store_in(&table, 4)
        .await
        .command_timeout(Duration::from_secs(20))
        .max_sessions_per_principal(1000, LimitPolicy::EvictOldest);
    let holder = api_app(holder_store);
    let token = log_in(&holder).await;

    // Hold the session's row, so the holder's rotation takes alice's advisory lock and then
    // waits on the row, keeping the lock.
    let mut admin = PgServer::shared().pool(1).await.begin().await.unwrap();
    sqlx::query(&format!("SELECT 1 FROM {table} FOR UPDATE"))
        .execute(&mut *admin)
        .await
        .unwrap();
    let rotation = tokio::spawn({
        let holder = holder.clone();
        async move { request(&holder, "POST", "/login", Some(&token)).await }
    });
    let watcher = PgServer::shared().pool(1).await;
    for _ in 0..1000 {
        let held: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted",
        )
        .fetch_one(&watcher)
        .await
        .unwrap();
        if held > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // One connection, a short timeout: this login of alice waits on her lock and gives up.
    let pool = PgServer::shared().pool(1).await;
    let store = PostgresStore::new(pool)
        .table(&table)
        .unwrap()
        .command_timeout(Duration::from_millis(800))
        .max_sessions_per_principal(1000, LimitPolicy::EvictOldest);
    let waiting = api_app(store);
    let (status, _) = request(&waiting, "POST", "/login", None).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the lock wait times out"
    );

    // The same (only) connection serves the next request.
    let other = log_in(&api_app(
        PostgresStore::new(PgServer::shared().pool(1).await)
            .table(&table)
            .unwrap(),
    ))
    .await;
    let (status, body) = request(&waiting, "GET", "/me", Some(&other)).await;
    assert_eq!(status, StatusCode::OK, "the connection is usable: {body}");

    admin.rollback().await.unwrap();
    let (status, _) = rotation.await.unwrap();
    assert_eq!(status, StatusCode::OK, "the held rotation completes");
}
