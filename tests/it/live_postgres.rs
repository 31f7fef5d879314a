//! Live sessions across instances on a real PostgreSQL server: two stores on two pools with
//! two layers, as two processes of a fleet would have. A handle opened through instance A
//! hears (through `LISTEN`) what a request through instance B did to its session, also when
//! A's listener connection was killed and could not come back while it happened.

use std::time::Duration;

use axum_tessera::__fuzz::SessionId;
use axum_tessera::live::{EndReason, LiveEvent};
use axum_tessera::store::{LimitPolicy, PostgresStore};
use sqlx::{Connection as _, Executor as _, PgConnection};

use crate::live::{end_of, next};
use crate::support::fleet::{
    a_handle_ends_for, a_rotation_keeps_the_handle, an_idle_deadline_is_rechecked, causes,
    instance, quiet, Instance,
};
use crate::support::postgres::PgServer;

fn table(name: &str) -> String {
    format!("live_{name}_{}", SessionId::generate().short()).to_lowercase()
}

async fn store(server: &PgServer, table: &str, limit: Option<usize>) -> PostgresStore {
    let store = PostgresStore::new(server.pool(4).await)
        .table(table)
        .expect("a valid table name");
    store.migrate().await.expect("migrate");
    match limit {
        Some(max) => store.max_sessions_per_principal(max, LimitPolicy::EvictOldest),
        None => store,
    }
}

async fn pair(server: &PgServer, table: &str, limit: Option<usize>) -> (Instance, Instance) {
    let idle = Duration::from_secs(1800);
    (
        instance(store(server, table, limit).await, idle),
        instance(store(server, table, limit).await, idle),
    )
}

/// How many connections listen on the channel of `table` (its name followed by `_live`).
async fn listeners(admin: &mut PgConnection, table: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE application_name = 'tessera-live' AND query = $1",
    )
    .bind(format!("LISTEN \"{table}_live\""))
    .fetch_one(admin)
    .await
    .expect("pg_stat_activity")
}

/// Waits (at most 10 s) until `n` listeners are up on the channel of `table` (a store
/// starts its listener with its first handle).
async fn listening(server: &PgServer, table: &str, n: i64) {
    let mut admin = PgConnection::connect(&server.url()).await.expect("admin");
    for _ in 0..1000 {
        if listeners(&mut admin, table).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no listener on {table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_on_one_instance_ends_for_every_cause_on_another() {
    let server = PgServer::shared();
    for cause in causes() {
        let table = table("cause");
        let (a, b) = pair(server, &table, None).await;
        a_handle_ends_for(&a, &b, listening(server, &table, 1), &cause).await;
    }

    // The per-principal limit: a login through B evicts the oldest session, open on A.
    let table = table("limit");
    let (a, b) = pair(server, &table, Some(1)).await;
    let token = a.login("alice").await;
    let mut live = a.open(&token).await;
    listening(server, &table, 1).await;
    b.login("alice").await;
    assert_eq!(end_of(&mut live).await, EndReason::SessionLimit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_changes_and_rotations_through_another_instance_keep_the_handle() {
    let server = PgServer::shared();
    let table = table("keep");
    let (a, b) = pair(server, &table, None).await;
    a_rotation_keeps_the_handle(&a, &b, listening(server, &table, 1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_too_large_for_a_notice_is_read_from_the_table() {
    let server = PgServer::shared();
    let table = table("large");
    let (a, b) = pair(server, &table, None).await;
    let token = a.login("alice").await;
    let mut live = a.open(&token).await;
    let first = live.key();
    listening(server, &table, 1).await;
    // 100 scopes of 100 characters: over PostgreSQL's 8000-byte payload, so the notice says
    // only where the session went, and A reads the new scopes from the table.
    let token = b.post("/scopes/100", &token).await;
    match next(&mut live).await {
        LiveEvent::Changed { scopes, rotated } => {
            assert!(rotated);
            assert_eq!(scopes.len(), 100);
        }
        other => panic!("expected a change, got {other:?}"),
    }
    assert_ne!(live.key(), first);
    b.post("/logout", &token).await;
    assert_eq!(end_of(&mut live).await, EndReason::LoggedOut);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_while_the_listener_is_down_still_ends_the_handle() {
    // A server of its own: the test keeps every new connection out for a while.
    let server = PgServer::start();
    let table = table("gap");
    let idle = Duration::from_secs(1800);
    let a = instance(store(&server, &table, None).await, idle);
    // B's pool opens all its connections now: none can be opened in the gap.
    let pool = server.pool(4).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(pool.acquire().await.expect("a connection"));
    }
    drop(held);
    let b = PostgresStore::new(pool)
        .table(&table)
        .expect("a valid table name");
    let b = instance(b, idle);
    let alice = a.login("alice").await;
    let bob = a.login("bob").await;
    let mut gone = a.open(&alice).await;
    let mut kept = a.open(&bob).await;
    listening(&server, &table, 1).await;

    // From another database: PostgreSQL refuses to close the one it is connected to.
    let other = server.options().database("template1");
    let mut admin = PgConnection::connect_with(&other).await.expect("admin");
    // The listener cannot come back until connections are allowed again (the pools' open
    // connections stay).
    admin
        .execute("ALTER DATABASE postgres ALLOW_CONNECTIONS false")
        .await
        .unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'tessera-live'",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(killed, [true], "A's listener is killed");
    // Its notice goes to nobody.
    b.post("/logout", &alice).await;
    assert!(
        quiet(&mut gone).await,
        "nothing heard while A does not listen"
    );
    admin
        .execute("ALTER DATABASE postgres ALLOW_CONNECTIONS true")
        .await
        .unwrap();

    // Back, A re-validates its handles in one statement: alice's session is gone (the
    // cause went with the lost notice).
    assert_eq!(end_of(&mut gone).await, EndReason::Deleted);
    listening(&server, &table, 1).await;
    assert!(quiet(&mut kept).await, "bob's session lives on");
    // And the new listener hears what follows.
    b.post("/logout", &bob).await;
    assert_eq!(end_of(&mut kept).await, EndReason::LoggedOut);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_deadline_is_rechecked_when_another_instance_kept_the_session_busy() {
    let server = PgServer::shared();
    let table = table("idle");
    let idle = Duration::from_secs(3);
    let a = instance(store(server, &table, None).await, idle);
    let b = instance(store(server, &table, None).await, idle);
    an_idle_deadline_is_rechecked(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_everywhere_of_many_sessions_reaches_every_handle() {
    // More sessions than one notice carries (100 keys): the end goes out in several.
    const N: usize = 150;
    let server = PgServer::shared();
    let table = table("many");
    let (a, b) = pair(server, &table, None).await;
    let mut handles = Vec::with_capacity(N);
    for _ in 0..N {
        let token = a.login("alice").await;
        handles.push(a.open(&token).await);
    }
    listening(server, &table, 1).await;
    let other = b.login("alice").await;
    b.post("/everywhere", &other).await;
    for live in &mut handles {
        assert_eq!(end_of(live).await, EndReason::LoggedOutEverywhere);
    }
}
