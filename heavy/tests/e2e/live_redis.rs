//! The demo's live page on two instances sharing a real `redis-server`, as two demo
//! processes with `DEMO_STORE=redis://...` and the same `TESSERA_SECRET` run it: each
//! instance has its own `RedisStore` (connection, subscription, live handles). A socket open
//! on one closes with 4001 and the cause when the session ends through the other.

use axum_tessera::Key;

use crate::http::demo_on_redis;
use crate::live::{close_of, end_other_sessions, json, open, post, scope_change, sign_in};

#[path = "../../../tests/it/support/redis.rs"]
#[allow(dead_code)]
mod redis_server;

use redis_server::RedisServer;

/// A redis-server and two demo instances on it, with one key (one `TESSERA_SECRET`).
async fn pair() -> (RedisServer, String, String) {
    let server = RedisServer::start();
    let key = Key::generate();
    let a = demo_on_redis(&server.url(), &key).await;
    let b = demo_on_redis(&server.url(), &key).await;
    (server, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_one_instance_closes_the_others_socket_with_its_reason() {
    let (_server, a, b) = pair().await;

    // Signed in on A, the socket on B: the cookie works on both.
    let cookie = sign_in(&a, "alice").await;
    let mut ws = open(&b, &cookie).await;
    assert_eq!(json(&mut ws).await["user"], "alice");
    post(&a, &cookie, "/logout", &[]).await;
    assert_eq!(close_of(&mut ws, 2).await, (4001, "logged out".to_owned()));

    // "Log out everywhere" on B closes the sockets of every device, on A too.
    let phone = sign_in(&a, "alice").await;
    let laptop = sign_in(&b, "alice").await;
    let mut on_a = open(&a, &phone).await;
    let mut on_b = open(&b, &laptop).await;
    json(&mut on_a).await;
    json(&mut on_b).await;
    post(&b, &laptop, "/sessions/logout-all", &[]).await;
    for ws in [&mut on_a, &mut on_b] {
        assert_eq!(
            close_of(ws, 2).await,
            (4001, "logged out everywhere".to_owned())
        );
    }

    // A session ended from another device's /sessions page on B; the socket is on A.
    let phone = sign_in(&a, "alice").await;
    let laptop = sign_in(&b, "alice").await;
    let mut ws = open(&a, &phone).await;
    json(&mut ws).await;
    end_other_sessions(&b, &laptop).await;
    assert_eq!(
        close_of(&mut ws, 2).await,
        (4001, "ended elsewhere".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_change_on_one_instance_reaches_the_others_socket() {
    let (_server, a, b) = pair().await;
    let cookie = sign_in(&a, "alice").await;
    let mut ws = open(&b, &cookie).await;
    assert_eq!(json(&mut ws).await["scopes"], serde_json::json!([]));
    post(&a, &cookie, "/scopes/beta", &[]).await;
    scope_change(&mut ws).await;
}
