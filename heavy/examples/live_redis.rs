//! `cargo run --release -p axum-tessera-e2e --features redis --example live_redis`: the
//! cross-instance latency of a live session's end on Redis, and the store calls idle sockets
//! make.
//!
//! Starts a `redis-server` (from PATH) and two instances of the demo app on loopback ports,
//! each with its own `RedisStore` (as two demo processes with `DEMO_STORE=redis://...`).
//! Each of 200 trials signs in on A, opens `/live/ws` on A, logs out through B and times
//! from sending B's logout (its commit included) to A's 4001 close frame. Then it opens 100
//! sockets on A, resets the server's command statistics and reads them after 35 s (the
//! subscription pings after 30 s of silence).

use std::time::Duration;

use axum_tessera::Key;

#[path = "../../examples/demo/app.rs"]
#[allow(dead_code)]
mod app;

/// The end-to-end tests' loopback server and demo-cookie helpers.
#[path = "../tests/e2e/http.rs"]
#[allow(dead_code)]
mod http;

#[path = "../../tests/it/support/redis.rs"]
#[allow(dead_code)]
mod redis_server;

/// One instance of the demo app on `url`'s Redis, with the demo's own Redis settings (as a
/// demo process with `DEMO_STORE=redis://...` and the `TESSERA_SECRET` `key`); answers its
/// address. Each call has its own store: its own connection, subscription and live handles.
async fn demo_on_redis(url: &str, key: &axum_tessera::Key) -> String {
    let (web, api) = app::dev_configs(key.clone());
    let store = axum_tessera::store::RedisStore::connect(url)
        .await
        .expect("a redis URL")
        .command_timeout(Duration::from_millis(500));
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
    let server = redis_server::RedisServer::start_with(&["--appendonly", "no"]);
    let key = Key::generate();
    let a = demo_on_redis(&server.url(), &key).await;
    let b = demo_on_redis(&server.url(), &key).await;
    let http = http::client();

    logout_latency(&http, &a, &b, TRIALS).await;
    let readers = idle_sockets(&http, &a, IDLE_SOCKETS).await;
    server.text("CONFIG RESETSTAT");
    tokio::time::sleep(IDLE_WINDOW).await;
    let calls: Vec<(String, u64)> = server
        .command_calls()
        .into_iter()
        .filter(|(cmd, _)| cmd != "config|resetstat" && cmd != "info")
        .collect();
    println!(
        "{IDLE_SOCKETS} open sockets on A, {} s idle: store commands {:?} (total {})",
        IDLE_WINDOW.as_secs(),
        calls,
        calls.iter().map(|(_, n)| n).sum::<u64>()
    );
    for r in readers {
        r.abort();
    }
}
