//! `cargo run --release -p axum-tessera-e2e --example live_postgres`: the cross-instance
//! latency of a live session's end on PostgreSQL (`NOTIFY` from the commit statement, one
//! `LISTEN` connection per instance), and the statements idle sockets make.
//!
//! Starts a PostgreSQL server (as the tests do: `initdb` into a temp dir) and two instances
//! of the demo app on loopback ports, each with its own `PostgresStore` and pool (as two demo
//! processes with `DEMO_STORE=postgres://...`). Each of 200 trials signs in on A, opens
//! `/live/ws` on A, logs out through B and times from sending B's logout (its commit
//! included) to A's 4001 close frame. Then it opens 100 sockets on A and counts the
//! statements the server runs in 35 s (`pg_stat_statements`; the listener pings after 30 s
//! of silence).

use std::time::Duration;

use axum_tessera::Key;
use sqlx::Executor as _;

#[path = "../../examples/demo/app.rs"]
#[allow(dead_code)]
mod app;

/// The end-to-end tests' loopback server and demo-cookie helpers.
#[path = "../tests/e2e/http.rs"]
#[allow(dead_code)]
mod http;

#[path = "../../tests/it/support/postgres.rs"]
#[allow(dead_code)]
mod postgres;

/// One instance of the demo app on `server`, with the demo's own PostgreSQL settings (as a
/// demo process with `DEMO_STORE=postgres://...` and the `TESSERA_SECRET` `key`); answers
/// its address. Each call has its own pool, listener and live handles.
async fn demo_on_postgres(server: &postgres::PgServer, key: &Key) -> String {
    let (web, api) = app::dev_configs(key.clone());
    let store = axum_tessera::store::PostgresStore::new(server.pool(16).await)
        .command_timeout(Duration::from_millis(500));
    store.migrate().await.expect("migrate");
    let (web, api) = app::layers(web, api, store);
    let addr = http::serve(app::routes(web, api)).await;
    format!("127.0.0.1:{}", addr.port())
}

/// The browser-side steps and the two measurements, shared with the other latency example.
#[path = "live_common/client.rs"]
mod client;

use client::{idle_sockets, logout_latency};

const TRIALS: usize = 200;
const IDLE_SOCKETS: usize = 100;
const IDLE_WINDOW: Duration = Duration::from_secs(35);

#[tokio::main]
async fn main() {
    let server = postgres::PgServer::start();
    let admin = server.pool(2).await;
    admin
        .execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await
        .expect("pg_stat_statements (the test server preloads it)");
    let key = Key::generate();
    let a = demo_on_postgres(&server, &key).await;
    let b = demo_on_postgres(&server, &key).await;
    let http = http::client();

    logout_latency(&http, &a, &b, TRIALS).await;
    let readers = idle_sockets(&http, &a, IDLE_SOCKETS).await;
    admin
        .execute("SELECT pg_stat_statements_reset()")
        .await
        .unwrap();
    tokio::time::sleep(IDLE_WINDOW).await;
    let calls: Vec<(String, i64)> = sqlx::query_as(
        "SELECT query, calls FROM pg_stat_statements \
         WHERE query NOT LIKE '%pg_stat_statements%'",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    println!(
        "{IDLE_SOCKETS} open sockets on A, {} s idle: statements {:?} (total {})",
        IDLE_WINDOW.as_secs(),
        calls,
        calls.iter().map(|(_, n)| n).sum::<i64>()
    );
    for r in readers {
        r.abort();
    }
}
