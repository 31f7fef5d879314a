//! "Log out everywhere" for a user with 1,000 open live sockets on one demo: every one of
//! them closes with 4001 "logged out everywhere". The time it takes is a benchmark
//! (`heavy/examples/live_fleet.rs`), not asserted here.

use std::time::Duration;

use axum_tessera::store::MemoryStore;
use axum_tessera::Key;

use crate::app;
use crate::http::{client, serve};
use crate::live_client::{close_of, logout_everywhere, open_fleet, raise_open_files, sign_in};

/// 50 devices with 20 sockets each.
const SESSIONS: usize = 50;
const PER_SESSION: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_everywhere_closes_1000_sockets_4001() {
    // Both ends of every socket are this process's, plus the demo's listener and clients.
    raise_open_files(2 * (SESSIONS * PER_SESSION) as u64 + 256);
    let (web, api) = app::dev_configs(Key::generate());
    let addr = serve(app::router(web, api, MemoryStore::new())).await;
    let base = format!("127.0.0.1:{}", addr.port());

    let sockets = open_fleet(&base, "alice", SESSIONS, PER_SESSION).await;
    assert_eq!(sockets.len(), 1000);
    let mut closes = tokio::task::JoinSet::new();
    for mut ws in sockets {
        closes.spawn(async move { close_of(&mut ws, Duration::from_secs(60)).await });
    }

    // From yet another device of alice's, without a socket of its own.
    let http = client();
    let device = sign_in(&http, &base, "alice").await;
    logout_everywhere(&http, &base, &device).await;

    let mut closed = 0;
    while let Some(close) = closes.join_next().await {
        assert_eq!(close.unwrap(), (4001, "logged out everywhere".to_owned()));
        closed += 1;
    }
    assert_eq!(closed, 1000);
}
