//! The demo's live page on two demo processes sharing a real `redis-server`
//! (`DEMO_STORE=redis://...`, two `DEMO_ADDR`s, the same `TESSERA_SECRET`), exactly as the
//! README starts them: each has its own `RedisStore` (connection, subscription, live
//! handles). A socket open on one closes with 4001 and the cause when the session ends
//! through the other, also when its subscription was lost at the moment of the logout.

use crate::demo_process::DemoProcess;
use crate::live::{close_of, ends_reach_the_other_instance, eventually, json, open, post, sign_in};

#[path = "../../../tests/it/support/redis.rs"]
#[allow(dead_code)]
mod redis_server;

use redis_server::RedisServer;

/// One secret for both processes: tokens one signs, the other checks.
const SECRET: &str = "live-redis-e2e-secret-0123456789abcdef";

/// A redis-server and two demo processes on it.
async fn pair() -> (RedisServer, DemoProcess, DemoProcess) {
    let server = RedisServer::start();
    let url = server.url();
    let env = [("DEMO_STORE", url.as_str()), ("TESSERA_SECRET", SECRET)];
    let (a, b) = tokio::join!(DemoProcess::start(&env), DemoProcess::start(&env));
    (server, a, b)
}

/// The subscriptions the server holds (`CLIENT LIST TYPE pubsub`).
fn subscribers(server: &RedisServer) -> usize {
    match server.text("CLIENT LIST TYPE pubsub") {
        Some(redis_server::Resp::Bulk(Some(list))) => {
            String::from_utf8_lossy(&list).lines().count()
        }
        _ => 0,
    }
}

/// Waits until the server holds `n` subscriptions: a process subscribes when its first
/// live socket opens.
async fn subscribed(server: &RedisServer, n: usize) {
    eventually("the subscriptions", || async { subscribers(server) >= n }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_end_and_a_scope_change_on_one_instance_reach_the_others_socket() {
    let (server, a, b) = pair().await;
    ends_reach_the_other_instance(a.base(), b.base(), |n| subscribed(&server, n)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_while_the_subscription_is_lost_still_closes_the_socket() {
    let (server, a, b) = pair().await;
    let (a, b) = (a.base(), b.base());
    let cookie = sign_in(a, "alice").await;
    let mut ws = open(b, &cookie).await;
    json(&mut ws).await;
    subscribed(&server, 1).await;

    // B's subscription is cut; the logout's notice goes to nobody.
    let killed = server.text("CLIENT KILL TYPE pubsub").and_then(|r| r.int());
    assert_eq!(killed, Some(1), "B's subscription is killed");
    post(a, &cookie, "/logout", &[]).await;
    // B re-subscribes, re-checks its sockets' sessions in one call and finds the logout.
    assert_eq!(close_of(&mut ws, 3).await, (4001, "logged out".to_owned()));
}
