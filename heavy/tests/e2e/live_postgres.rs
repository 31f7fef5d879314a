//! The demo's live page on two demo processes sharing a real PostgreSQL server
//! (`DEMO_STORE=postgres://...`, two `DEMO_ADDR`s, the same `TESSERA_SECRET`): each has its
//! own `PostgresStore` (pool, `LISTEN` connection, live handles). A socket open on one closes
//! with 4001 and the cause when the session ends through the other, also when its listener
//! connection was killed at the moment of the logout.

use sqlx::{Connection as _, PgConnection};

use crate::demo_process::DemoProcess;
use crate::live::{close_of, ends_reach_the_other_instance, eventually, json, open, post, sign_in};

use crate::demo_sql::postgres::PgServer;

/// One secret for both processes: tokens one signs, the other checks.
const SECRET: &str = "live-postgres-e2e-secret-0123456789abcdef";

/// A PostgreSQL server and two demo processes on it.
async fn pair() -> (PgServer, DemoProcess, DemoProcess) {
    let server = PgServer::start();
    let url = server.url();
    let env = [("DEMO_STORE", url.as_str()), ("TESSERA_SECRET", SECRET)];
    let (a, b) = tokio::join!(DemoProcess::start(&env), DemoProcess::start(&env));
    (server, a, b)
}

/// The listener connections the server holds (`application_name` `tessera-live`); with
/// `kill`, terminated.
async fn listeners(server: &PgServer, kill: bool) -> usize {
    let mut admin = PgConnection::connect(&server.url()).await.expect("admin");
    let sql = if kill {
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'tessera-live'"
    } else {
        "SELECT true FROM pg_stat_activity \
         WHERE application_name = 'tessera-live' AND query LIKE 'LISTEN%'"
    };
    let done: Vec<bool> = sqlx::query_scalar(sql).fetch_all(&mut admin).await.unwrap();
    done.into_iter().filter(|d| *d).count()
}

/// Waits until `n` listeners are up: a process listens when its first live socket opens.
async fn listening(server: &PgServer, n: usize) {
    eventually("the listeners", || async {
        listeners(server, false).await >= n
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_end_and_a_scope_change_on_one_instance_reach_the_others_socket() {
    let (server, a, b) = pair().await;
    ends_reach_the_other_instance(a.base(), b.base(), |n| listening(&server, n)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_while_the_listener_is_killed_still_closes_the_socket() {
    let (server, a, b) = pair().await;
    let (a, b) = (a.base(), b.base());
    let cookie = sign_in(a, "alice").await;
    let mut ws = open(b, &cookie).await;
    json(&mut ws).await;
    listening(&server, 1).await;

    assert_eq!(listeners(&server, true).await, 1, "B's listener is killed");
    post(a, &cookie, "/logout", &[]).await;
    // B listens again and re-checks its sockets' sessions in one statement: the notice
    // either reached the new connection or was lost, and the session is gone either way.
    let (code, reason) = close_of(&mut ws, 3).await;
    assert_eq!(code, 4001);
    assert!(
        reason == "logged out" || reason == "session deleted",
        "closed for the logout: {reason}"
    );
}
