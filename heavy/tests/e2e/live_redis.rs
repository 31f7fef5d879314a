//! The demo's live page on two instances sharing a real `redis-server`, as two demo
//! processes with `DEMO_STORE=redis://...` and the same `TESSERA_SECRET` run it: each
//! instance has its own `RedisStore` (connection, subscription, live handles). A socket open
//! on one closes with 4001 and the cause when the session ends through the other.

use std::time::Duration;

use axum_tessera::store::RedisStore;
use axum_tessera::Key;
use reqwest::header::COOKIE;

use crate::app;
use crate::http::{client as http, serve};
use crate::live::{close_of, field, json, open, post, sign_in};

#[path = "../../../tests/it/support/redis.rs"]
#[allow(dead_code)]
mod redis_server;

use redis_server::RedisServer;

/// One demo instance on `url`, with the demo's own Redis settings; answers its address.
async fn instance(url: &str, key: &Key) -> String {
    let (web, api) = app::dev_configs(key.clone());
    let store = RedisStore::connect(url)
        .await
        .expect("a redis URL")
        .command_timeout(Duration::from_millis(500));
    let (web, api) = app::layers(web, api, store);
    let addr = serve(app::routes(web, api)).await;
    format!("127.0.0.1:{}", addr.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_one_instance_closes_the_others_socket_with_its_reason() {
    let server = RedisServer::start();
    let key = Key::generate();
    let a = instance(&server.url(), &key).await;
    let b = instance(&server.url(), &key).await;

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
    let page = http()
        .get(format!("http://{b}/sessions"))
        .header(COOKIE, &laptop)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for row in page.split("<tr class=\"session\">").skip(1) {
        if !row.contains("(this one)") {
            let session = field(row, "session")[0];
            post(&b, &laptop, "/sessions/logout", &[("session", session)]).await;
        }
    }
    assert_eq!(
        close_of(&mut ws, 2).await,
        (4001, "ended elsewhere".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_change_on_one_instance_reaches_the_others_socket() {
    let server = RedisServer::start();
    let key = Key::generate();
    let a = instance(&server.url(), &key).await;
    let b = instance(&server.url(), &key).await;
    let cookie = sign_in(&a, "alice").await;
    let mut ws = open(&b, &cookie).await;
    assert_eq!(json(&mut ws).await["scopes"], serde_json::json!([]));
    post(&a, &cookie, "/scopes/beta", &[]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let msg = json(&mut ws).await;
        if msg["scopes"] == serde_json::json!(["beta"]) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no scope change: {msg}"
        );
    }
    json(&mut ws).await; // still pushing
}
