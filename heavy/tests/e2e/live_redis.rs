//! The demo's live page on two demo processes sharing a real `redis-server`
//! (`DEMO_STORE=redis://...`, two `DEMO_ADDR`s, the same `TESSERA_SECRET`), exactly as the
//! README starts them: each has its own `RedisStore` (connection, subscription, live
//! handles). A socket open on one closes with 4001 and the cause when the session ends
//! through the other, also when its subscription was lost at the moment of the logout.

use crate::demo_process::DemoProcess;
use crate::live::{close_of, end_other_sessions, json, open, post, scope_change, sign_in};

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

/// Waits (at most 5 s) until the server holds `n` subscriptions: a process subscribes when
/// its first live socket opens.
async fn subscribed(server: &RedisServer, n: usize) {
    for _ in 0..500 {
        if subscribers(server) >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{n} subscription(s) did not come up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_one_instance_closes_the_others_socket_with_its_reason() {
    let (_server, a, b) = pair().await;
    let (a, b) = (a.base(), b.base());

    // Signed in on A, the socket on B: the cookie works on both.
    let cookie = sign_in(a, "alice").await;
    let mut ws = open(b, &cookie).await;
    assert_eq!(json(&mut ws).await["user"], "alice");
    post(a, &cookie, "/logout", &[]).await;
    assert_eq!(close_of(&mut ws, 2).await, (4001, "logged out".to_owned()));

    // "Log out everywhere" on B closes the sockets of every device, on A too.
    let phone = sign_in(a, "alice").await;
    let laptop = sign_in(b, "alice").await;
    let mut on_a = open(a, &phone).await;
    let mut on_b = open(b, &laptop).await;
    json(&mut on_a).await;
    json(&mut on_b).await;
    post(b, &laptop, "/sessions/logout-all", &[]).await;
    for ws in [&mut on_a, &mut on_b] {
        assert_eq!(
            close_of(ws, 2).await,
            (4001, "logged out everywhere".to_owned())
        );
    }

    // A session ended from another device's /sessions page on B; the socket is on A.
    let phone = sign_in(a, "alice").await;
    let laptop = sign_in(b, "alice").await;
    let mut ws = open(a, &phone).await;
    json(&mut ws).await;
    end_other_sessions(b, &laptop).await;
    assert_eq!(
        close_of(&mut ws, 2).await,
        (4001, "ended elsewhere".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_change_on_one_instance_reaches_the_others_socket() {
    let (_server, a, b) = pair().await;
    let (a, b) = (a.base(), b.base());
    let cookie = sign_in(a, "alice").await;
    let mut ws = open(b, &cookie).await;
    assert_eq!(json(&mut ws).await["scopes"], serde_json::json!([]));
    post(a, &cookie, "/scopes/beta", &[]).await;
    scope_change(&mut ws).await;
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
